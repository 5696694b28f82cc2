"""Settings, read from ``COURSEBOOK_*`` environment variables (and a ``.env`` file)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator can set; each field is documented in the README table."""

    model_config = SettingsConfigDict(
        env_prefix="COURSEBOOK_", env_file=".env", extra="ignore", frozen=True
    )

    database_url: str = "sqlite:///var/coursebook.sqlite3"
    """SQLAlchemy URL. A ``postgresql+psycopg://`` URL switches to PostgreSQL."""

    database_pool_size: int = Field(default=10, ge=1, le=1000)
    """Connections kept open per worker process (PostgreSQL)."""

    database_connect_timeout: float = Field(default=3.0, gt=0, le=300)
    """Seconds to open a PostgreSQL connection (TCP and start-up) before giving up: 503."""

    database_statement_timeout: float = Field(default=5.0, gt=0, le=300)
    """Seconds one PostgreSQL statement may take, waiting for the server included: 503."""

    database_pool_timeout: float = Field(default=3.0, gt=0, le=300)
    """Seconds a request waits for a free PostgreSQL connection of its worker's pool: 503."""

    host: str = "127.0.0.1"
    """Address ``coursebook serve`` binds to."""

    port: int = Field(default=8000, ge=0, le=65535)
    """Port ``coursebook serve`` listens on."""

    workers: int = Field(default=1, ge=1, le=64)
    """Worker processes for ``coursebook serve``."""

    public_url: str | None = None
    """Absolute base URL for related-collection and iCalendar links. Default: the
    request's own scheme and Host header."""

    max_expanded_objects: int = Field(default=10_000, ge=1)
    """Expansion budget: the most objects one response may hold."""

    log_level: str = "info"
    """Log level of the service (debug, info, warning, error)."""

    # Rate limit, metrics and access log (docs/operations.md).

    rate_limit: int = Field(default=250, ge=0)
    """Requests a minute per caller (token; client address without a usable one), as
    TeamUp documents; 0 turns the limit off (load tests, private deployments)."""

    redis_url: str | None = None
    """Redis the rate limit is counted in, shared by every worker of every host
    (``redis://host:6379/0``). Without it, the workers of one machine share a local file."""

    redis_timeout: float = Field(default=0.25, gt=0, le=10)
    """Seconds to connect to Redis, and for Redis to answer; past it the request is let
    through unchecked (fail open), and Redis is tried again a second later."""

    rate_limit_prefix: str = Field(default="coursebook", pattern=r"^[A-Za-z0-9._:-]{1,64}$")
    """Prefix of the rate-limit keys in Redis: deployments sharing one Redis keep apart."""

    rate_limit_file: str = "var/rate-limit.sqlite3"
    """The file the workers of one machine count in when there is no Redis."""

    trusted_proxies: str = "127.0.0.1"
    """Comma-separated addresses or networks (``*``: any) whose ``X-Forwarded-For`` and
    ``X-Forwarded-Proto`` are believed; the client address is the one they name."""

    access_log: bool = True
    """One JSON line per request on the ``coursebook.access`` logger."""

    metrics: bool = True
    """Record Prometheus metrics and serve them at ``/metrics`` (not behind a token)."""
