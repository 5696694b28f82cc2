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
