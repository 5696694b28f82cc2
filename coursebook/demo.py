"""Deterministic demo data: two providers filling every table, plus one token per role.

Everything but token secrets follows from the seed: ids are explicit, names and addresses
come from seeded Faker instances, and dates are laid out around the fixed ``ANCHOR`` week.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal, TypedDict, cast
from zoneinfo import ZoneInfo

from faker import Faker
from rich.progress import Progress
from sqlalchemy import Connection, Engine, Table, delete, func, insert, select, text

from coursebook import models
from coursebook.tokens import create_token, token_states

ScaleName = Literal["small", "medium", "large"]

#: Monday the demo calendar is built around, so that a seed always gives the same rows.
ANCHOR = date(2026, 1, 5)

ROLES: tuple[str, ...] = (
    "admin",
    "manager",
    "attendances",
    "developer",
    "instructor",
    "no_permission",
    "customer",
    "multi_provider",
    "dual_mode",
    "expired",
    "revoked",
)


#: The seed and scale a demo is made with unless told otherwise.
DEFAULT_SEED = 42
DEFAULT_SCALE: ScaleName = "small"


class DemoUser(TypedDict):
    """The user a role's token belongs to."""

    id: int
    email: str
    name: str


class Manifest(TypedDict):
    """What a demo was made from and holds: its seed and scale, provider ids, one token per
    role, the user each user token belongs to (every role but ``developer``, an M2M token
    of the main provider), and course-session ids grouped for tests."""

    seed: int
    scale: ScaleName
    providers: dict[str, int]
    tokens: dict[str, str]
    users: dict[str, DemoUser]
    course_sessions: dict[str, list[int]]


@dataclass(frozen=True)
class Scale:
    """How much to generate for one provider."""

    physical_venues: int
    instructors: int
    customers: int
    offering_types: int
    courses_per_type: int
    sessions_per_course: int
    max_attendances: int


#: Per scale, the sizes of the main and the other provider. Large has small's per-course
#: shape (sessions per course, attendances per session, instructors per offering type) and
#: reaches over 1,000,000 course sessions through more courses, so that a request for one
#: session does the same work on both and the benchmark compares table size alone.
SCALES: dict[ScaleName, tuple[Scale, Scale]] = {
    "small": (Scale(3, 6, 60, 8, 2, 15, 12), Scale(2, 4, 40, 6, 2, 15, 12)),
    "medium": (Scale(6, 20, 1500, 24, 10, 140, 12), Scale(4, 10, 800, 16, 8, 120, 12)),
    "large": (
        Scale(24, 60, 10_000, 80, 520, 15, 12),
        Scale(18, 45, 6_000, 60, 460, 15, 12),
    ),
}

#: Sessions of the main provider's first course: tests need one course with >= 200.

#: The expansion that reaches every relation of a demo session, as deep as each goes:
#: the fullest response (the benchmark's R2, and the tests' largest expansion).
FULL_EXPANSION = ",".join(
    [
        "venue.venue_rooms",
        "instructors.availability_schedules",
        "instructors.icalendar_links",
        "course.offering_type.category",
        "course.offering_type.instructors.availability_schedules",
        "course.offering_type.memberships",
        "course.offering_type.registration_timelines",
        "course.offering_type.availability_schedule_offering_types",
        "course.course_sessions",
    ]
)

LONG_COURSE_SESSIONS = 220
#: Most ids per manifest list at medium and large scale (small lists everything).
SAMPLE_SIZE = 200


@dataclass(frozen=True)
class City:
    """A city venues can be placed in, with its IANA time zone and Faker locale."""

    name: str
    region: str
    country: str
    timezone: str
    lat: float
    lng: float
    locale: str


@dataclass(frozen=True)
class ProviderSpec:
    """Fixed identity of a demo provider."""

    key: str
    name: str
    slug: str
    timezone: str
    currency_code: str
    currency_symbol: str
    currency_symbol_position: str
    locale: str
    email_domain: str
    cities: tuple[City, ...]


PROVIDERS: tuple[ProviderSpec, ...] = (
    ProviderSpec(
        "main",
        "Northern Light Yoga & Fitness",
        "northern-light",
        "Europe/London",
        "GBP",
        "£",
        "before",
        "en_GB",
        "northern-light.example.com",
        (
            City("London", "Greater London", "GB", "Europe/London", 51.5072, -0.1276, "en_GB"),
            City(
                "Manchester", "Greater Manchester", "GB", "Europe/London", 53.4808, -2.2426, "en_GB"
            ),
            City("Bristol", "Bristol", "GB", "Europe/London", 51.4545, -2.5879, "en_GB"),
            City("Edinburgh", "Scotland", "GB", "Europe/London", 55.9533, -3.1883, "en_GB"),
            City("Leeds", "West Yorkshire", "GB", "Europe/London", 53.8008, -1.5491, "en_GB"),
            City("Brighton", "East Sussex", "GB", "Europe/London", 50.8225, -0.1372, "en_GB"),
        ),
    ),
    ProviderSpec(
        "other",
        "Kraftwerk Movement",
        "kraftwerk-movement",
        "Europe/Berlin",
        "EUR",
        "€",
        "after",
        "de_DE",
        "kraftwerk-movement.example.org",
        (
            City("Berlin", "Berlin", "DE", "Europe/Berlin", 52.5200, 13.4050, "de_DE"),
            City("Vienna", "Wien", "AT", "Europe/Vienna", 48.2082, 16.3738, "de_AT"),
            City("Amsterdam", "Noord-Holland", "NL", "Europe/Amsterdam", 52.3676, 4.9041, "nl_NL"),
            City("Paris", "Île-de-France", "FR", "Europe/Paris", 48.8566, 2.3522, "fr_FR"),
            City("Dublin", "Leinster", "IE", "Europe/Dublin", 53.3498, -6.2603, "en_IE"),
            City("Madrid", "Comunidad de Madrid", "ES", "Europe/Madrid", 40.4168, -3.7038, "es_ES"),
        ),
    ),
)

