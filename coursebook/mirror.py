"""``coursebook mirror``: copy one provider from a live TeamUp-compatible API.

The API serves a provider's data through three list endpoints; with ``expand`` one page
of each also carries what its objects refer to (a session's venue, course, offering type
with its category, memberships, timelines and instructors). The mirror reads every page
(100 a page, by id), keeps each object the first time it is seen in a state file, one
line a page, so that an interrupted mirror goes on from the page after the last one it
kept; then it turns the objects into the records of ``coursebook/records.py`` and
writes them through ``transfer.import_records``, checked and in one transaction, as a
file is imported. What the API never serves (users, customers, tokens, attendances) is
not mirrored; ``docs/data.md`` says what is written instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from rich.progress import Progress
from sqlalchemy import Connection, Engine, func, select

from coursebook import models as m
from coursebook.records import KINDS, Kind, utc_stamp
from coursebook.source import Source
from coursebook.transfer import import_records

PAGE_SIZE = 100
#: The state file's format; a file of another is refused, not misread.
STATE_VERSION = 1
#: What an image served without its date (a category's) is written with: the API never
#: shows that date, so no answer depends on it.
UNKNOWN_TIME = "1970-01-01T00:00:00Z"
#: Where placeholders' email addresses live: a domain that can never receive mail.
PLACEHOLDER_DOMAIN = "mirror.invalid"


class MirrorError(Exception):
    """The mirror cannot go on: a state file of another mirror, a source that refuses."""


@dataclass(frozen=True)
class Listed:
    """A list endpoint the mirror pages through, and what it expands on it."""

    name: str
    path: str
    expand: str


LISTS = (
    Listed("instructors", "/api/v2/instructors", "availability_schedules,icalendar_links"),
    Listed("venue_rooms", "/api/v2/venue_rooms", "venue"),
    Listed(
        "course_sessions",
        "/api/v2/course_sessions",
        "venue,instructors,course.offering_type.category,course.offering_type.instructors,"
        "course.offering_type.memberships,course.offering_type.registration_timelines,"
        "course.offering_type.availability_schedule_offering_types",
    ),
)


# -- from API objects to the objects the state keeps ----------------------------------------

Found = tuple[str, dict[str, Any]]


def _id(value: Any) -> Any:
    """An expanded object's id, or the id itself."""
    return value.get("id") if isinstance(value, dict) else value


def _image(value: Any) -> Iterator[Found]:
    if isinstance(value, dict):
        yield "image", value


def _venue(venue: dict[str, Any]) -> Iterator[Found]:
    yield "venue", {k: v for k, v in venue.items() if k != "venue_rooms"}


def _instructor(found: dict[str, Any]) -> Iterator[Found]:
    instructor = {k: v for k, v in found.items() if k != "availability_schedules"}
    yield "instructor", instructor
    for schedule in found.get("availability_schedules") or ():
        yield "availability_schedule", schedule


def _room(room: dict[str, Any]) -> Iterator[Found]:
    venue = room.get("venue")
    if isinstance(venue, dict):
        yield from _venue(venue)
    yield from _image(room.get("thumbnail"))
    yield "venue_room", {**room, "venue": _id(venue), "thumbnail": _id(room.get("thumbnail"))}


def _offering_type(ot: dict[str, Any]) -> Iterator[Found]:
    category = ot.get("category")
    if isinstance(category, dict):
        yield from _image(category.get("image"))
        yield "offering_type_category", {**category, "image": _id(category.get("image"))}
    yield from _image(ot.get("image"))
    for membership in ot.get("memberships") or ():
        yield "membership", membership
    for timeline in ot.get("registration_timelines") or ():
        yield from _image(timeline.get("thumbnail"))
        yield (
            "registration_timeline",
            {**timeline, "offering_type": ot["id"], "thumbnail": _id(timeline.get("thumbnail"))},
        )
    yield (
        "offering_type",
        {
            **ot,
            "category": _id(category),
            "image": _id(ot.get("image")),
            "instructors": [_id(i) for i in ot.get("instructors") or ()],
            "memberships": [_id(x) for x in ot.get("memberships") or ()],
        },
    )


