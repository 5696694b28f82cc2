"""The coursebook command: migrations, demo data, API tokens and the server."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, NoReturn

import typer
import uvicorn
from alembic.util import CommandError
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from coursebook import demo, migrate
from coursebook.db import create_db_engine
from coursebook.models import PERMISSION_NAMES, api_tokens, providers, users
from coursebook.settings import Settings
from coursebook.tokens import create_token

#: Where ``serve --demo`` keeps the demo manifest (it holds live tokens: mode 0600).
DEMO_MANIFEST = Path("var/demo-manifest.json")

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
db_app = typer.Typer(no_args_is_help=True, help="Database migrations.")
token_app = typer.Typer(no_args_is_help=True, help="API tokens.")
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")

console = Console()
errors = Console(stderr=True)


def fail(message: str) -> NoReturn:
    """Print ``message`` as a one-line error and exit with status 1."""
    errors.print(f"[bold red]Error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def load_settings() -> Settings:
    """The settings, or a clear error naming the invalid variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problem = exc.errors()[0]
        name = "COURSEBOOK_" + "_".join(str(part) for part in problem["loc"]).upper()
        fail(f"{name}: {problem['msg']}.")


@contextmanager
def database(settings: Settings) -> Iterator[Engine]:
    """An engine for the configured database; database failures become one-line errors."""
    url = settings.database_url
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        engine = create_db_engine(url, pool_size=settings.database_pool_size)
    except (SQLAlchemyError, OSError, ValueError) as exc:
        fail(f"Cannot use database URL {shown}: {exc}")
    try:
        yield engine
    except CommandError as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        fail(f"Database error at {shown}: {reason}")
    finally:
        engine.dispose()


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Migrate the database up to the latest revision."""
    settings = load_settings()
    with database(settings):
        migrate.upgrade(settings.database_url, revision)
    console.print("Database is up to date.")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "-1",
) -> None:
    """Migrate the database down (one revision by default)."""
    settings = load_settings()
    with database(settings):
        migrate.downgrade(settings.database_url, revision)
    console.print(f"Database downgraded to {revision}.")


@db_app.command("revision")
def db_revision(
    message: Annotated[str, typer.Option("--message", "-m", help="What the revision does.")],
) -> None:
    """Autogenerate a migration from the models (for developers)."""
    settings = load_settings()
    with database(settings):
        migrate.revision(settings.database_url, message)


def has_providers(conn: Connection) -> bool:
    """Whether the database already holds any provider."""
    return bool(conn.scalar(select(func.count()).select_from(providers)))


def write_manifest(path: Path, manifest: demo.Manifest) -> None:
    """Write ``manifest`` as JSON readable only by its owner: it holds live tokens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(manifest, file, indent=2)


def print_tokens(tokens: dict[str, str]) -> None:
    """Print the demo tokens, one row per role."""
    table = Table(title="Demo API tokens")
    table.add_column("role", no_wrap=True)
    table.add_column("token", no_wrap=True)
    for role, secret in tokens.items():
        table.add_row(role, secret)
    console.print(table)


def generate_demo(engine: Engine, seed: int, scale: demo.ScaleName) -> demo.Manifest | None:
    """Generate demo data into ``engine`` if it holds no provider yet; else return None."""
    with engine.begin() as conn:
        if has_providers(conn):
            return None
        return demo.generate(conn, seed=seed, scale=scale, progress=True)


SeedOption = Annotated[int, typer.Option(help="Seed: the same seed gives the same data.")]
ScaleOption = Annotated[str, typer.Option(help="Dataset size: small, medium or large.")]


def scale_name(value: str) -> demo.ScaleName:
    """Validate a ``--scale`` value."""
    for name in demo.SCALES:
        if name == value:
            return name
    fail(f"Unknown scale {value!r}; choose one of: {', '.join(demo.SCALES)}.")


@app.command("demo")
def demo_command(
    seed: SeedOption = 42,
    scale: ScaleOption = "small",
    manifest: Annotated[
        Path | None, typer.Option(help="Write the manifest JSON (mode 0600) here.")
    ] = None,
) -> None:
    """Migrate an empty database, fill it with demo data and print one token per role."""
    settings = load_settings()
    size = scale_name(scale)
    with database(settings) as engine:
        migrate.upgrade(settings.database_url)
        generated = generate_demo(engine, seed, size)
    if generated is None:
        fail("The database already holds providers; demo data goes only into an empty one.")
    print_tokens(generated["tokens"])
    if manifest is not None:
        write_manifest(manifest, generated)
        console.print(f"Manifest written to {manifest}.")


