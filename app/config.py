"""All configuration, from environment variables (listed in the README)."""

from __future__ import annotations

from pathlib import Path

from limits import parse_many
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RACETRACK_", populate_by_name=True, extra="ignore")

    database_url: str | None = Field(None, validation_alias="DATABASE_URL")  # None: embedded PG
    admin_token: SecretStr | None = None
    session_secret: SecretStr | None = None  # mixed into the dashboard's session signatures
    data_dir: Path = Path(".racetrack")
    pool_min_size: int = 2
    pool_max_size: int = 10
    # a flush writes what arrived while the one before it was under way; > 0 also waits this long for more
    flush_max_wait_ms: float = 0.0
    flush_max_events: int = 2000
    writer_max_pending: int = 50_000
    request_max_bytes: int = 500 * 1024
    message_max_bytes: int = 32 * 1024
    max_future_skew_hours: float = 24.0
    retry_after_seconds: int = 5
    log_level: str = "info"
    gc_threshold: int = Field(default=100_000, ge=0)  # app/runtime.py (0: Python's collector settings)
    access_log: bool = True
    rollups: bool = True  # False: every KPI answer aggregates the events (slow on big sites)
    deriver: bool = True  # False: this process only serves; another process (`racetrack derive`) derives
    derive_processes: int = 1  # `racetrack serve` runs this many niced deriver processes (0: in the workers)
    derive_batch: int = 10_000  # inbox rows per derivation transaction (larger ones share their rollup rows)
    derive_idle_seconds: float = 0.05  # how often an idle deriver looks at the inbox (commits here wake it)
    # after a batch short of derive_batch, wait this long for more rows (fewer, larger batches under
    # a steady stream: each batch costs ~25 statements whatever its size); commits here wake it
    derive_gather_seconds: float = 0.25
    opentelemetry: bool = False  # FastAPI's OpenTelemetry traces, metrics and logs (to the configured providers)
    read_wait_seconds: float = 2.0  # a read waits this long for events acknowledged before it
    max_backlog: int = 1_000_000  # underived events of a site past which ingestion answers 503
    # Security (README "Security"): bounded work, rate limits, keys, edge limits
    max_period_days: int = 3700  # longest from..to of a read (about ten years)
    read_statement_timeout_ms: int = 15_000  # every statement of a request; background work has none
    redis_url: str | None = None  # rate limits shared across workers and hosts; None: per process
    workers: int = Field(default=1, ge=1)  # `serve --workers`: without Redis, each worker counts its share
    rate_limit_prefix: str = "racetrack"  # Redis key prefix (deployments sharing one Redis)
    rate_limit_ingest_key: str = "2000/second"  # per write key (limits' notation: "N/second;M/minute")
    rate_limit_ingest_address: str = "500/second"  # per client address on ingestion
    rate_limit_read_key: str = "50/second"  # per read or admin key
    rate_limit_failed_auth: str = "30/minute"  # failed authentications per client address
    # a client over a limit waits this long for its 429 (at most rate_limit_hold_max at once per process), so a
    # client that retries at once (an attacker's loop) is held to a few requests a second per connection
    rate_limit_hold_seconds: float = Field(default=1.0, ge=0, le=30)
    rate_limit_hold_max: int = Field(default=512, ge=0)
    write_key_grace_seconds: int = 7 * 86400  # a rotated write key keeps working this long
    max_header_bytes: int = 16 * 1024  # all request headers together
    max_header_count: int = 100
    max_body_bytes: int = 1024 * 1024  # a declared Content-Length above this is refused before reading
    body_timeout_seconds: float = 30.0  # the whole body must arrive within this

    @field_validator(
        "rate_limit_ingest_key", "rate_limit_ingest_address", "rate_limit_read_key", "rate_limit_failed_auth"
    )
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        parse_many(value)  # e.g. "100/second;2000/minute"; a typo fails at start, naming the variable
        return value
