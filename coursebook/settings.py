"""Settings, read from ``COURSEBOOK_*`` environment variables (and a ``.env`` file)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator can set; each field is documented in the README table."""

    model_config = SettingsConfigDict(
        env_prefix="COURSEBOOK_", env_file=".env", extra="ignore", frozen=True
    )

    database_url: str = "sqlite:///var/coursebook.sqlite3"
    """SQLAlchemy URL. A ``postgresql+psycopg://`` URL switches to PostgreSQL."""

    database_pool_size: int = Field(default=10, ge=1, le=1000)
    """Connections a worker process may open and keep (PostgreSQL), each lent to one
    request at a time."""

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

    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ("localhost", "127.0.0.1", "[::1]")
    """Host names the server answers for, comma-separated, as Django's ``ALLOWED_HOSTS``:
    an exact name, ``.example.com`` for it and its subdomains, or ``*`` for any; ports
    are ignored. Another ``Host`` is a 400, so no link is ever built from it. The host
    of ``public_url`` is allowed too."""

    max_request_line: int = Field(default=8190, ge=256, le=1_048_576)
    """Bytes of the request line (method, target, version) past which the server
    answers 414 without reading further."""

    max_header_count: int = Field(default=100, ge=8, le=10_000)
    """Header fields one request may carry; past it, 431."""

    max_header_bytes: int = Field(default=65_536, ge=1024, le=16_777_216)
    """Bytes of a request's head (request line and headers); past it the server answers
    431 and closes the connection before it buffers more."""

    drain_seconds: float = Field(default=5.0, ge=0, le=600)
    """On SIGTERM (or SIGINT), seconds during which ``/readyz`` answers 503 while
    requests are still served, so a load balancer stops sending before the worker stops
    accepting; then requests in flight complete and the worker exits."""

    max_expanded_objects: int = Field(default=10_000, ge=1)
    """Expansion budget: the most objects one response may hold."""

    log_level: str = "info"
    """Log level of the service (debug, info, warning, error)."""

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        """The environment gives one comma-separated string."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

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
