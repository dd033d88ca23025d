"""All configuration, from environment variables (listed in the README)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RACETRACK_", populate_by_name=True, extra="ignore")

    database_url: str | None = Field(None, validation_alias="DATABASE_URL")  # None: embedded PG
    admin_token: SecretStr | None = None
    session_secret: SecretStr | None = None  # mixed into the dashboard's session signatures
    data_dir: Path = Path(".racetrack")
    pool_min_size: int = 2
    pool_max_size: int = 10
    flush_max_wait_ms: float = 5.0
    flush_max_events: int = 2000
    writer_max_pending: int = 50_000
    request_max_bytes: int = 500 * 1024
    message_max_bytes: int = 32 * 1024
    max_future_skew_hours: float = 24.0
    retry_after_seconds: int = 5
    log_level: str = "info"
    access_log: bool = True
    rollups: bool = True  # False: every KPI answer aggregates the events (slow on big sites)
    rollup_interval: float = 1.0  # seconds between background rollup refreshes
    rollup_inline_slots: int = 16  # a KPI read refreshes up to this many logged 15-minute slots itself
