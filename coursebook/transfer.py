"""Export and import: a provider's data as records (``records.py``), in and out.

Export writes every record of one provider, kind by kind in ``KINDS`` order and each
kind by id, so the same data always gives the same bytes. Import checks everything
before it writes anything, in one transaction: each record against its kind's schema
as it is read (any order), then the whole file in SQL from temporary staging tables
(duplicate ids, references, ids another provider owns, unique values), and only then
upserts by id, table by table in a few set-based statements (the kept counts counted
once at the end, not by a trigger per row). Memory stays bounded: lines are read with a
cap, rows go to staging in batches, and the checks are queries, not sets held in Python.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO

import fastjsonschema
import orjson
from rich.progress import Progress, TaskID
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    Engine,
    FromClause,
    Index,
    MetaData,
    Select,
    Table,
    UniqueConstraint,
    and_,
    delete,
    exists,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    text,
    union,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError

from coursebook import models as m
from coursebook.records import KINDS, USER, IdList, Invalid, Kind, dump, load, validator

#: The longest line an import reads; a longer one is refused without being held.
MAX_LINE_BYTES = 1 << 20
#: An import stops reading after this many problems: enough to fix a file in one go.
MAX_PROBLEMS = 20
#: Rows staged (or exported) per batch.
BATCH = 5_000


@dataclass(frozen=True)
class Problem:
    """What is wrong with a file: where (line, field path) and what."""

    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "file"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class InvalidFile(Exception):
    """The file was refused and nothing was written; ``problems`` says why."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


@dataclass
class Imported:
    """What an import read (records by kind) and whether it wrote them."""

    provider_id: int
    counts: dict[str, int] = field(default_factory=dict)
    written: bool = False


# -- which rows are a provider's ---------------------------------------------------------


def owner_of(kind: Kind, table: FromClause | None = None) -> tuple[FromClause, ColumnElement[Any]]:
    """The FROM that reaches the provider of ``kind``'s rows, and its provider column."""
    source = table if table is not None else kind.table
    assert kind.owner is not None
    if kind.table is m.providers:
        return source, source.c.id
    joined: FromClause = source
    current: FromClause = source
    for column, parent in kind.owner:
        current_parent = parent.alias(f"owner_{parent.name}")
        joined = joined.join(current_parent, current_parent.c.id == current.c[column])
        current = current_parent
    return joined, current.c.provider_id


def owned(kind: Kind, provider_id: int) -> Select[Any]:
    """Ids of ``kind``'s rows in the database that belong to ``provider_id``."""
    if kind.owner is None:
        profiles = [
            select(t.c.user_id).where(t.c.provider_id == provider_id)
            for t in (m.staff_profiles, m.customer_profiles)
        ]
        return select(union(*profiles).subquery().c.user_id)
    source, provider = owner_of(kind)
    return select(kind.table.c.id).select_from(source).where(provider == provider_id)


# -- export -------------------------------------------------------------------------------


def export_lines(conn: Connection, provider_id: int) -> Iterator[bytes]:
    """Every record of ``provider_id`` as NDJSON lines, in a stable order."""
    for kind in KINDS.values():
        yield from export_kind(conn, kind, provider_id)


def export_kind(conn: Connection, kind: Kind, provider_id: int) -> Iterator[bytes]:
    table = kind.table
    ids = owned(kind, provider_id).scalar_subquery()
    statement = select(table).where(table.c.id.in_(ids)).order_by(table.c.id)
    nested = kind.nested
    if nested is not None:
        statement = statement.add_columns(
            *[c.label(f"nested_{c.name}") for c in nested.table.c]
        ).outerjoin(nested.table, nested.table.c[nested.key] == table.c.id)
    streams = [_links(conn, id_list, ids) for id_list in kind.lists]
    pending: list[tuple[int, int] | None] = [next(s, None) for s in streams]
    rows = conn.execution_options(yield_per=BATCH).execute(statement)
    for row in rows.mappings():
        lists: list[list[int]] = []
        for index, stream in enumerate(streams):
            found: list[int] = []
            while (link := pending[index]) is not None and link[0] <= row["id"]:
                if link[0] == row["id"]:
                    found.append(link[1])
                link = pending[index] = next(stream, None)
            lists.append(found)
        inner = None
        if nested is not None and row[f"nested_{nested.key}"] is not None:
            inner = {c.name: row[f"nested_{c.name}"] for c in nested.table.c}
        yield orjson.dumps(dump(kind, row, inner, tuple(lists))) + b"\n"