def _session(session: dict[str, Any]) -> Iterator[Found]:
    venue, course = session.get("venue"), session.get("course")
    if isinstance(venue, dict):
        yield from _venue(venue)
    if isinstance(course, dict):
        offering_type = course.get("offering_type")
        if isinstance(offering_type, dict):
            yield from _offering_type(offering_type)
        yield "course", {**course, "offering_type": _id(offering_type)}
    yield (
        "course_session",
        {
            **session,
            "venue": _id(venue),
            "course": _id(course),
            "instructors": [_id(i) for i in session.get("instructors") or ()],
        },
    )


EXTRACT = {"instructors": _instructor, "venue_rooms": _room, "course_sessions": _session}


def key_of(kind: str, found: dict[str, Any]) -> tuple[str, Any, bool]:
    """What makes an object already kept: its kind and id (an image also by whether it
    came with its date, a room's thumbnail, which the shorter form must not hide)."""
    return kind, found.get("id"), kind == "image" and "created_at" in found


# -- the state file ---------------------------------------------------------------------------


def shown_source(url: str) -> str:
    """The source's URL as the state file and messages name it: no user, password or query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


@dataclass
class State:
    """What a mirror has fetched: one JSON line a page, after a line naming the mirror.

    Each page line holds the list, the page number, whether more pages follow, and the
    objects it brought that no earlier page did. It never holds the token.
    """

    path: Path
    source: str
    provider_id: int
    objects: dict[tuple[str, Any, bool], dict[str, Any]] = field(default_factory=dict)
    #: The last page fetched of each list, and whether the list goes on after it.
    pages: dict[str, tuple[int, bool]] = field(default_factory=dict)

    @property
    def header(self) -> dict[str, Any]:
        return {"mirror": STATE_VERSION, "source": self.source, "provider": self.provider_id}

    def load(self) -> None:
        """Read what an earlier run kept; a last line cut short by a kill is dropped."""
        data = self.path.read_bytes() if self.path.exists() else b""
        header = orjson.dumps(self.header) + b"\n"
        if header.startswith(data):  # empty, or killed while writing its first line
            self._write(header, mode="wb")
            return
        kept = 0
        for number, line in enumerate(data.splitlines(keepends=True)):
            try:
                item = orjson.loads(line) if line.endswith(b"\n") else None
            except orjson.JSONDecodeError:
                item = None
            if number == 0:
                first = self.check_is_state(item)
                if first != self.header:
                    raise MirrorError(
                        f"{self.path} is the state of another mirror "
                        f"({first.get('source')}, provider {first.get('provider')}): "
                        "give another --state file, or --restart to start this one afresh"
                    )
            elif item is None:
                break
            else:
                self._add(item)
            kept += len(line)
        if kept < len(data):
            with self.path.open("r+b") as stream:
                stream.truncate(kept)

    def check_is_state(self, first: Any) -> dict[str, Any]:
        """The header line ``first``; refuse a file that is no mirror's state (a wrong
        ``--state``), which is never overwritten."""
        if not isinstance(first, dict) or "mirror" not in first:
            raise MirrorError(f"{self.path} is not a mirror's state file: give another --state")
        return first

    def forget(self) -> None:
        """Delete the state file, if it is one, to fetch everything again."""
        if self.path.exists():
            with self.path.open("rb") as stream:
                first = stream.readline()
            try:
                self.check_is_state(orjson.loads(first))
            except orjson.JSONDecodeError:
                self.check_is_state(None)
            self.path.unlink()

    def _add(self, item: dict[str, Any]) -> None:
        for kind, found in item["objects"]:
            self.objects.setdefault(key_of(kind, found), found)
        self.pages[item["list"]] = (item["page"], item["more"])

    def keep(self, listed: str, page: int, more: bool, objects: list[Found]) -> None:
        """Add a fetched page, on disk first (flushed and synced), then in memory."""
        new: list[Found] = []
        seen: set[tuple[str, Any, bool]] = set()
        for kind, found in objects:
            key = key_of(kind, found)
            if key not in self.objects and key not in seen:
                seen.add(key)
                new.append((kind, found))
        item = {"list": listed, "page": page, "more": more, "objects": new}
        self._write(orjson.dumps(item) + b"\n", mode="ab")
        self._add(item)

    def _write(self, data: bytes, *, mode: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open(mode) as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        self.path.chmod(0o600)

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The kept objects of ``kind``, by id; an image in its longest form."""
        found: dict[Any, dict[str, Any]] = {}
        for (name, key, _), value in self.objects.items():
            if name == kind and (key not in found or len(value) > len(found[key])):
                found[key] = value
        return [found[key] for key in sorted(found)]


