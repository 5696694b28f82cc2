"""The coursebook command: migrations, demo data, users, API tokens and the server.

Help is click's plain layout (``rich_markup_mode=None``): typer's rich panels label every
flag, ``--help`` included, with a ``<bool>`` type that no option setting removes.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import urlsplit

import typer
import uvicorn
from alembic.util import CommandError
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text
from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from coursebook import accounts, demo, migrate, transfer
from coursebook.db import create_db_engine
from coursebook.mirror import MirrorError, mirror, shown_source
from coursebook.models import PERMISSION_NAMES, api_tokens, providers, users
from coursebook.settings import Settings
from coursebook.source import Retry, Source, SourceError
from coursebook.tokens import create_token, token_states

#: Where ``serve --demo`` keeps the demo manifest (it holds live tokens: mode 0600).
DEMO_MANIFEST = Path("var/demo-manifest.json")

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    help="The coursebook command: migrations, demo data, users, API tokens and the server.",
)
db_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Database migrations.")
token_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="API tokens.")
user_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Users and their staff and customer profiles, which decide what a user token reads.",
)
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")
app.add_typer(user_app, name="user")

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


def at_least_one(value: int | None) -> int | None:
    """Refuse a count below 1 (said in words: a range's ``[x>=1]`` is not plain English)."""
    if value is not None and value < 1:
        raise typer.BadParameter("must be at least 1.")
    return value


def shown_url(settings: Settings) -> str:
    """The database URL without its password, to name the database in messages."""
    return make_url(settings.database_url).render_as_string(hide_password=True)


@contextmanager
def database(settings: Settings) -> Iterator[Engine]:
    """An engine for the configured database; database failures become one-line errors."""
    url = settings.database_url
    shown = shown_url(settings)
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
    revision: Annotated[str, typer.Option(metavar="REVISION", help="Revision to reach.")] = "head",
) -> None:
    """Migrate the database up to the latest revision."""
    settings = load_settings()
    with database(settings):
        migrate.upgrade(settings.database_url, revision)
    console.print("Database is up to date.")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[
        str, typer.Option(metavar="REVISION", help="Revision to reach: -1 is the one before.")
    ] = "-1",
) -> None:
    """Migrate the database down (one revision by default)."""
    settings = load_settings()
    with database(settings) as engine:
        migrate.downgrade(settings.database_url, revision)
        with engine.connect() as conn:
            reached = migrate.current(conn)
    # The revision reached, not the one asked for (which may be relative, as -1 is).
    if reached is None:
        console.print("Database downgraded to base: no table of coursebook's is left.")
    else:
        console.print(f"Database downgraded to revision {reached}.")


@db_app.command("revision")
def db_revision(
    message: Annotated[
        str, typer.Option("--message", "-m", metavar="TEXT", help="What the revision does.")
    ],
) -> None:
    """Autogenerate a migration from the models (for developers)."""
    settings = load_settings()
    with database(settings):
        migrate.revision(settings.database_url, message)


def has_providers(conn: Connection) -> bool:
    """Whether the database already holds any provider."""
    return bool(conn.scalar(select(func.count()).select_from(providers)))


def print_tokens(manifest: demo.Manifest, roles: list[str]) -> None:
    """Print the tokens of ``roles``, each with the id and name of the user it belongs to
    (the manifest has their emails too)."""
    # A token cut short is useless: its column keeps its width, and the user's wraps.
    table = Table(title="Demo API tokens", box=box.SIMPLE_HEAD)
    table.add_column("role", no_wrap=True)
    table.add_column(
        "token",
        no_wrap=True,
        min_width=max((len(manifest["tokens"][role]) for role in roles), default=5),
    )
    table.add_column("user", overflow="fold")
    for role in roles:
        user = manifest["users"].get(role)
        owner = (
            f"{user['id']} {user['name']}"
            if user
            else f"none (M2M token of provider {manifest['providers']['main']})"
        )
        table.add_row(role, manifest["tokens"][role], owner)
    console.print(table)
    left_out = [role for role in manifest["tokens"] if role not in roles]
    if left_out:
        console.print(
            f"Not shown, as they no longer authenticate: {', '.join(left_out)} "
            "(the manifest keeps them for tests)."
        )