def _links(conn: Connection, id_list: IdList, ids: Any) -> Iterator[tuple[int, int]]:
    """(parent, child) pairs of a link table for the parents ``ids``, in order."""
    t = id_list.table
    parent, child = t.c[id_list.parent], t.c[id_list.child]
    statement = select(parent, child).where(parent.in_(ids)).order_by(parent, child)
    for row in conn.execution_options(yield_per=BATCH).execute(statement):
        yield int(row[0]), int(row[1])


def export(
    engine: Engine, provider_id: int, out: BinaryIO, progress: Progress | None = None
) -> int:
    """Write ``provider_id``'s records to ``out`` from one snapshot; the number of lines."""
    task = progress.add_task("Exporting", total=None) if progress else None
    written = 0
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        if conn.scalar(select(m.providers.c.id).where(m.providers.c.id == provider_id)) is None:
            raise LookupError(f"No provider with id {provider_id}.")
        for line in export_lines(conn, provider_id):
            out.write(line)
            written += 1
            if progress is not None and task is not None and written % BATCH == 0:
                progress.update(task, completed=written)
    if progress is not None and task is not None:
        progress.update(task, completed=written)
    return written


# -- reading a file ----------------------------------------------------------------------

#: What a file's line gives an import: a record, a problem, or nothing (a blank line).
Line = dict[str, Any] | Problem | None


def read_lines(stream: BinaryIO, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[Line]:
    """The records of an NDJSON stream, one per line, never holding more than
    ``max_line_bytes`` of a line: a longer line is a problem, skipped in chunks."""
    number = 0
    while raw := stream.readline(max_line_bytes + 1):
        number += 1
        if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):
                raw = stream.readline(1 << 16)
            yield Problem(number, "", f"longer than {max_line_bytes} bytes (see --max-line-bytes)")
            continue
        yield parse_line(number, raw)


def parse_line(number: int, raw: bytes) -> Line:
    """One line's record; a problem naming the line for anything but one JSON object."""
    if not raw.strip():
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            return Problem(number, "", f"not valid UTF-8 (byte {bad.start + 1} of the line)")
        return Problem(number, "", f"not JSON: {exc}")
    if not isinstance(value, dict):
        return Problem(number, "", "a line must hold one JSON object")
    if b"\\u0000" in raw:
        return Problem(number, "", "a NUL character (\\u0000) cannot be stored")
    return value


# -- import -------------------------------------------------------------------------------