CATEGORIES: tuple[tuple[str, str], ...] = (
    ("Yoga", "#7b5ea7"),
    ("Strength", "#d1495b"),
    ("Mind & Body", "#00798c"),
    ("Dance & Cardio", "#edae49"),
)

#: (class name, index into CATEGORIES, drop-in price in minor units of GBP).
CLASSES: tuple[tuple[str, int, int], ...] = (
    ("Vinyasa Flow", 0, 1400),
    ("Hatha Yoga", 0, 1200),
    ("Yin Yoga", 0, 1200),
    ("Ashtanga", 0, 1500),
    ("Hot Yoga", 0, 1800),
    ("Power Yoga", 0, 1500),
    ("HIIT", 1, 1200),
    ("Kettlebells", 1, 1300),
    ("Barbell Strength", 1, 1500),
    ("Circuit Training", 1, 1100),
    ("Bootcamp", 1, 1000),
    ("Pilates Mat", 2, 1400),
    ("Reformer Pilates", 2, 2600),
    ("Meditation", 2, 900),
    ("Breathwork", 2, 1000),
    ("Barre", 2, 1500),
    ("Zumba", 3, 1000),
    ("Spin", 3, 1300),
    ("Dance Fitness", 3, 1100),
    ("Boxfit", 3, 1300),
)
LEVELS: tuple[str, ...] = ("", " (Beginners)", " (Intermediate)", " (Advanced)")
COLORS: tuple[str, ...] = ("#264653", "#2a9d8f", "#e9c46a", "#f4a261", "#e76f51", "#6d597a")

#: (name, type, duration, unit, price in minor units of GBP, one-time fee, is_dropin).
MEMBERSHIPS: tuple[tuple[str, str, int, str, int, int, bool], ...] = (
    ("10 Class Pack", "pack", 90, "days", 11000, 0, False),
    ("Unlimited Monthly", "recurring_plan", 1, "months", 8900, 2500, False),
    ("Annual Unlimited", "prepaid_plan", 12, "months", 89000, 0, False),
    ("Off-Peak Monthly", "recurring_plan", 1, "months", 5500, 0, False),
    ("Drop-in Credit", "pack", 30, "days", 1400, 0, True),
)
#: The membership the demo customer holds, and one they do not hold.
HELD_MEMBERSHIP, UNHELD_MEMBERSHIP = 1, 3

#: Offering-type kinds, cycled so that every customer-visibility case exists.
OfferingKind = Literal["public", "holders_held", "holders_unheld", "private", "draft"]
OFFERING_KINDS: tuple[OfferingKind, ...] = (
    "public",
    "holders_held",
    "public",
    "private",
    "public",
    "draft",
    "holders_unheld",
    "public",
)
KIND_MEMBERSHIPS: dict[OfferingKind, tuple[int, ...]] = {
    "public": (0, 1, 2, 4),
    "holders_held": (HELD_MEMBERSHIP, 2),
    "holders_unheld": (UNHELD_MEMBERSHIP,),
    "private": (2,),
    "draft": (0, 1),
}

AUDIENCES: tuple[str, ...] = (
    "everyone",
    "membership_holders",
    "specific_memberships",
    "business_only",
    "specific_customers",
    "private_url",
)
DURATIONS: tuple[int, ...] = (45, 60, 60, 75, 90)
OCCUPANCIES: tuple[int | None, ...] = (None, 0, 8, 12, 12, 16, 20, 20, 24, 30)
WEEKDAYS: tuple[str, ...] = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)
STAFF_FLAGS: dict[str, tuple[str, ...]] = {
    "admin": ("super_admin",),
    "manager": ("manage_events",),
    "attendances": ("attendances",),
    "no_permission": ("pos",),
    "multi_provider": ("manage_events",),
    "dual_mode": ("manage_events",),
    "expired": ("super_admin",),
    "revoked": ("super_admin",),
    "instructor": ("instructor_manage_events",),
}


@dataclass
class OfferingType:
    """An offering type as generated, with what customer visibility depends on."""

    id: int
    name: str
    kind: OfferingKind
    membership_ids: list[int]
    duration: int