def make_demo(conn: Connection, seed: int, scale: demo.ScaleName, path: Path) -> demo.Manifest:
    """Generate the demo in ``conn``'s transaction and write its manifest to ``path``
    before the commit, so that a manifest that cannot be written leaves no demo behind."""
    manifest = demo.generate(conn, seed=seed, scale=scale, progress=True)
    demo.write_manifest(path, manifest)
    return manifest


def reset_hint(seed: int, scale: demo.ScaleName) -> str:
    """The command that starts again with a demo of ``seed`` and ``scale``."""
    options = "".join(
        f" {option} {value}"
        for option, value, default in (
            ("--seed", seed, demo.DEFAULT_SEED),
            ("--scale", scale, demo.DEFAULT_SCALE),
        )
        if value != default
    )
    return f"`coursebook demo --reset{options}` (it deletes every row first)"


def demo_already_there(
    conn: Connection, settings: Settings, seed: int | None, scale: demo.ScaleName | None
) -> demo.Manifest:
    """The manifest of the demo a non-empty database holds, if it is the one asked for;
    otherwise exit, saying how to start again."""
    manifest = demo.read_manifest(DEMO_MANIFEST)
    wanted_seed = demo.DEFAULT_SEED if seed is None else seed
    wanted_scale = scale or demo.DEFAULT_SCALE
    if manifest is None or not token_states(conn, manifest["tokens"].values(), datetime.now(UTC)):
        fail(
            f"The database at {shown_url(settings)} already holds data, and no demo manifest "
            f"in {DEMO_MANIFEST} describes it. Serve it without --demo, or start again with "
            f"{reset_hint(wanted_seed, wanted_scale)}, then `coursebook serve --demo`."
        )
    held = (manifest["seed"], manifest["scale"])
    if (seed is not None and seed != held[0]) or (scale is not None and scale != held[1]):
        asked = (held[0] if seed is None else seed, scale or held[1])
        fail(
            f"The database holds the demo of seed {held[0]} at scale {held[1]}, not seed "
            f"{asked[0]} at scale {asked[1]}. To start again with those, run "
            f"{reset_hint(*asked)}, then `coursebook serve --demo`; to serve the demo it "
            "holds, leave out --seed and --scale."
        )
    return manifest


SCALE_CHOICES = "|".join(demo.SCALES)
SCALE_HELP = "How much data: large makes over a million course sessions."
SEED_HELP = "Seed of the data: the same seed gives the same data."


@app.command("demo")
def demo_command(
    seed: Annotated[int, typer.Option(metavar="N", help=SEED_HELP)] = demo.DEFAULT_SEED,
    scale: Annotated[
        demo.ScaleName, typer.Option(metavar=SCALE_CHOICES, help=SCALE_HELP)
    ] = demo.DEFAULT_SCALE,
    manifest: Annotated[
        Path,
        typer.Option(
            metavar="FILE",
            help="Where to write the manifest (ids, users and tokens, as JSON readable only "
            "by you); `serve --demo` reads it from the default place.",
        ),
    ] = DEMO_MANIFEST,
    reset: Annotated[
        bool,
        typer.Option("--reset", help="Delete every row of the database first, to start again."),
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", help="Delete without asking first (with --reset).")
    ] = False,
) -> None:
    """Migrate the database, fill it with demo data and print a token per role.

    Demo data goes only into an empty database, unless --reset empties it first.
    """
    if yes and not reset:
        fail("--yes only confirms --reset, which is not given: nothing would be deleted.")
    settings = load_settings()
    with database(settings) as engine:
        migrate.upgrade(settings.database_url)
        if reset and not yes:
            typer.confirm(f"Delete every row of the database at {shown_url(settings)}?", abort=True)
        with engine.begin() as conn:
            if reset:
                demo.erase(conn)
            elif has_providers(conn):
                fail(
                    f"The database at {shown_url(settings)} already holds data, and demo data "
                    f"goes only into an empty one. To start again, run {reset_hint(seed, scale)}"
                    "; to serve what it holds, `coursebook serve` (with --demo if it is a demo)."
                )
            generated = make_demo(conn, seed, scale, manifest)
            roles = demo.usable_roles(conn, generated, datetime.now(UTC))
    print_tokens(generated, roles)
    console.print(f"Manifest written to {manifest}.")


def permission_option(whose: str) -> Any:
    """The repeatable ``--permission NAME`` option, naming every valid permission."""
    return typer.Option(
        metavar="NAME",
        show_default=False,
        help=f"A permission of {whose}; repeat it for more. One of: {', '.join(PERMISSION_NAMES)}.",
    )