class Staging:
    """Temporary tables holding a file's rows (with their line) until it is checked."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.metadata = MetaData()
        self.tables: dict[str, Table] = {}
        self.sources: dict[str, Table] = {}
        self.writers: dict[str, StageWriter] = {}
        for kind in KINDS.values():
            self._stage(kind.table)
            if kind.nested is not None:
                self._stage(kind.nested.table)
            for id_list in kind.lists:
                self._stage(id_list.table)
        self.metadata.create_all(conn)

    def _stage(self, table: Table) -> None:
        columns = [Column(c.name, c.type, nullable=True) for c in table.c]
        stage = Table(
            f"stage_{table.name}",
            self.metadata,
            *columns,
            Column("line", BigInteger),
            prefixes=["TEMPORARY"],
        )
        self.tables[table.name] = stage
        self.sources[table.name] = table
        self.writers[table.name] = StageWriter(self.conn, stage)

    def of(self, table: Table) -> Table:
        return self.tables[table.name]

    def add(self, table: Table, row: dict[str, Any], line: int) -> None:
        self.writers[table.name].add(row, line)

    def flush(self) -> None:
        for writer in self.writers.values():
            writer.flush()

    def index(self) -> None:
        """Index the staged keys the checks join on, and each set of values the table
        keeps unique (``duplicated`` looks each row's up among the others): after
        loading, which is cheaper than during."""
        for name, stage in self.tables.items():
            keys = ["id"] if "id" in stage.c else [c.name for c in stage.c if c.name != "line"]
            Index(f"ix_stage_{name}", *[stage.c[k] for k in keys]).create(self.conn)
            for number, columns in enumerate(unique_columns(self.sources[name])):
                index = Index(f"ix_stage_{name}_{number}", *[stage.c[c] for c in columns])
                index.create(self.conn)

    def drop(self) -> None:
        self.metadata.drop_all(self.conn)


class StageWriter:
    """Rows bound for one staging table, written in batches straight through the
    driver: COPY on PostgreSQL, executemany of plain tuples on SQLite. Each row becomes
    its tuple once, each value made by its column type's bind processor (or by
    ``stored_instant``, which writes the same faster), so it is stored as SQLAlchemy
    would store it, without SQLAlchemy's per-row work."""

    def __init__(self, conn: Connection, stage: Table) -> None:
        self.conn = conn
        self.names = [c.name for c in stage.c if c.name != "line"]
        self.rows: list[list[Any]] = []
        quoted = ", ".join(f'"{c.name}"' for c in stage.c)
        dialect = conn.dialect
        self.postgresql = dialect.name == "postgresql"
        self.processors: list[tuple[int, Callable[[Any], Any]]]
        if self.postgresql:
            from psycopg.types.json import Json

            self.statement = f"COPY {stage.name} ({quoted}) FROM STDIN"
            self.processors = [
                (index, Json) for index, c in enumerate(stage.c) if isinstance(c.type, JSON)
            ]
        else:
            self.statement = (
                f"INSERT INTO {stage.name} ({quoted}) VALUES ({', '.join('?' * len(stage.c))})"
            )
            self.processors = [
                (index, faster(processor))
                for index, c in enumerate(stage.c)
                if (processor := c.type.dialect_impl(dialect).bind_processor(dialect))
            ]

    def add(self, row: dict[str, Any], line: int) -> None:
        """Stage one row of the record on ``line``."""
        value = [row.get(name) for name in self.names]
        for index, process in self.processors:
            value[index] = process(value[index])
        value.append(line)
        self.rows.append(value)
        if len(self.rows) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        raw = self.conn.connection.driver_connection
        assert raw is not None
        if self.postgresql:
            with raw.cursor() as cursor, cursor.copy(self.statement) as copy:
                for value in self.rows:
                    copy.write_row(value)
        else:
            raw.executemany(self.statement, self.rows)
        self.rows.clear()


#: Instants that tell apart the forms a stored date-time could take.
SAMPLE_INSTANTS = (
    datetime(2026, 3, 30, 5, 30, tzinfo=UTC),
    datetime(1, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999),
)


def stored_instant(value: datetime | None) -> str | None:
    """A date-time as SQLAlchemy stores it in SQLite (UTC, naive, with microseconds),
    written by ``isoformat`` in C: SQLAlchemy's own processor formats it in Python, and
    was the largest single cost of staging a file's rows."""
    return None if value is None else value.replace(tzinfo=None).isoformat(" ", "microseconds")