def fetch(source: Source, state: State, progress: Progress | None = None) -> int:
    """Page through every list from the page after the last one kept; the pages fetched."""
    fetched = 0
    for listed in LISTS:
        page, more = state.pages.get(listed.name, (0, True))
        task = progress.add_task(f"Fetching {listed.name}", total=None) if progress else None
        while more:
            page += 1
            body = source.get(
                listed.path,
                {"page": page, "page_size": PAGE_SIZE, "sort": "id", "expand": listed.expand},
            )
            results = body.get("results")
            if not isinstance(results, list):
                raise MirrorError(f"{listed.path} page {page} is not a page of results")
            objects = [found for result in results for found in EXTRACT[listed.name](result)]
            more = body.get("next") is not None
            state.keep(listed.name, page, more, objects)
            fetched += 1
            if progress is not None and task is not None:
                count = body.get("count")
                total = -(-count // PAGE_SIZE) if isinstance(count, int) else None
                progress.update(task, completed=page, total=total)
    return fetched


# -- from kept objects to records ----------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What the database written to already holds of the provider, which the records
    must agree with: its profiles' users, its venues, its images' dates."""

    provider_exists: bool
    staff_users: dict[int, int]
    venues: frozenset[int]
    image_times: dict[int, str]
    users: frozenset[int]
    users_by_email: dict[str, int]
    next_user: int
    #: (offering type, schedule) -> ids of its rows, in order.
    schedule_links: dict[tuple[int, int], list[int]]
    next_schedule_link: int
    ids: dict[str, frozenset[int]]


def read_target(conn: Connection, provider_id: int) -> Target:
    """The parts of the target database that decide the records (``Target``)."""
    sp, asot, ot = m.staff_profiles, m.availability_schedule_offering_types, m.offering_types
    links: dict[tuple[int, int], list[int]] = {}
    for row in conn.execute(
        select(asot.c.id, asot.c.offering_type_id, asot.c.availability_schedule_id)
        .join(ot, ot.c.id == asot.c.offering_type_id)
        .where(ot.c.provider_id == provider_id)
        .order_by(asot.c.id)
    ):
        links.setdefault((row[1], row[2]), []).append(row[0])
    placeholder = m.users.c.email.like(f"%@{PLACEHOLDER_DOMAIN}")
    ids = {
        name: frozenset(conn.scalars(select(kind.table.c.id)))
        for name, kind in KINDS.items()
        if "id" in kind.table.c
    }
    return Target(
        provider_exists=provider_id in ids["provider"],
        staff_users={
            row.id: row.user_id
            for row in conn.execute(
                select(sp.c.id, sp.c.user_id).where(sp.c.provider_id == provider_id)
            )
        },
        venues=frozenset(
            conn.scalars(select(m.venues.c.id).where(m.venues.c.provider_id == provider_id))
        ),
        image_times={
            row.id: utc_stamp(row.created_at)
            for row in conn.execute(
                select(m.images.c.id, m.images.c.created_at).where(
                    m.images.c.provider_id == provider_id
                )
            )
        },
        users=ids["user"],
        users_by_email={
            row.email: row.id
            for row in conn.execute(select(m.users.c.email, m.users.c.id).where(placeholder))
        },
        next_user=(conn.scalar(select(func.max(m.users.c.id))) or 0) + 1,
        schedule_links=links,
        next_schedule_link=(conn.scalar(select(func.max(asot.c.id))) or 0) + 1,
        ids=ids,
    )


def picked(kind: Kind, found: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A record of ``kind`` from an API object: the keys the record has, as served."""
    names = [f.name for f in kind.fields]
    if kind.nested is not None:
        names.append(kind.nested.name)
    names += [x.name for x in kind.lists]
    record = {"object": kind.object}
    record.update({name: found[name] for name in names if name in found})
    record.update(extra)
    return record


def amount(price: Any) -> str:
    """A ``Price`` object's amount as a record writes it (``"110.00"``)."""
    return f"{Decimal(str(price['decimal'])):.2f}"


def provider_record(state: State, provider_id: int) -> dict[str, Any]:
    """The provider, from what the API shows of it: its slug (in a session's
    ``customer_url``), its currency (in a membership's price), its time zone (its online
    venues', whose sessions the API writes in the provider's zone; else its venues')."""
    slug = f"provider-{provider_id}"
    for session in state.of("course_session"):
        parts = str(session.get("customer_url", "")).split("/")
        if len(parts) > 2 and parts[1] == "p" and parts[2].startswith(f"{provider_id}-"):
            slug = parts[2].removeprefix(f"{provider_id}-")
            break
    currency = {
        "currency_code": "USD",
        "currency_symbol": "$",
        "currency_symbol_position": "before",
    }
    for membership in state.of("membership"):
        price = membership.get("price")
        if isinstance(price, dict) and price.get("iso_currency_code"):
            currency = {
                "currency_code": str(price["iso_currency_code"]).upper(),
                "currency_symbol": price.get("currency_symbol") or "",
                "currency_symbol_position": price.get("currency_symbol_position") or "before",
            }
            break
    venues = state.of("venue")
    zones = [v["timezone"] for v in venues if v.get("venue_type") == "online"]
    zones += [v["timezone"] for v in venues]
    return {
        "object": "provider",
        "id": provider_id,
        "name": slug,
        "slug": slug,
        "timezone": zones[0] if zones else "UTC",
        **currency,
    }


def records(state: State, target: Target, provider_id: int) -> Iterator[dict[str, Any]]:
    """Every record the kept objects make, agreeing with what ``target`` holds."""
    p = {"provider": provider_id}
    if not target.provider_exists:
        yield provider_record(state, provider_id)
    zone = next((v["timezone"] for v in state.of("venue")), "UTC")

    images = state.of("image")
    for image in images:
        user = image.get("user")
        yield picked(
            KINDS["image"],
            image,
            **p,
            user=user if user in target.users else None,
            created_at=image.get("created_at") or target.image_times.get(image["id"], UNKNOWN_TIME),
        )

    instructors = state.of("instructor")
    next_user = target.next_user
    for instructor in instructors:
        staff, permissions = instructor.get("staff"), instructor.get("permissions")
        if not isinstance(staff, int) or (not permissions and staff in target.staff_users):
            continue  # customer mode's {} says nothing of a profile this database has
        user = target.staff_users.get(staff)
        if user is None:
            email = f"staff-{staff}.provider-{provider_id}@{PLACEHOLDER_DOMAIN}"
            user = target.users_by_email.get(email)
            if user is None:
                user, next_user = next_user, next_user + 1
                yield {"object": "user", "id": user, "email": email, "name": instructor["name"]}
        yield {"object": "staff", "id": staff, **p, "user": user, "permissions": permissions or {}}

    venues = {v["id"]: v for v in state.of("venue")}
    for venue in venues.values():
        yield picked(KINDS["venue"], venue, **p)
    referred = {s.get("venue") for s in state.of("availability_schedule")} | {
        (ot.get("appointment_settings") or {}).get("default_venue")
        for ot in state.of("offering_type")
    }
    for venue_id in sorted(v for v in referred if isinstance(v, int)):
        if venue_id not in venues and venue_id not in target.venues:
            yield {
                "object": "venue",
                "id": venue_id,
                **p,
                "name": f"Venue {venue_id}",
                "address": "",
                "timezone": zone,
                "venue_type": "physical",
                "lat": 0.0,
                "lng": 0.0,
            }
    for room in state.of("venue_room"):
        yield picked(KINDS["venue_room"], room)

    for instructor in instructors:
        link = (instructor.get("icalendar_links") or {}).get("link", "")
        key = link.rsplit("/", 1)[-1].removesuffix(".ics")
        yield picked(KINDS["instructor"], instructor, **p, icalendar_key=key)
    for schedule in state.of("availability_schedule"):
        yield picked(
            KINDS["availability_schedule"],
            schedule,
            is_default=str(schedule.get("is_default")).lower() == "true",
        )
    for category in state.of("offering_type_category"):
        yield picked(KINDS["offering_type_category"], category, **p)
    for membership in state.of("membership"):
        yield picked(
            KINDS["membership"],
            membership,
            **p,
            one_time_fee=amount(membership["one_time_fee"]),
            price=amount(membership["price"]),
        )
    next_link = target.next_schedule_link
    for ot in state.of("offering_type"):
        yield picked(KINDS["offering_type"], ot, **p)
        positions: dict[tuple[int, int], int] = {}
        for served in ot.get("availability_schedule_offering_types") or ():
            pair = (ot["id"], served["availability_schedule"])
            index = positions[pair] = positions.get(pair, -1) + 1
            known = target.schedule_links.get(pair, [])
            if index < len(known):
                link_id = known[index]
            else:
                link_id, next_link = next_link, next_link + 1
            yield picked(KINDS["availability_schedule_offering_type"], served, id=link_id)
    for timeline in state.of("registration_timeline"):
        yield picked(KINDS["registration_timeline"], timeline)
    for course in state.of("course"):
        yield picked(KINDS["course"], course, **p)
    for session in state.of("course_session"):
        yield picked(KINDS["course_session"], session, **p)


# -- the whole mirror ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Mirrored:
    """What a mirror wrote (or, with ``dry_run``, would write): records of each kind,
    and how many of them are new to the database."""

    provider_id: int
    counts: dict[str, int]
    new: dict[str, int]
    written: bool
    #: Pages fetched by this run (an interrupted one's are not fetched again).
    pages: int


def mirror(
    engine: Engine,
    source: Source,
    state_path: Path,
    *,
    restart: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> Mirrored:
    """Fetch what the state file lacks, then write the provider's records in one
    transaction; the state file goes once they are written (a dry run keeps it)."""
    provider_id = source.provider_id
    state = State(state_path, shown_source(source.base_url), provider_id)
    if restart:
        state.forget()
    state.load()
    pages = fetch(source, state, progress)
    with engine.connect() as conn:
        target = read_target(conn, provider_id)
    new: dict[str, int] = {}

    def counted() -> Iterator[dict[str, Any]]:
        for record in records(state, target, provider_id):
            if record["id"] not in target.ids.get(record["object"], frozenset()):
                new[record["object"]] = new.get(record["object"], 0) + 1
            yield record

    done = import_records(
        engine,
        counted(),
        provider_id=provider_id if target.provider_exists else None,
        dry_run=dry_run,
        progress=progress,
    )
    if not dry_run:
        state_path.unlink(missing_ok=True)
    return Mirrored(done.provider_id, done.counts, new, done.written, pages)