def id_option(help: str) -> Any:
    """An ``--x-id ID`` option."""
    return typer.Option(metavar="ID", show_default=False, help=help)


@token_app.command("create")
def token_create(
    user_id: Annotated[int | None, id_option("The user a user token belongs to.")] = None,
    provider_id: Annotated[int | None, id_option("The provider an M2M token belongs to.")] = None,
    permission: Annotated[list[str] | None, permission_option("an M2M token")] = None,
    name: Annotated[
        str,
        typer.Option(
            metavar="TEXT",
            show_default=False,
            help="A label to recognise the token by in `token list` (none by default).",
        ),
    ] = "",
    expires_in_days: Annotated[
        int | None,
        typer.Option(
            metavar="DAYS",
            callback=at_least_one,
            show_default=False,
            help="Expire after this many days (by default it never expires).",
        ),
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
    provider_id: Annotated[int | None, id_option("Only M2M tokens of this provider.")] = None,
    user_id: Annotated[int | None, id_option("Only tokens of this user.")] = None,
) -> None:
    """List tokens (never their secrets); all of them unless an option narrows the list."""
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
def token_revoke(
    token_id: Annotated[int, typer.Argument(metavar="ID", hidden=True)],
) -> None:
    """Revoke the token of id ID (from `token list`): it stops authenticating at once."""
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


@user_app.command("create")
def user_create(
    email: Annotated[
        str, typer.Option(metavar="EMAIL", show_default=False, help="Unique among users.")
    ],
    name: Annotated[str, typer.Option(metavar="TEXT", show_default=False, help="Full name.")],
) -> None:
    """Create a user; then give it a staff or customer profile, and a token."""
    settings = load_settings()
    with database(settings) as engine, engine.begin() as conn:
        try:
            user_id = accounts.create_user(conn, email=email, name=name)
        except ValueError as exc:
            fail(str(exc))
    console.print(
        f"User {user_id} created. Next, `coursebook user staff --user-id {user_id} ...` or "
        f"`coursebook user customer --user-id {user_id} ...`, then "
        f"`coursebook token create --user-id {user_id}`.",
        highlight=False,
    )


UserOption = Annotated[int, id_option("The user, from `user create`.")]
ProviderOption = Annotated[int, id_option("The provider the profile is at.")]


@user_app.command("staff")
def user_staff(
    user_id: UserOption,
    provider_id: ProviderOption,
    permission: Annotated[list[str] | None, permission_option("the staff profile")] = None,
) -> None:
    """Give a user a staff profile at a provider: its token then reads in provider mode.

    Reading course sessions takes manage_events, attendances, developer or super_admin
    (every session), or instructor_manage_events or instructor_attendances (the sessions
    the user instructs).
    """
    settings = load_settings()
    permissions = frozenset(permission or ())
    with database(settings) as engine, engine.begin() as conn:
        try:
            profile_id = accounts.add_staff_profile(
                conn, user_id=user_id, provider_id=provider_id, permissions=permissions
            )
        except ValueError as exc:
            fail(str(exc))
    granted = ", ".join(p for p in PERMISSION_NAMES if p in permissions) or "no permission"
    console.print(
        f"Staff profile {profile_id} of user {user_id} at provider {provider_id}, with {granted}.",
        highlight=False,
    )


@user_app.command("customer")
def user_customer(
    user_id: UserOption,
    provider_id: ProviderOption,
    membership: Annotated[
        list[int] | None,
        typer.Option(
            metavar="ID",
            show_default=False,
            help="A membership of the provider the customer holds, active from today; "
            "repeat it for more (none by default).",
        ),
    ] = None,
) -> None:
    """Give a user a customer profile at a provider: its token then reads in customer mode."""
    settings = load_settings()
    with database(settings) as engine, engine.begin() as conn:
        try:
            profile_id = accounts.add_customer_profile(
                conn,
                user_id=user_id,
                provider_id=provider_id,
                membership_ids=membership or (),
                starts_on=datetime.now(UTC).date(),
            )
        except ValueError as exc:
            fail(str(exc))
    held = ", ".join(str(m) for m in dict.fromkeys(membership or ())) or "none"
    console.print(
        f"Customer profile {profile_id} of user {user_id} at provider {provider_id}, "
        f"holding memberships: {held}.",
        highlight=False,
    )


def setting_default(name: str) -> str:
    """The help text's default for an option that falls back to a setting."""
    return f"[default: COURSEBOOK_{name.upper()}, else {Settings.model_fields[name].default}]"


def port_number(value: int | None) -> int | None:
    """Refuse a port outside TCP's range."""
    if value is not None and not 0 <= value <= 65535:
        raise typer.BadParameter("must be from 0 to 65535.")
    return value


class RateColumn(ProgressColumn):
    """Records a second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f}/s" if speed else "", style="progress.data.speed")


def progress_bar(quiet: bool) -> Progress:
    """A progress bar on standard error with counts and rate; nothing with ``quiet``."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        console=errors,
        disable=quiet,
        transient=True,
    )


QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


@app.command("export")
def export_command(
    provider_id: Annotated[int, id_option("The provider whose data is written.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            show_default=False,
            help="Write the records here (default: standard output).",
        ),
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Write one provider's data as NDJSON records (docs/data.md); never any token."""
    settings = load_settings()
    with database(settings) as engine, progress_bar(quiet) as bar:
        try:
            if output is None:
                lines = transfer.export(engine, provider_id, sys.stdout.buffer, bar)
            else:
                with output.open("wb") as out:
                    lines = transfer.export(engine, provider_id, out, bar)
        except LookupError as exc:
            fail(str(exc))
    if output is not None and not quiet:
        console.print(f"Exported {lines} records of provider {provider_id} to {output}.")


@app.command("import")
def import_command(
    file: Annotated[str, typer.Argument(metavar="FILE", hidden=True)],
    provider_id: Annotated[
        int | None,
        typer.Option(
            metavar="ID",
            show_default=False,
            help="The provider the records must be of (default: the file's one provider).",
        ),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Also remove the provider's data the file lacks.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the file; write nothing.")
    ] = False,
    max_line_bytes: Annotated[
        int, typer.Option(metavar="BYTES", help="The longest line accepted (at least 1024).")
    ] = transfer.MAX_LINE_BYTES,
    quiet: QuietOption = False,
) -> None:
    """Check FILE, a file of NDJSON records (- for standard input), then write it in one
    transaction (upsert by id)."""
    if max_line_bytes < 1024:
        fail("--max-line-bytes must be at least 1024.")
    settings = load_settings()
    try:
        stream = sys.stdin.buffer if file == "-" else Path(file).open("rb")
    except OSError as exc:
        fail(f"Cannot read {file}: {exc.strerror}.")
    with stream, database(settings) as engine, progress_bar(quiet) as bar:
        migrate.upgrade(settings.database_url)
        try:
            done = transfer.import_records(
                engine,
                transfer.read_lines(stream, max_line_bytes),
                provider_id=provider_id,
                replace=replace,
                dry_run=dry_run,
                progress=bar,
            )
        except transfer.InvalidFile as exc:
            for problem in exc.problems:
                errors.print(f"[bold red]Error:[/] {problem}", highlight=False, soft_wrap=True)
            fail(f"{file}: nothing was written.")
    total = sum(done.counts.values())
    verb = "Checked" if dry_run else "Imported"
    if not quiet:
        console.print(f"{verb} {total} records of provider {done.provider_id}.")


def source_url(value: str) -> str:
    """Refuse a source that is not an http(s) URL, or one that carries credentials."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise typer.BadParameter(
            "must be an http:// or https:// URL, such as https://api.example.com."
        )
    if parts.username or parts.password:
        raise typer.BadParameter("must not hold a user or password: give the token with --token.")
    return value


@app.command("mirror")
def mirror_command(
    source: Annotated[
        str,
        typer.Option(
            "--from",
            metavar="URL",
            show_default=False,
            callback=source_url,
            help="The API to copy from: TeamUp itself or another coursebook.",
        ),
    ],
    token: Annotated[
        str,
        typer.Option(
            metavar="TOKEN",
            show_default=False,
            envvar="COURSEBOOK_MIRROR_TOKEN",
            show_envvar=False,
            help="A token of the source that reads all of the provider's data (an admin's); "
            "or set COURSEBOOK_MIRROR_TOKEN. It is never written anywhere.",
        ),
    ],
    provider_id: Annotated[int, id_option("The provider to copy (the same id here).")],
    state: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            show_default=False,
            help="Where the pages fetched so far are kept, so that an interrupted mirror "
            "goes on where it stopped (default: var/mirror-provider-ID.ndjson).",
        ),
    ] = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Forget the pages fetched so far; fetch all again.")
    ] = False,
    retries: Annotated[
        int,
        typer.Option(
            metavar="N",
            callback=at_least_one,
            help="Tries of one request (a 429, a 5xx or a network error is tried again, "
            "waiting longer each time) before the mirror stops.",
        ),
    ] = Retry().attempts,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Fetch and check; write nothing, say what would change."),
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Copy a provider from a live TeamUp-compatible API into this database (docs/data.md)."""
    settings = load_settings()
    path = state or Path(f"var/mirror-provider-{provider_id}.ndjson")
    with (
        database(settings) as engine,
        Source(source, token, provider_id, retry=Retry(attempts=retries)) as api,
        progress_bar(quiet) as bar,
    ):
        migrate.upgrade(settings.database_url)
        try:
            done = mirror(engine, api, path, restart=restart, dry_run=dry_run, progress=bar)
        except (SourceError, MirrorError) as exc:
            fail(f"{exc}. What was fetched so far is kept in {path}; the same command goes on.")
        except transfer.InvalidFile as exc:
            for problem in exc.problems:
                errors.print(f"[bold red]Error:[/] {problem}", highlight=False, soft_wrap=True)
            fail(f"the source's data was refused: nothing was written ({path} keeps it).")
    if quiet:
        return
    for kind, count in done.counts.items():
        console.print(f"  {kind}: {count} ({done.new.get(kind, 0)} new)", highlight=False)
    total = sum(done.counts.values())
    if dry_run:
        console.print(
            f"Would write {total} records of provider {done.provider_id}, "
            f"{sum(done.new.values())} of them new; nothing was written.",
            highlight=False,
        )
    else:
        console.print(
            f"Mirrored {total} records of provider {done.provider_id} "
            f"({sum(done.new.values())} new) from {shown_source(source)}.",
            highlight=False,
        )


@app.command("serve")
def serve(
    host: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            show_default=False,
            help=f"Address to bind to. {setting_default('host')}",
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            metavar="PORT",
            callback=port_number,
            show_default=False,
            help=f"Port to listen on. {setting_default('port')}",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            callback=at_least_one,
            show_default=False,
            help=f"Worker processes. {setting_default('workers')}",
        ),
    ] = None,
    with_demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Migrate the database, load demo data if it is empty, and print the "
            "demo tokens that still authenticate.",
        ),
    ] = False,
    seed: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            show_default=False,
            help="Seed of the demo data, with --demo; a database already holding a demo must "
            f"hold this seed's. [default: {demo.DEFAULT_SEED}, or the demo's the database holds]",
        ),
    ] = None,
    scale: Annotated[
        demo.ScaleName | None,
        typer.Option(
            metavar=SCALE_CHOICES,
            show_default=False,
            help="Size of the demo data, with --demo; a database already holding a demo must "
            f"hold this size. [default: {demo.DEFAULT_SCALE}, or the demo's the database holds]",
        ),
    ] = None,
) -> None:
    """Serve the API with uvicorn."""
    if not with_demo and (seed is not None or scale is not None):
        fail("--seed and --scale choose the demo data, so they need --demo.")
    settings = load_settings()
    if with_demo:
        with database(settings) as engine:
            migrate.upgrade(settings.database_url)
            with engine.begin() as conn:
                if has_providers(conn):
                    manifest = demo_already_there(conn, settings, seed, scale)
                else:
                    manifest = make_demo(
                        conn,
                        demo.DEFAULT_SEED if seed is None else seed,
                        scale or demo.DEFAULT_SCALE,
                        DEMO_MANIFEST,
                    )
                roles = demo.usable_roles(conn, manifest, datetime.now(UTC))
        console.print(
            f"The demo of seed {manifest['seed']} at scale {manifest['scale']}; its manifest "
            f"is {DEMO_MANIFEST}.",
            highlight=False,
        )
        print_tokens(manifest, roles)
    with metrics_directory():
        uvicorn.run(
            "coursebook.app:create_app",
            factory=True,
            host=host or settings.host,
            port=settings.port if port is None else port,
            workers=workers or settings.workers,
            loop="uvloop",
            http="coursebook.protocol:LimitedHttpToolsProtocol",
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
