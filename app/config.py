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
    deriver: bool = True  # False: this process only serves; another process (`racetrack derive`) derives
    derive_processes: int = 1  # `racetrack serve` runs this many niced deriver processes (0: in the workers)
    derive_batch: int = 5000  # inbox rows per derivation transaction
    derive_idle_seconds: float = 0.05  # how often an idle deriver looks at the inbox (commits here wake it)
    read_wait_seconds: float = 2.0  # a read waits this long for events acknowledged before it
    max_backlog: int = 1_000_000  # underived events of a site past which ingestion answers 503