@token_app.command("create")
def token_create(
    user_id: Annotated[int | None, typer.Option(help="Owner of a user token.")] = None,
    provider_id: Annotated[int | None, typer.Option(help="Provider of an M2M token.")] = None,
    permission: Annotated[
        list[str] | None,
        typer.Option(help=f"M2M permission (repeatable): {', '.join(PERMISSION_NAMES)}."),
    ] = None,
    name: Annotated[str, typer.Option(help="A label to recognise the token by.")] = "",
    expires_in_days: Annotated[
        int | None, typer.Option(min=1, help="Expire after this many days.")
    ] = None,
) -> None:
    """Create a user token (--user-id) or an M2M token (--provider-id, --permission)."""
    if (user_id is None) == (provider_id is None):
        fail("Give exactly one of --user-id (user token) or --provider-id (M2M token).")
    permissions = frozenset(permission or ())
    if provider_id is not None and not permissions:
        fail("An M2M token needs at least one --permission, e.g. --permission developer.")
    if user_id is not None and permissions:
        fail(
            "A user token takes its permissions from the user's staff profiles; drop --permission."
        )
    settings = load_settings()
    now = datetime.now(UTC)
    with database(settings) as engine, engine.begin() as conn:
        owner, owner_id = (users, user_id) if user_id is not None else (providers, provider_id)
        if conn.scalar(select(owner.c.id).where(owner.c.id == owner_id)) is None:
            fail(f"No {owner.name[:-1]} with id {owner_id}.")
        try:
            created = create_token(
                conn,
                created_at=now,
                name=name,
                user_id=user_id,
                provider_id=provider_id,
                permissions=permissions,
                expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
            )
        except ValueError as exc:
            fail(str(exc))
    console.print(f"Token {created.id} created. Copy it now; it is not shown again:")
    console.print(created.secret, highlight=False, soft_wrap=True)


def shown_time(value: datetime | None) -> str:
    """A timestamp for the token table, in UTC to the minute."""
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M")


@token_app.command("list")
def token_list(
    provider_id: Annotated[
        int | None, typer.Option(help="Only M2M tokens of this provider.")
    ] = None,
    user_id: Annotated[int | None, typer.Option(help="Only tokens of this user.")] = None,
) -> None:
    """List tokens (never their secrets)."""
    query = select(api_tokens).order_by(api_tokens.c.id)
    if provider_id is not None:
        query = query.where(api_tokens.c.provider_id == provider_id)
    if user_id is not None:
        query = query.where(api_tokens.c.user_id == user_id)
    settings = load_settings()
    with database(settings) as engine, engine.connect() as conn:
        rows = conn.execute(query).all()
    table = Table()
    for column in ("id", "prefix", "name", "owner", "created", "expires", "revoked"):
        table.add_column(column, no_wrap=column in {"id", "prefix"})
    for row in rows:
        if row.user_id is not None:
            owner = f"user {row.user_id}"
        else:
            granted = ", ".join(p for p in PERMISSION_NAMES if row._mapping[p])
            owner = f"provider {row.provider_id} ({granted})"
        table.add_row(
            str(row.id),
            row.prefix,
            row.name,
            owner,
            shown_time(row.created_at),
            shown_time(row.expires_at),
            shown_time(row.revoked_at),
        )
    console.print(table)


@token_app.command("revoke")
def token_revoke(token_id: Annotated[int, typer.Argument(help="Id from `token list`.")]) -> None:
    """Revoke a token: it stops authenticating at once."""
    settings = load_settings()
    with database(settings) as engine, engine.begin() as conn:
        revoked_at = conn.execute(
            select(api_tokens.c.revoked_at).where(api_tokens.c.id == token_id)
        ).first()
        if revoked_at is None:
            fail(f"No token with id {token_id}.")
        if revoked_at[0] is not None:
            console.print(f"Token {token_id} was already revoked.")
            return
        conn.execute(
            update(api_tokens)
            .where(api_tokens.c.id == token_id)
            .values(revoked_at=datetime.now(UTC))
        )
    console.print(f"Token {token_id} revoked.")


@app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [default: settings].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: settings].")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes.")] = None,
    with_demo: Annotated[
        bool, typer.Option("--demo", help="Migrate, and load demo data into an empty database.")
    ] = False,
    seed: SeedOption = 42,
    scale: ScaleOption = "small",
) -> None:
    """Serve the API with uvicorn."""
    settings = load_settings()
    if with_demo:
        size = scale_name(scale)
        with database(settings) as engine:
            migrate.upgrade(settings.database_url)
            generated = generate_demo(engine, seed, size)
        if generated is not None:
            write_manifest(DEMO_MANIFEST, generated)
        if DEMO_MANIFEST.exists():
            print_tokens(json.loads(DEMO_MANIFEST.read_text(encoding="utf-8"))["tokens"])
    with metrics_directory():
        uvicorn.run(
            "coursebook.app:create_app",
            factory=True,
            host=host or settings.host,
            port=settings.port if port is None else port,
            workers=workers or settings.workers,
            loop="uvloop",
            http="httptools",
            log_level=settings.log_level,
            # coursebook writes its own access log (coursebook.access), as JSON.
            access_log=False,
            proxy_headers=True,
            forwarded_allow_ips=settings.trusted_proxies,
        )


#: Where prometheus-client's multiprocess mode keeps each worker's values.
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def metrics_directory() -> Iterator[None]:
    """A fresh directory for the workers' metric files, named to them through
    ``PROMETHEUS_MULTIPROC_DIR`` before any of them starts.

    An operator's own directory is emptied first (the files of a previous run would add
    to this one's counts); otherwise a temporary one is made and removed at exit.
    """
    given = os.environ.get(MULTIPROC_VARIABLE)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        yield
        return
    made = tempfile.mkdtemp(prefix="coursebook-metrics-")
    os.environ[MULTIPROC_VARIABLE] = made
    try:
        yield
    finally:
        del os.environ[MULTIPROC_VARIABLE]
        shutil.rmtree(made, ignore_errors=True)