@dataclass
class ProviderState:
    """Ids generated for one provider, needed by later tables."""

    spec: ProviderSpec
    scale: Scale
    id: int
    faker: Faker
    physical_venues: list[tuple[int, City]] = field(default_factory=list)
    online_venue: int = 0
    rooms: dict[int, list[int]] = field(default_factory=dict)
    instructors: list[int] = field(default_factory=list)
    customers: list[int] = field(default_factory=list)
    memberships: list[int] = field(default_factory=list)
    offering_types: list[OfferingType] = field(default_factory=list)
    #: (staff profile id, user row) of each staff member who gets an instructor row.
    instructing_staff: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    session_ids: list[int] = field(default_factory=list)


class Generator:
    """Builds the demo dataset on one connection, with explicit ids from per-table counters."""

    def __init__(self, conn: Connection, seed: int, scale: ScaleName, progress: Progress):
        self.conn = conn
        self.seed = seed
        self.scale = scale
        self.rng = random.Random(seed)
        self.progress = progress
        self.ids: dict[str, Iterator[int]] = {t: itertools.count(1) for t in models.metadata.tables}
        self.chunk = 50_000 if conn.dialect.name == "sqlite" else 10_000
        #: The user row of each role with a user token.
        self.role_users: dict[str, dict[str, Any]] = {}
        self.role_instructor = 0
        self.held_membership = 0
        self.customer_profile = 0
        self.lists: dict[str, list[int]] = {
            "instructed": [],
            "not_instructed": [],
            "customer_visible": [],
        }
        self.hidden: dict[str, list[int]] = {}

    def next_id(self, table: Table) -> int:
        """The next explicit id of ``table``."""
        return next(self.ids[table.name])

    def insert(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        """Insert ``rows`` into ``table`` in executemany chunks."""
        for start in range(0, len(rows), self.chunk):
            self.conn.execute(insert(table), list(rows[start : start + self.chunk]))

    def faker(self, locale: str, salt: int) -> Faker:
        """A Faker for ``locale`` seeded from the demo seed and ``salt``."""
        fake = Faker(locale)
        fake.seed_instance(self.seed * 1_000 + salt)
        return fake

    def run(self) -> Manifest:
        """Generate every table and the tokens; return the manifest."""
        states = [self.provider(index, spec) for index, spec in enumerate(PROVIDERS)]
        main, other = states
        self.users_and_profiles(main, other)
        for state in states:
            self.venues(state)
            self.instructors(state)
            self.memberships(state)
            self.offering_types(state)
        self.customer_memberships(main)
        for state in states:
            self.courses_and_sessions(state)
        self.reset_sequences()
        # Fresh planner statistics: without them SQLite guesses index selectivity.
        self.conn.execute(text("ANALYZE"))
        tokens = self.tokens(main)
        return Manifest(
            seed=self.seed,
            scale=self.scale,
            providers={"main": main.id, "other": other.id},
            tokens=tokens,
            users={
                role: DemoUser(id=user["id"], email=user["email"], name=user["name"])
                for role in ROLES
                if (user := self.role_users.get(role))
            },
            course_sessions={
                "main": self.sample(main.session_ids),
                "other": self.sample(other.session_ids),
                "instructed": self.sample(self.lists["instructed"]),
                "not_instructed": self.sample(self.lists["not_instructed"]),
                "customer_visible": self.sample(self.lists["customer_visible"]),
                "customer_hidden": sorted(
                    itertools.chain.from_iterable(self.sample(ids) for ids in self.hidden.values())
                ),
            },
        )

    def sample(self, ids: list[int]) -> list[int]:
        """All ``ids`` at small scale, else ``SAMPLE_SIZE`` of them evenly spaced."""
        if self.scale == "small" or len(ids) <= SAMPLE_SIZE:
            return list(ids)
        step = len(ids) / SAMPLE_SIZE
        return [ids[int(i * step)] for i in range(SAMPLE_SIZE)]

    def provider(self, index: int, spec: ProviderSpec) -> ProviderState:
        """Insert one provider row."""
        provider_id = self.next_id(models.providers)
        self.insert(
            models.providers,
            [
                {
                    "id": provider_id,
                    "name": spec.name,
                    "slug": spec.slug,
                    "timezone": spec.timezone,
                    "currency_code": spec.currency_code,
                    "currency_symbol": spec.currency_symbol,
                    "currency_symbol_position": spec.currency_symbol_position,
                }
            ],
        )
        scale = SCALES[self.scale][index]
        return ProviderState(spec, scale, provider_id, self.faker(spec.locale, index))

    def new_user(self, rows: list[dict[str, Any]], fake: Faker, domain: str) -> dict[str, Any]:
        """Append a user with a Faker name and a unique email; return its row."""
        user_id = self.next_id(models.users)
        name = fake.name()
        local = re.sub(r"[^a-z]+", ".", name.lower()).strip(".")
        row = {"id": user_id, "email": f"{local}.{user_id}@{domain}", "name": name}
        rows.append(row)
        return row

    def users_and_profiles(self, main: ProviderState, other: ProviderState) -> None:
        """Role users, instructing staff and customers, with their staff/customer profiles."""
        users: list[dict[str, Any]] = []
        staff: list[dict[str, Any]] = []
        customers: list[dict[str, Any]] = []

        def add_staff(state: ProviderState, user: dict[str, Any], flags: Sequence[str]) -> int:
            profile_id = self.next_id(models.staff_profiles)
            row = {"id": profile_id, "provider_id": state.id, "user_id": user["id"]}
            row.update({name: name in flags for name in models.PERMISSION_NAMES})
            staff.append(row)
            return profile_id

        def add_customer(state: ProviderState, user: dict[str, Any]) -> int:
            profile_id = self.next_id(models.customer_profiles)
            customers.append(
                {
                    "id": profile_id,
                    "provider_id": state.id,
                    "user_id": user["id"],
                    "name": user["name"],
                }
            )
            return profile_id

        for role, flags in STAFF_FLAGS.items():
            user = self.new_user(users, main.faker, main.spec.email_domain)
            self.role_users[role] = user
            profile_id = add_staff(main, user, flags)
            if role == "instructor":
                main.instructing_staff.append((profile_id, user))
            if role == "multi_provider":
                add_staff(other, user, flags)
            if role == "dual_mode":
                main.customers.append(add_customer(main, user))
        for state in (main, other):
            for index in range(state.scale.instructors - len(state.instructing_staff)):
                user = self.new_user(users, state.faker, state.spec.email_domain)
                instructing = ("instructor_manage_events", "instructor_attendances")
                notified = ("email_notifications",) if index % 3 == 0 else ()
                profile_id = add_staff(state, user, instructing + notified)
                state.instructing_staff.append((profile_id, user))
        customer_user = self.new_user(users, main.faker, "example.net")
        self.role_users["customer"] = customer_user
        self.customer_profile = add_customer(main, customer_user)
        main.customers.append(self.customer_profile)
        for state in (main, other):
            for _ in range(state.scale.customers):
                user = self.new_user(users, state.faker, "example.net")
                state.customers.append(add_customer(state, user))
        self.insert(models.users, users)
        self.insert(models.staff_profiles, staff)
        self.insert(models.customer_profiles, customers)

    def image(
        self, rows: list[dict[str, Any]], state: ProviderState, kind: str, **extra: Any
    ) -> int:
        """Append an image row of ``state``'s provider; return its id."""
        image_id = self.next_id(models.images)
        width, height = self.rng.choice(((1200, 800), (800, 800), (1600, 900), (640, 480)))
        row = {
            "id": image_id,
            "provider_id": state.id,
            "url": f"https://images.example.com/{state.spec.slug}/{kind}/{image_id}.jpg",
            "original_width": width,
            "original_height": height,
            "profile_id": None,
            "user_id": None,
            "created_at": self.at(ANCHOR - timedelta(days=self.rng.randint(30, 700)), 10, 0),
        }
        row.update(extra)
        rows.append(row)
        return image_id

    def at(self, day: date, hour: int, minute: int, tz: str = "UTC") -> datetime:
        """The UTC instant of local wall-clock ``hour:minute`` on ``day`` in ``tz``."""
        local = datetime.combine(day, time(hour, minute), tzinfo=ZoneInfo(tz))
        return local.astimezone(UTC)

    def venues(self, state: ProviderState) -> None:
        """Physical venues with addresses and rooms, and one online venue."""
        images: list[dict[str, Any]] = []
        venues: list[dict[str, Any]] = []
        addresses: list[dict[str, Any]] = []
        rooms: list[dict[str, Any]] = []
        common = {"zoom_user": 0, "archived": False}
        for index in range(state.scale.physical_venues):
            city = state.spec.cities[index % len(state.spec.cities)]
            fake = self.faker(city.locale, 100 + index)
            venue_id = self.next_id(models.venues)
            lat = round(city.lat + self.rng.uniform(-0.04, 0.04), 6)
            lng = round(city.lng + self.rng.uniform(-0.06, 0.06), 6)
            *flat, street = fake.street_address().split("\n")
            postal = fake.postcode()
            secondary = flat[0] if flat else None
            venues.append(
                {
                    "id": venue_id,
                    "provider_id": state.id,
                    "name": f"{city.name} Studio"
                    + (
                        f" {index // len(state.spec.cities) + 1}"
                        if index >= len(state.spec.cities)
                        else ""
                    ),
                    "description": f"{fake.street_name()} studio, a short walk from central "
                    f"{city.name}, with changing rooms and showers.",
                    "address": f"{street}, {postal} {city.name}",
                    "timezone": city.timezone,
                    "video_url": None,
                    "venue_type": "physical",
                    "lat": lat,
                    "lng": lng,
                    "is_online": False,
                    "video_url_type": None,
                    **common,
                }
            )
            addresses.append(
                {
                    "venue_id": venue_id,
                    "street": street,
                    "street_secondary": secondary,
                    "city": city.name,
                    "region": city.region,
                    "postal_code": postal,
                    "country": city.country,
                    "lat": lat,
                    "lng": lng,
                }
            )
            state.physical_venues.append((venue_id, city))
            room_ids = state.rooms.setdefault(venue_id, [])
            for room_index, room_name in enumerate(
                ("Studio A", "Studio B", "Reformer Room", "Garden Studio")[: self.rng.randint(2, 4)]
            ):
                room_id = self.next_id(models.venue_rooms)
                thumbnail = self.image(images, state, "rooms") if room_index % 2 == 0 else None
                rooms.append(
                    {
                        "id": room_id,
                        "venue_id": venue_id,
                        "name": room_name,
                        "status": "archived" if room_index == 3 else "active",
                        "thumbnail_id": thumbnail,
                    }
                )
                room_ids.append(room_id)
        state.online_venue = self.next_id(models.venues)
        home = state.spec.cities[0]
        venues.append(
            {
                "id": state.online_venue,
                "provider_id": state.id,
                "name": "Online Studio",
                "description": "Live-streamed classes you can join from anywhere.",
                "address": "Online",
                "timezone": state.spec.timezone,
                "video_url": f"https://zoom.us/j/{self.rng.randint(10**9, 10**10 - 1)}",
                "venue_type": "online",
                "lat": home.lat,
                "lng": home.lng,
                "is_online": True,
                "video_url_type": "static",
                **common,
            }
        )
        state.rooms[state.online_venue] = []
        self.insert(models.images, images)
        self.insert(models.venues, venues)
        self.insert(models.physical_addresses, addresses)
        self.insert(models.venue_rooms, rooms)

    def instructors(self, state: ProviderState) -> None:
        """One instructor per instructing staff profile, each with availability schedules."""
        images: list[dict[str, Any]] = []
        instructors: list[dict[str, Any]] = []
        schedules = state.schedules
        for index, (profile_id, user) in enumerate(state.instructing_staff):
            instructor_id = self.next_id(models.instructors)
            picture = ""
            if index % 4 != 3:
                self.image(images, state, "avatars", profile_id=profile_id, user_id=user["id"])
                picture = images[-1]["url"]
            instructors.append(
                {
                    "id": instructor_id,
                    "provider_id": state.id,
                    "staff_profile_id": profile_id,
                    "name": user["name"],
                    "picture_url": picture,
                    "description": f"Teaching {CLASSES[index % len(CLASSES)][0]} and "
                    f"{CLASSES[(index + 5) % len(CLASSES)][0]} for "
                    f"{self.rng.randint(2, 20)} years.",
                    "icalendar_key": f"{self.rng.getrandbits(160):040x}",
                }
            )
            state.instructors.append(instructor_id)
            if user["id"] == self.role_users["instructor"]["id"]:
                self.role_instructor = instructor_id
            for schedule_index in range(1 + index % 2):
                venue_id = (
                    state.physical_venues[(index + schedule_index) % len(state.physical_venues)][0]
                    if schedule_index == 0
                    else None
                )
                schedules.append(
                    {
                        "id": self.next_id(models.availability_schedules),
                        "instructor_id": instructor_id,
                        "name": "Regular hours" if schedule_index == 0 else "Private sessions",
                        "venue_id": venue_id,
                        "weekly_ranges": self.weekly_ranges(),
                        "schedule_type": "IU" if schedule_index == 0 else "RRTL",
                        "is_default": schedule_index == 0,
                    }
                )
        self.insert(models.images, images)
        self.insert(models.instructors, instructors)
        self.insert(models.availability_schedules, schedules)

    def weekly_ranges(self) -> dict[str, list[list[str]]]:
        """Local wall-clock availability per weekday; every weekday key is present."""
        ranges: dict[str, list[list[str]]] = {}
        for day in WEEKDAYS:
            if self.rng.random() < 0.3:
                ranges[day] = []
                continue
            start = self.rng.randint(6, 11)
            spans = [[f"{start:02d}:00:00", f"{start + self.rng.randint(2, 4):02d}:00:00"]]
            if self.rng.random() < 0.5:
                evening = self.rng.randint(16, 18)
                spans.append([f"{evening:02d}:00:00", f"{evening + 3:02d}:00:00"])
            ranges[day] = spans
        return ranges

    def price(self, state: ProviderState, minor_gbp: int) -> int:
        """A price in the provider's currency, rounded to whole units, from a GBP price."""
        factor = 1.0 if state.spec.currency_code == "GBP" else 1.17
        return round(minor_gbp * factor / 100) * 100

    def memberships(self, state: ProviderState) -> None:
        """The provider's membership catalogue."""
        rows = []
        for index, (name, kind, duration, unit, price, fee, dropin) in enumerate(MEMBERSHIPS):
            membership_id = self.next_id(models.memberships)
            state.memberships.append(membership_id)
            rows.append(
                {
                    "id": membership_id,
                    "provider_id": state.id,
                    "type": kind,
                    "name": name,
                    "description": f"{name} at {state.spec.name}.",
                    "begin_on_first_registration": kind == "pack",
                    "start_date": None,
                    "expiration_date": ANCHOR + timedelta(days=365) if index == 4 else None,
                    "duration": duration,
                    "duration_unit": unit,
                    "one_time_fee_minor": self.price(state, fee),
                    "price_minor": self.price(state, price),
                    "use_prorate": kind == "recurring_plan",
                    "category": 0,
                    "is_dropin": dropin,
                    "for_sale": True,
                    "allow_repeat_purchases": kind != "prepaid_plan",
                    "visible_to_customers": True,
                    "purchasable_only_by_provider": False,
                    "new_customers_only": False,
                    "penalty_system": None,
                    "is_draft": False,
                    "incomplete_reasons": [],
                    "shareable": index == 2,
                }
            )
        self.insert(models.memberships, rows)

    def offering_types(self, state: ProviderState) -> None:
        """Categories, offering types with instructors, memberships, timelines and schedules."""
        images: list[dict[str, Any]] = []
        categories = []
        category_ids = []
        for index, (name, color) in enumerate(CATEGORIES):
            category_id = self.next_id(models.offering_type_categories)
            category_ids.append(category_id)
            image_id = self.image(images, state, "categories") if index % 2 == 0 else None
            categories.append(
                {
                    "id": category_id,
                    "provider_id": state.id,
                    "name": name,
                    "image_id": image_id,
                    "color": color,
                }
            )
        types: list[dict[str, Any]] = []
        type_instructors: list[dict[str, Any]] = []
        type_memberships: list[dict[str, Any]] = []
        timelines: list[dict[str, Any]] = []
        instructors = state.instructors
        for index in range(state.scale.offering_types):
            class_name, category, price = CLASSES[index % len(CLASSES)]
            level = LEVELS[index // len(CLASSES) % len(LEVELS)]
            name = class_name + level
            kind = OFFERING_KINDS[index % len(OFFERING_KINDS)]
            type_id = self.next_id(models.offering_types)
            venue_id, _ = state.physical_venues[index % len(state.physical_venues)]
            rooms = state.rooms[venue_id]
            duration = self.rng.choice(DURATIONS)
            image_id = self.image(images, state, "offering-types") if index % 3 else None
            types.append(
                {
                    "id": type_id,
                    "provider_id": state.id,
                    "category_id": category_ids[category],
                    "name": name,
                    "description": f"A {duration}-minute {CATEGORIES[category][0].lower()} class: "
                    f"{class_name} for {level.strip(' ()').lower() or 'all levels'}.",
                    "allows_dropins": kind != "holders_held",
                    "background_color": COLORS[index % len(COLORS)],
                    "cancellation_notice_interval": self.rng.choice((0, 120, 720, 1440)),
                    "customer_visibility": {
                        "holders_held": "membership_holders",
                        "holders_unheld": "membership_holders",
                        "private": "private",
                    }.get(kind, "public"),
                    "dropin_price_minor": self.price(state, price),
                    "has_active_schedules": True,
                    "image_id": image_id,
                    "is_draft": kind == "draft",
                    "max_allowed_age": None,
                    "min_allowed_age": 16 if index % 5 == 0 else None,
                    "order": index + 1,
                    "registrations_close_interval": 60,
                    "registrations_open_interval": 20160,
                    "schedule_type": "course",
                    "status": "active",
                    "waitlist_max": self.rng.choice((None, 0, 5, 10)),
                    "appointment_duration": duration,
                    "appointment_buffer_before": 0,
                    "appointment_buffer_after": 15,
                    "appointment_start_time_increments": 15,
                    "appointment_default_venue_id": venue_id,
                    "appointment_default_venue_room_ids": rooms[: 1 + index % len(rooms)],
                    "room_rental_duration": 60,
                    "room_rental_buffer_before": 0,
                    "room_rental_buffer_after": 0,
                    "room_rental_start_time_increments": 30,
                    "room_rental_room_uniformity": index % 2 == 0,
                }
            )
            membership_ids = [state.memberships[i] for i in KIND_MEMBERSHIPS[kind]]
            state.offering_types.append(OfferingType(type_id, name, kind, membership_ids, duration))
            type_memberships.extend(
                {"offering_type_id": type_id, "membership_id": m} for m in membership_ids
            )
            teaching = {instructors[(index + k) % len(instructors)] for k in range(3)}
            type_instructors.extend(
                {"offering_type_id": type_id, "instructor_id": i} for i in sorted(teaching)
            )
            for timeline_index in range(1 + index % 2):
                audience = AUDIENCES[(index + timeline_index) % len(AUDIENCES)]
                timelines.append(
                    {
                        "id": self.next_id(models.registration_timelines),
                        "offering_type_id": type_id,
                        "name": None if timeline_index else f"{name} booking",
                        "audience_type": audience,
                        "thumbnail_id": self.image(images, state, "timelines")
                        if timeline_index
                        else None,
                    }
                )
        schedule_types = []
        for index, schedule in enumerate(state.schedules):
            venue_id = schedule["venue_id"]
            if venue_id is None:
                continue
            rooms = state.rooms[venue_id]
            schedule_types.append(
                {
                    "id": self.next_id(models.availability_schedule_offering_types),
                    "offering_type_id": state.offering_types[index % len(state.offering_types)].id,
                    "availability_schedule_id": schedule["id"],
                    "venue_room_ids": rooms[: 1 + index % len(rooms)],
                }
            )
        self.insert(models.images, images)
        self.insert(models.offering_type_categories, categories)
        self.insert(models.offering_types, types)
        self.insert(models.offering_type_instructors, type_instructors)
        self.insert(models.offering_type_memberships, type_memberships)
        self.insert(models.registration_timelines, timelines)
        self.insert(models.availability_schedule_offering_types, schedule_types)

    def customer_memberships(self, main: ProviderState) -> None:
        """The demo customer's held membership, and memberships of other customers."""
        self.held_membership = main.memberships[HELD_MEMBERSHIP]
        rows = [
            {
                "id": self.next_id(models.customer_memberships),
                "customer_profile_id": self.customer_profile,
                "membership_id": self.held_membership,
                "active": True,
                "starts_on": ANCHOR - timedelta(days=30),
                "ends_on": None,
            }
        ]
        for profile_id in main.customers:
            if profile_id == self.customer_profile or self.rng.random() > 0.4:
                continue
            starts_on = ANCHOR - timedelta(days=self.rng.randint(0, 400))
            ended = self.rng.random() < 0.25
            rows.append(
                {
                    "id": self.next_id(models.customer_memberships),
                    "customer_profile_id": profile_id,
                    "membership_id": self.rng.choice(main.memberships),
                    "active": not ended,
                    "starts_on": starts_on,
                    "ends_on": starts_on + timedelta(days=90) if ended else None,
                }
            )
        self.insert(models.customer_memberships, rows)

    def courses_and_sessions(self, state: ProviderState) -> None:
        """Courses, their weekly sessions, session instructors and attendances."""
        scale = state.scale
        is_main = state.spec.key == "main"
        courses = []
        plans: list[tuple[int, OfferingType, bool, list[int], int, int]] = []
        for type_index, offering in enumerate(state.offering_types):
            for course_index in range(scale.courses_per_type):
                course_id = self.next_id(models.courses)
                published = not (
                    (
                        OFFERING_KINDS[type_index % len(OFFERING_KINDS)] == "public"
                        and course_index == scale.courses_per_type - 1
                        and type_index % 4 == 2
                    )
                    or self.rng.random() < 0.03
                )
                days = sorted(self.rng.sample(range(7), self.rng.randint(1, 3)))
                count = scale.sessions_per_course + self.rng.randint(
                    -scale.sessions_per_course // 3, scale.sessions_per_course // 3
                )
                if is_main and not plans:
                    count, days = LONG_COURSE_SESSIONS, list(range(7))
                start = self.rng.randrange(6 * 60, 21 * 60 - offering.duration + 1, 15)
                weekdays = (
                    "Daily" if len(days) == 7 else ", ".join(WEEKDAYS[d][:3].title() for d in days)
                )
                label = f"{weekdays} {start // 60:02d}:{start % 60:02d}"
                courses.append(
                    {
                        "id": course_id,
                        "provider_id": state.id,
                        "offering_type_id": offering.id,
                        "name": None if self.rng.random() < 0.1 else f"{offering.name}, {label}",
                        "published": published,
                    }
                )
                plans.append((course_id, offering, published, days, start, count))
        self.insert(models.courses, courses)
        task = self.progress.add_task(
            f"Sessions of {state.spec.slug}", total=sum(plan[-1] for plan in plans)
        )
        sessions: list[dict[str, Any]] = []
        links: list[dict[str, Any]] = []
        attendances: list[dict[str, Any]] = []

        def flush() -> None:
            self.insert(models.course_sessions, sessions)
            self.insert(models.course_session_instructors, links)
            self.insert(models.attendances, attendances)
            self.progress.advance(task, len(sessions))
            sessions.clear()
            links.clear()
            attendances.clear()

        rng = self.rng
        instructors = state.instructors
        customers = state.customers
        for course_number, (course_id, offering, published, days, start, count) in enumerate(plans):
            venue_id, city = rng.choice(state.physical_venues)
            tz = city.timezone
            if course_number % 9 == 4:
                venue_id, tz = state.online_venue, state.spec.timezone
            lead = instructors[course_number % len(instructors)]
            hidden_reason = self.hidden_reason(offering, published)
            first_day = ANCHOR - timedelta(weeks=rng.randint(4, 12) if count < 100 else count // 6)
            weeks, remainder = divmod(count, len(days))
            session_days = [
                first_day + timedelta(weeks=w, days=d)
                for w in range(weeks + (1 if remainder else 0))
                for d in days
            ][:count]
            occupancy = rng.choice(OCCUPANCIES)
            for day in session_days:
                session_id = self.next_id(models.course_sessions)
                starts_at = self.at(day, start // 60, start % 60, tz)
                sessions.append(
                    {
                        "id": session_id,
                        "provider_id": state.id,
                        "course_id": course_id,
                        "venue_id": venue_id,
                        "starts_at": starts_at,
                        "ends_at": starts_at + timedelta(minutes=offering.duration),
                        "status": "cancelled" if rng.random() < 0.03 else "active",
                        "max_occupancy": occupancy,
                    }
                )
                teaching = {lead}
                extra = rng.random()
                if extra < 0.25:
                    teaching.add(rng.choice(instructors))
                if extra < 0.08:
                    teaching.add(rng.choice(instructors))
                links.extend(
                    {"course_session_id": session_id, "instructor_id": i} for i in teaching
                )
                self.attend(attendances, session_id, day, starts_at, occupancy, customers, scale)
                state.session_ids.append(session_id)
                if is_main:
                    self.classify(session_id, self.role_instructor in teaching, hidden_reason)
                if len(sessions) >= self.chunk:
                    flush()
        flush()

    def attend(
        self,
        rows: list[dict[str, Any]],
        session_id: int,
        day: date,
        starts_at: datetime,
        occupancy: int | None,
        customers: list[int],
        scale: Scale,
    ) -> None:
        """Append a varying number of attendances to one session."""
        rng = self.rng
        count = min(rng.randint(0, scale.max_attendances), len(customers))
        past = day < ANCHOR
        first = rng.randrange(len(customers))
        for n in range(count):
            if occupancy is not None and n >= occupancy:
                status = "waitlisted"
            else:
                roll = rng.random()
                if past:
                    status = "attended" if roll < 0.8 else "no_show" if roll < 0.9 else "cancelled"
                else:
                    status = "registered" if roll < 0.92 else "cancelled"
            rows.append(
                {
                    "id": self.next_id(models.attendances),
                    "course_session_id": session_id,
                    "customer_profile_id": customers[(first + n) % len(customers)],
                    "status": status,
                    "created_at": starts_at - timedelta(hours=rng.randint(1, 24 * 14)),
                }
            )

    def hidden_reason(self, offering: OfferingType, published: bool) -> str | None:
        """Why the demo customer may not see a session of this course, or None."""
        if not published:
            return "unpublished"
        if offering.kind == "draft":
            return "draft"
        if offering.kind == "private":
            return "private"
        if self.held_membership not in offering.membership_ids and offering.kind != "public":
            return "membership_required"
        return None

    def classify(self, session_id: int, instructed: bool, hidden_reason: str | None) -> None:
        """Record a main-provider session in the manifest's role lists."""
        self.lists["instructed" if instructed else "not_instructed"].append(session_id)
        if hidden_reason is None:
            self.lists["customer_visible"].append(session_id)
        else:
            self.hidden.setdefault(hidden_reason, []).append(session_id)

    def reset_sequences(self) -> None:
        """Advance PostgreSQL id sequences past the explicit ids just inserted."""
        if self.conn.dialect.name != "postgresql":
            return
        for table in models.metadata.sorted_tables:
            if "id" in table.c and table.c.id.autoincrement is True:
                self.conn.execute(
                    text("SELECT setval(pg_get_serial_sequence(:t, 'id'), :v, true)"),
                    {
                        "t": table.name,
                        "v": max(
                            1, self.conn.scalar(select(func.coalesce(func.max(table.c.id), 0))) or 0
                        ),
                    },
                )

    def tokens(self, main: ProviderState) -> dict[str, str]:
        """One token per role; secrets are random and returned only here."""
        now = datetime.now(UTC)
        secrets: dict[str, str] = {}
        for role in ROLES:
            options: dict[str, Any] = {"created_at": now, "name": f"Demo {role}"}
            if role == "developer":
                options.update(provider_id=main.id, permissions=frozenset({"developer"}))
            else:
                options["user_id"] = self.role_users[role]["id"]
            if role == "expired":
                options["expires_at"] = now - timedelta(days=1)
            if role == "revoked":
                options["revoked_at"] = now - timedelta(hours=1)
            secrets[role] = create_token(self.conn, **options).secret
        return secrets


def generate(
    conn_or_engine: Connection | Engine, *, seed: int, scale: ScaleName, progress: bool
) -> Manifest:
    """Fill an empty, migrated database; an engine commits, a connection is left to the caller."""
    with Progress(disable=not progress, transient=True) as bar:
        if isinstance(conn_or_engine, Engine):
            with conn_or_engine.begin() as conn:
                return Generator(conn, seed, scale, bar).run()
        return Generator(conn_or_engine, seed, scale, bar).run()


def erase(conn: Connection) -> None:
    """Delete every row of every table, so that a demo can be generated again from scratch."""
    tables = models.metadata.sorted_tables
    if conn.dialect.name == "postgresql":
        quote = conn.dialect.identifier_preparer.quote
        conn.execute(text(f"TRUNCATE {', '.join(quote(t.name) for t in tables)} RESTART IDENTITY"))
        return
    for table in reversed(tables):
        conn.execute(delete(table))


def write_manifest(path: Path, manifest: Manifest) -> None:
    """Write ``manifest`` as JSON readable only by its owner: it holds live tokens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(manifest, file, indent=2)


def read_manifest(path: Path) -> Manifest | None:
    """The demo manifest at ``path``, or None when there is none this version can read."""
    try:
        loaded: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (
        isinstance(loaded, dict)
        and Manifest.__required_keys__ <= loaded.keys()
        and isinstance(loaded["seed"], int)
        and loaded["scale"] in SCALES
        and isinstance(loaded["tokens"], dict)
        and all(isinstance(secret, str) for secret in loaded["tokens"].values())
        and isinstance(loaded["users"], dict)
    ):
        return None
    return cast(Manifest, loaded)


def usable_roles(conn: Connection, manifest: Manifest, now: datetime) -> list[str]:
    """The roles whose token still authenticates in ``conn``'s database at ``now`` (never
    the expired and revoked roles'; none when the manifest is another database's)."""
    states = token_states(conn, manifest["tokens"].values(), now)
    return [role for role, secret in manifest["tokens"].items() if states.get(secret)]