def faster(processor: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``stored_instant`` in place of ``processor`` when it stores date-times the same
    way (checked on instants that differ in every part), else ``processor``."""
    try:
        same = all(processor(v) == stored_instant(v) for v in SAMPLE_INSTANTS)
    except (TypeError, ValueError, AttributeError):
        return processor
    return stored_instant if same else processor


def stage_line(staging: Staging, number: int, record: dict[str, Any]) -> Problem | None:
    """Check one record and stage its rows; a problem if it is not a valid record."""
    name = record.get("object")
    kind = KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        return Problem(
            number, "object", f"{name!r} is not a record kind; one of: {', '.join(KINDS)}"
        )
    try:
        validator(kind)(record)
        loaded = load(kind, record)
    except fastjsonschema.JsonSchemaValueException as exc:
        path = ".".join(str(part) for part in (exc.path or ["data"])[1:])
        message = exc.message
        prefix = "data." + path if path else "data"
        message = message[len(prefix) :].strip() if message.startswith(prefix) else message
        return Problem(number, path, message)
    except Invalid as exc:
        return Problem(number, exc.path, exc.message)
    staging.add(kind.table, loaded.row, number)
    if loaded.nested is not None and kind.nested is not None:
        staging.add(kind.nested.table, loaded.nested, number)
    for id_list, ids in zip(kind.lists, loaded.lists, strict=True):
        for child in ids:
            staging.add(
                id_list.table, {id_list.parent: loaded.row["id"], id_list.child: child}, number
            )
    return None


def import_records(
    engine: Engine,
    lines: Iterable[Line],
    *,
    provider_id: int | None = None,
    replace: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> Imported:
    """Check every record of ``lines`` (a file's, or a mirror's records: position ``n`` is
    line ``n``), then upsert them by id in one transaction; nothing is written when
    anything is wrong (``InvalidFile``) or with ``dry_run``. ``replace`` also removes the
    provider's rows the records lack. ``provider_id``, if given, is the provider the
    records must be of (a file without a provider record then adds to its data)."""
    counts: dict[str, int] = {}
    problems: list[Problem] = []
    reading = progress.add_task("Checking records", total=None) if progress else None
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.begin()
        staging = Staging(conn)
        try:
            for number, line in enumerate(lines, 1):
                if isinstance(line, Problem):
                    problems.append(line)
                elif line is not None:
                    problem = stage_line(staging, number, line)
                    if problem is not None:
                        problems.append(problem)
                    else:
                        name = line["object"]
                        counts[name] = counts.get(name, 0) + 1
                if len(problems) >= MAX_PROBLEMS:
                    break
                if progress is not None and reading is not None and number % BATCH == 0:
                    progress.update(reading, completed=number)
            if problems:
                raise InvalidFile(problems)
            staging.flush()
            staging.index()
            lock(conn, staging)
            target = provider_of_file(conn, staging, provider_id)
            problems = check(conn, staging, target)
            if problems:
                raise InvalidFile(problems)
            write(conn, staging, target, replace=replace, progress=progress)
            staging.drop()
            if dry_run:
                conn.rollback()
            else:
                conn.commit()
            return Imported(target, counts, written=not dry_run)
        except IntegrityError as exc:
            conn.rollback()
            reason = str(exc.orig).strip().splitlines()[0]
            raise InvalidFile(
                [Problem(None, "", f"the database refused the records: {reason}")]
            ) from None
        except BaseException:
            conn.rollback()
            raise


def provider_of_file(conn: Connection, staging: Staging, given: int | None) -> int:
    """The one provider the records are of: the file's provider record, or ``given``."""
    stage = staging.of(m.providers)
    found = conn.execute(select(stage.c.id, stage.c.line).order_by(stage.c.line)).all()
    if len(found) > 1:
        raise InvalidFile(
            [Problem(row.line, "id", "a file holds one provider record") for row in found[1:]]
        )
    if found:
        if given is not None and found[0].id != given:
            raise InvalidFile(
                [
                    Problem(
                        found[0].line, "id", f"the file is of provider {found[0].id}, not {given}"
                    )
                ]
            )
        return int(found[0].id)
    if given is None:
        raise InvalidFile([Problem(None, "", "no provider record: the file names no provider")])
    if conn.scalar(select(m.providers.c.id).where(m.providers.c.id == given)) is None:
        raise InvalidFile(
            [Problem(None, "", f"no provider record, and no provider {given} in the database")]
        )
    return given


def check(conn: Connection, staging: Staging, provider_id: int) -> list[Problem]:
    """Everything about the records as a whole that the database would refuse or that
    would touch another provider's data; at most ``MAX_PROBLEMS`` problems."""
    problems: list[Problem] = []

    def run(statement: Select[Any], describe: Any) -> None:
        left = MAX_PROBLEMS - len(problems)
        if left > 0:
            for row in conn.execute(statement.limit(left)):
                problems.append(describe(row))

    for kind in KINDS.values():
        stage = staging.of(kind.table)
        run(
            select(stage.c.id, func.min(stage.c.line), func.max(stage.c.line))
            .group_by(stage.c.id)
            .having(func.count() > 1),
            lambda row, kind=kind: Problem(
                row[2], "id", f"{kind.object} {row[0]} is also on line {row[1]}"
            ),
        )
        if "provider_id" in stage.c:
            run(
                select(stage.c.line, stage.c.provider_id).where(stage.c.provider_id != provider_id),
                lambda row: Problem(
                    row[0], "provider", f"{row[1]} is not the file's provider ({provider_id})"
                ),
            )
        if kind.owner is not None:
            existing = kind.table.alias("existing")
            source, provider = owner_of(kind, existing)
            run(
                select(stage.c.line, stage.c.id)
                .select_from(source.join(stage, stage.c.id == existing.c.id))
                .where(provider != provider_id),
                lambda row, kind=kind: Problem(
                    row[0], "id", f"{kind.object} {row[1]} belongs to another provider"
                ),
            )
        for key, column, target in kind.references:
            run(
                unresolved(staging, stage.c[column], target, provider_id),
                lambda row, key=key, target=target: Problem(
                    row[0], key, f"no {target} {row[1]} in the file or the provider's data"
                ),
            )
        for id_list in kind.lists:
            links = staging.of(id_list.table)
            run(
                unresolved(staging, links.c[id_list.child], id_list.target, provider_id),
                lambda row, id_list=id_list: Problem(
                    row[0],
                    id_list.name,
                    f"no {id_list.target} {row[1]} in the file or the provider's data",
                ),
            )
        for columns in unique_columns(kind.table):
            run(*duplicated(staging, kind, columns))
    run(*shared_users(staging, provider_id))
    return problems


def unresolved(staging: Staging, column: Column[Any], target: str, provider_id: int) -> Select[Any]:
    """Staged rows whose ``column`` names a ``target`` neither staged nor the provider's."""
    kind = KINDS[target]
    staged = staging.of(kind.table)
    in_file = exists(select(staged.c.id).where(staged.c.id == column))
    if kind.owner is None:
        in_database = exists(select(kind.table.c.id).where(kind.table.c.id == column))
    else:
        source, provider = owner_of(kind)
        in_database = exists(
            select(kind.table.c.id)
            .select_from(source)
            .where(kind.table.c.id == column, provider == provider_id)
        )
    stage = column.table
    return select(stage.c.line, column).where(column.is_not(None), not_(in_file), not_(in_database))


def unique_columns(table: Table) -> list[tuple[str, ...]]:
    """Each set of columns ``table`` keeps unique, its primary key aside."""
    found: list[tuple[str, ...]] = [(c.name,) for c in table.c if c.unique]
    found += [
        tuple(c.name for c in constraint.columns)
        for constraint in table.constraints
        if isinstance(constraint, UniqueConstraint)
    ]
    return found


def duplicated(staging: Staging, kind: Kind, columns: tuple[str, ...]) -> tuple[Select[Any], Any]:
    """Staged rows whose unique ``columns`` another row has, staged or in the database."""
    stage = staging.of(kind.table)
    other = stage.alias("other")
    same = and_(*(other.c[c] == stage.c[c] for c in columns))
    existing = kind.table
    taken = and_(*(existing.c[c] == stage.c[c] for c in columns))
    statement = select(stage.c.line, *[stage.c[c] for c in columns]).where(
        or_(
            exists(select(other.c.id).where(same, other.c.id != stage.c.id)),
            exists(
                select(existing.c.id).where(
                    taken,
                    existing.c.id != stage.c.id,
                    existing.c.id.not_in(select(stage.c.id).scalar_subquery()),
                )
            ),
        )
    )
    shown = ", ".join(columns)

    def describe(row: Any) -> Problem:
        values = ", ".join(str(v) for v in row[1:])
        return Problem(row[0], columns[0], f"{shown} {values} is already another {kind.object}'s")

    return statement.order_by(stage.c.line), describe


def shared_users(staging: Staging, provider_id: int) -> tuple[Select[Any], Any]:
    """Staged users that differ from a user another provider also has."""
    stage = staging.of(USER.table)
    users = m.users
    elsewhere = or_(
        *(
            exists(select(t.c.id).where(t.c.user_id == users.c.id, t.c.provider_id != provider_id))
            for t in (m.staff_profiles, m.customer_profiles)
        )
    )
    statement = (
        select(stage.c.line, stage.c.id)
        .join(users, users.c.id == stage.c.id)
        .where(or_(users.c.email != stage.c.email, users.c.name != stage.c.name), elsewhere)
    )
    return statement, lambda row: Problem(
        row[0], "id", f"user {row[1]} is also another provider's: its email and name stay"
    )


def upsert(conn: Connection, table: Table, stage: Table, keys: list[str], *, replica: bool) -> None:
    """Insert the staged rows into ``table``, updating those whose ``keys`` exist: the
    existing rows first (their triggers keep what they keep), then the new ones in key
    order without their per-row triggers (``without_row_triggers``). Into an empty
    table, every row is new: one statement, and no row looked up first."""
    columns = [c.name for c in table.c if c.name in stage.c]
    source = select(*[stage.c[c] for c in columns]).order_by(*[stage.c[k] for k in keys])
    if conn.execute(select(literal(1)).select_from(table).limit(1)).first() is None:
        with without_row_triggers(conn, table, replica=replica):
            conn.execute(insert(table).from_select(columns, source))
        return
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    present = exists(
        select(literal(1)).select_from(table).where(*[table.c[k] == stage.c[k] for k in keys])
    )
    statement = dialect_insert(table).from_select(columns, source.where(present))
    changed = {c: statement.excluded[c] for c in columns if c not in keys}
    if changed:
        conn.execute(statement.on_conflict_do_update(index_elements=keys, set_=changed))
    else:
        conn.execute(statement.on_conflict_do_nothing(index_elements=keys))
    with without_row_triggers(conn, table, replica=replica):
        conn.execute(insert(table).from_select(columns, source.where(not_(present))))


#: Tables whose inserts move a kept count (``KeptCount.child``): ``recount`` sets the
#: counts their new rows move, so an import inserts them without the per-row triggers.
KEPT_CHILDREN = frozenset(k.kept.child.name for k in KINDS.values() if k.kept is not None)


@contextmanager
def without_row_triggers(conn: Connection, table: Table, *, replica: bool) -> Iterator[None]:
    """New rows inserted without the triggers a bulk write need not run, in this
    transaction only. SQLite: the insert triggers of a kept count's child table are
    dropped and made again (``recount`` does their work in one statement). PostgreSQL,
    where the role may (``replica``): ``session_replication_role = replica`` for the
    statement, which skips every trigger of it: the kept counts' (``recount``), the
    foreign keys' (``check`` found every reference, and ``lock`` keeps it there) and
    ``data_version``'s (``write`` adds to it itself)."""
    if conn.dialect.name == "postgresql":
        if replica:
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        yield
        if replica:
            conn.exec_driver_sql("SET LOCAL session_replication_role = origin")
        return
    triggers = []
    if table.name in KEPT_CHILDREN:
        found = conn.execute(
            text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"),
            {"t": table.name},
        )
        triggers = [(n, sql) for n, sql in found if "AFTER INSERT ON" in " ".join(sql.split())]
    for name, _ in triggers:
        conn.exec_driver_sql(f'DROP TRIGGER "{name}"')
    yield
    for _, sql in triggers:
        conn.exec_driver_sql(sql)


def may_skip_triggers(conn: Connection) -> bool:
    """Whether this PostgreSQL role may set ``session_replication_role`` (a superuser,
    or one granted it): without it, an import runs every trigger, only slower."""
    try:
        with conn.begin_nested():
            conn.exec_driver_sql("SET LOCAL session_replication_role = origin")
    except DBAPIError:
        return False
    return True


def lock(conn: Connection, staging: Staging) -> None:
    """Keep other transactions from writing the tables an import checks and writes
    until it ends (PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already does), so what
    ``check`` found is still true when the rows are written. Readers are not blocked."""
    if conn.dialect.name == "postgresql":
        names = ", ".join(sorted(staging.tables))
        conn.exec_driver_sql(f"LOCK TABLE {names} IN SHARE ROW EXCLUSIVE MODE")


def write(
    conn: Connection,
    staging: Staging,
    provider_id: int,
    *,
    replace: bool,
    progress: Progress | None,
) -> None:
    """Make the database hold the checked records (and, with ``replace``, only those)."""
    kinds = list(KINDS.values())
    replica = conn.dialect.name == "postgresql" and may_skip_triggers(conn)
    task: TaskID | None = progress.add_task("Writing", total=len(kinds)) if progress else None
    if replace:
        for kind in reversed(kinds):
            if kind.owner is None:
                continue
            stage = staging.of(kind.table)
            conn.execute(
                delete(kind.table).where(
                    kind.table.c.id.in_(owned(kind, provider_id).scalar_subquery()),
                    kind.table.c.id.not_in(select(stage.c.id).scalar_subquery()),
                )
            )
    for kind in kinds:
        stage = staging.of(kind.table)
        upsert(conn, kind.table, stage, ["id"], replica=replica)
        if kind.nested is not None:
            nested, key = kind.nested.table, kind.nested.key
            staged = staging.of(nested)
            conn.execute(
                delete(nested).where(
                    nested.c[key].in_(select(stage.c.id).scalar_subquery()),
                    nested.c[key].not_in(select(staged.c[key]).scalar_subquery()),
                )
            )
            upsert(conn, nested, staged, [key], replica=replica)
        for id_list in kind.lists:
            write_links(conn, staging, id_list, stage, replica=replica)
        if progress is not None and task is not None:
            progress.advance(task)
    for kind in kinds:
        if kind.kept is not None:
            recount(conn, staging, kind)
    if conn.dialect.name == "postgresql":
        for kind in kinds:
            t = kind.table
            conn.execute(
                text("SELECT setval(pg_get_serial_sequence(:t, 'id'), :v, true)"),
                {
                    "t": t.name,
                    "v": max(1, conn.scalar(select(func.coalesce(func.max(t.c.id), 0))) or 0),
                },
            )
        # Statements run as a replica counted nothing; one more makes every worker's
        # memo stale when this transaction commits (``coursebook.memo``).
        conn.execute(update(m.data_version).values(version=m.data_version.c.version + 1))
    else:
        # Statistics from a sample of each index, as PRAGMA optimize gathers them: a
        # full ANALYZE reads every row just written.
        conn.exec_driver_sql("PRAGMA analysis_limit = 1000")
    conn.execute(text("ANALYZE"))


def write_links(
    conn: Connection, staging: Staging, id_list: IdList, parents: Table, *, replica: bool
) -> None:
    """Make each staged parent's links exactly its record's list."""
    t = id_list.table
    links = staging.of(t)
    parent, child = t.c[id_list.parent], t.c[id_list.child]
    kept = exists(
        select(links.c[id_list.parent]).where(
            links.c[id_list.parent] == parent, links.c[id_list.child] == child
        )
    )
    conn.execute(delete(t).where(parent.in_(select(parents.c.id).scalar_subquery()), not_(kept)))
    upsert(conn, t, links, [id_list.parent, id_list.child], replica=replica)


def recount(conn: Connection, staging: Staging, kind: Kind) -> None:
    """Set a kept count from its child rows for the staged rows that have any (and the
    rows the staged children name); rows with none keep the count their record gave."""
    kept = kind.kept
    assert kept is not None
    table, child = kind.table, kept.child
    children = staging.of(child)
    counted = (
        select(func.count())
        .select_from(child)
        .where(child.c[kept.key] == table.c.id, kept.counts(child))
        .scalar_subquery()
    )
    touched = or_(
        table.c.id.in_(select(staging.of(table).c.id).scalar_subquery()),
        table.c.id.in_(select(children.c[kept.key]).scalar_subquery()),
    )
    has_children = exists(
        select(literal(1)).select_from(child).where(child.c[kept.key] == table.c.id)
    )
    # Rows whose count is already right are left alone: a file's counts usually are
    # (an export writes them), and rewriting a million rows costs PostgreSQL a copy of each.
    differs = table.c[kept.column] != counted
    conn.execute(update(table).where(touched, has_children, differs).values({kept.column: counted}))
