"""Who may read what: roles x sessions x provider/mode headers (SEMANTICS.md sections 2-4, 8).

The expected outcome of every request comes from ``expected``, an oracle written from the
spec and the demo's documented roles, not from ``coursebook.access``. Each matrix test loops
over its cases and reports every mismatch at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import product
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from coursebook import models as m
from tests.support import Api, Demo, customer_profile_of, sessions_a_customer_may_see

PROVIDER = "TeamUp-Provider-ID"
MODE = "Teamup-Request-Mode"
UNREACHABLE = "999999"
ANONYMOUS = "anonymous"

#: Section 8: the codes each error status may carry.
CODES = {
    400: {"parameter_invalid", "provider_required", "mode_required"},
    401: {"not_authenticated", "authentication_failed"},
    403: {"permission_denied", "provider_invalid", "mode_not_allowed"},
    404: {"not_found"},
}

#: Section 2: an M2M token or a user's staff/customer profiles; section 4: what staff read.
FULL, INSTRUCTS, NOTHING = "every session", "instructed sessions", "no session"


@dataclass(frozen=True)
class Role:
    """What a demo role's credentials are, by provider key ("main" / "other")."""

    staff: dict[str, str] = field(default_factory=dict)
    customer: frozenset[str] = frozenset()
    m2m: bool = False
    live: bool = True


#: The demo roles as coursebook/demo.py documents them.
ROLES: dict[str, Role] = {
    "admin": Role(staff={"main": FULL}),  # super_admin
    "manager": Role(staff={"main": FULL}),  # manage_events
    "attendances": Role(staff={"main": FULL}),
    "developer": Role(staff={"main": FULL}, m2m=True),  # M2M token with developer
    "instructor": Role(staff={"main": INSTRUCTS}),  # instructor_manage_events only
    "no_permission": Role(staff={"main": NOTHING}),  # pos only
    "customer": Role(customer=frozenset({"main"})),
    "multi_provider": Role(staff={"main": FULL, "other": FULL}),
    "dual_mode": Role(staff={"main": FULL}, customer=frozenset({"main"})),
    "expired": Role(live=False),
    "revoked": Role(live=False),
}

SESSION_CLASSES = (
    "main",
    "other",
    "instructed",
    "not_instructed",
    "customer_visible",
    "customer_hidden",
)
PROVIDER_HEADERS: tuple[str | None, ...] = (None, "main", "other", UNREACHABLE, "abc")
MODE_HEADERS: tuple[str | None, ...] = (None, "provider", "customer", "bogus")
#: What TeamUp-Provider-ID accepts as an integer: a 64-bit range of digits, optional minus.
INTEGER = re.compile(r"-?[0-9]{1,19}")
CUSTOMER_URL = re.compile(r"^/p/(\d+)-[^/]+/c/course_sessions/(\d+)$")


# -- the world the oracle reasons about -----------------------------------------------


@dataclass(frozen=True)
class World:
    """Provider ids, each provider's sessions, and what each customer profile may see."""

    providers: dict[str, int]
    sessions: dict[str, frozenset[int]]
    customer_visible: dict[str, frozenset[int]]

    def key_of(self, provider_id: int) -> str:
        return next(key for key, value in self.providers.items() if value == provider_id)

    def reachable(self, role: str) -> frozenset[int]:
        who = ROLES[role]
        return frozenset(self.providers[key] for key in (*who.staff, *who.customer))


_worlds: dict[str, World] = {}


def world_of(demo: Demo) -> World:
    if demo.url not in _worlds:
        lists = demo.manifest["course_sessions"]
        dual = sessions_a_customer_may_see(demo, customer_profile_of(demo, "dual_mode"))
        _worlds[demo.url] = World(
            providers=dict(demo.manifest["providers"]),
            sessions={key: frozenset(lists[key]) for key in SESSION_CLASSES},
            customer_visible={"customer": frozenset(lists["customer_visible"]), "dual_mode": dual},
        )
    return _worlds[demo.url]


def test_oracle_inputs_match_the_database(demo: Demo) -> None:
    """The manifest lists the oracle trusts agree with the database and with section 4."""
    world = world_of(demo)
    by_provider = session_providers(demo)
    for key in ("main", "other"):
        provider_id = world.providers[key]
        assert world.sessions[key] == {i for i, p in by_provider.items() if p == provider_id}
    customer = sessions_a_customer_may_see(demo, customer_profile_of(demo, "customer"))
    assert customer == world.customer_visible["customer"]
    assert not customer & world.sessions["customer_hidden"]


# -- the oracle -------------------------------------------------------------------------


def expected(
    world: World, role: str, session_id: int, provider_header: str | None, mode: str | None
) -> tuple[int, str | None]:
    """(status, code) that SEMANTICS.md prescribes; ``provider_header`` is the raw value."""
    if role == ANONYMOUS:
        return 401, "not_authenticated"
    who = ROLES[role]
    if not who.live:
        return 401, "authentication_failed"
    # 1. header syntax
    if mode is not None and mode not in ("provider", "customer"):
        return 400, "parameter_invalid"
    if provider_header is not None and not INTEGER.fullmatch(provider_header):
        return 400, "parameter_invalid"
    # 2. which provider
    reachable = world.reachable(role)
    if provider_header is None:
        if len(reachable) > 1:
            return 400, "provider_required"
        (provider_id,) = reachable
    else:
        provider_id = int(provider_header)
        if provider_id not in reachable:
            return 403, "provider_invalid"
    key = world.key_of(provider_id)
    # 3. which mode
    staff = who.staff.get(key)
    has_customer = key in who.customer and not who.m2m
    if mode is None:
        if staff is not None and has_customer:
            return 400, "mode_required"
        mode = "provider" if staff is not None else "customer"
    if (mode == "provider" and staff is None) or (mode == "customer" and not has_customer):
        return 403, "mode_not_allowed"
    # 4. permission
    if mode == "provider" and staff == NOTHING:
        return 403, "permission_denied"
    # 5. the session
    if session_id not in world.sessions[key]:
        return 404, "not_found"
    if mode == "customer" and session_id not in world.customer_visible[role]:
        return 404, "not_found"
    if staff == INSTRUCTS and mode == "provider" and session_id not in world.sessions["instructed"]:
        return 403, "permission_denied"
    return 200, None


# -- helpers ----------------------------------------------------------------------------


def path(session_id: int | str) -> str:
    return f"/api/v2/course_sessions/{session_id}"


def header_value(world: World, value: str | None) -> str | None:
    """Provider keys "main"/"other" become their ids; anything else is sent as is."""
    return str(world.providers[value]) if value in world.providers else value


def request(
    api: Api,
    demo: Demo,
    role: str,
    session_id: int | str,
    provider: str | None = None,
    mode: str | None = None,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    headers = {}
    if provider is not None:
        headers[PROVIDER] = provider
    if mode is not None:
        headers[MODE] = mode
    token = None if role == ANONYMOUS else demo.manifest["tokens"][role]
    return api.get(path(session_id), token, params=params, headers=headers)


def outcome(response: httpx.Response) -> tuple[int, str | None]:
    body = response.json()
    return response.status_code, None if response.status_code == 200 else body.get("code")


def sample_ids(demo: Demo) -> dict[str, list[int]]:
    """Three ids of each class, chosen so that the classes' intersections are covered."""
    lists = demo.manifest["course_sessions"]
    sets = {key: set(ids) for key, ids in lists.items()}
    crossing = {
        "main": ("instructed", "not_instructed", "customer_hidden"),
        "other": (),
        "instructed": ("customer_visible", "customer_hidden"),
        "not_instructed": ("customer_visible", "customer_hidden"),
        "customer_visible": ("instructed", "not_instructed"),
        "customer_hidden": ("instructed", "not_instructed"),
    }
    picked: dict[str, list[int]] = {}
    for key in SESSION_CLASSES:
        ids = lists[key]
        chosen = [
            min(sets[key] & sets[other]) for other in crossing[key] if sets[key] & sets[other]
        ]
        chosen += [ids[0], ids[len(ids) // 2], ids[-1]]
        picked[key] = list(dict.fromkeys(chosen))[:3]
    return picked


def matrix_sessions(demo: Demo) -> dict[int, str]:
    """The sampled ids, each once, labelled with every class it belongs to."""
    lists = demo.manifest["course_sessions"]
    ids = sorted({i for sample in sample_ids(demo).values() for i in sample})
    return {i: "+".join(key for key in SESSION_CLASSES if i in lists[key]) for i in ids}


def check_error_body(response: httpx.Response) -> str | None:
    """The problem with an error answer's body, or None when it is a TeamUp error."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return f"not JSON: {response.text[:200]!r}"
    if not isinstance(body, dict) or set(body) != {"code", "field_errors", "message", "type"}:
        return f"not the TeamUp error shape: {body!r}"
    if body["code"] not in CODES.get(response.status_code, {body["code"]}):
        return f"code {body['code']!r} is not one of status {response.status_code}"
    return None


def fail_on(mismatches: list[str]) -> None:
    if mismatches:
        shown = "\n".join(mismatches[:60])
        more = f"\n... and {len(mismatches) - 60} more" if len(mismatches) > 60 else ""
        pytest.fail(f"{len(mismatches)} mismatches:\n{shown}{more}")


# -- 1. the matrix ----------------------------------------------------------------------


@pytest.mark.parametrize("role", [*ROLES, ANONYMOUS])
def test_matrix(api: Api, demo: Demo, role: str) -> None:
    world = world_of(demo)
    token = demo.manifest["tokens"].get(role)
    mismatches: list[str] = []
    cases = product(matrix_sessions(demo).items(), PROVIDER_HEADERS, MODE_HEADERS)
    for (session_id, session_class), provider, mode in cases:
        sent = header_value(world, provider)
        response = request(api, demo, role, session_id, sent, mode)
        want = expected(world, role, session_id, sent, mode)
        got = outcome(response)
        problem = check_error_body(response)
        if got == (200, None) and response.json()["id"] != session_id:
            problem = f"answered session {response.json()['id']}"
        if token is not None and token in response.text:
            problem = "the token is in the body"
        if got != want or problem:
            mismatches.append(
                f"{role} {session_class} #{session_id} provider={provider} mode={mode}: "
                f"expected {want}, got {got} {problem or ''}"
            )
    fail_on(mismatches)


def test_matrix_covers_every_outcome(demo: Demo) -> None:
    """The oracle, over the matrix, reaches every status/code pair the issue names."""
    world = world_of(demo)
    seen = {
        expected(world, role, session_id, header_value(world, provider), mode)
        for role in [*ROLES, ANONYMOUS]
        for session_id in matrix_sessions(demo)
        for provider in PROVIDER_HEADERS
        for mode in MODE_HEADERS
    }
    assert seen == {
        (200, None),
        (400, "parameter_invalid"),
        (400, "provider_required"),
        (400, "mode_required"),
        (401, "not_authenticated"),
        (401, "authentication_failed"),
        (403, "provider_invalid"),
        (403, "mode_not_allowed"),
        (403, "permission_denied"),
        (404, "not_found"),
    }


@pytest.mark.wire
@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("--1", "parameter_invalid"),
        ("-", "parameter_invalid"),
        ("1-", "parameter_invalid"),
        ("+1", "parameter_invalid"),
        ("0x1", "parameter_invalid"),
        ("1 2", "parameter_invalid"),
        ("\u00b9", "parameter_invalid"),  # superscript one: a digit to str.isdigit
        ("9" * 20, "parameter_invalid"),
        ("-1", "provider_invalid"),
        ("0", "provider_invalid"),
        ("-" + "1" + "0" * 18, "provider_invalid"),
        ("1" + "0" * 18, "provider_invalid"),
        ("9" * 19, "provider_invalid"),
        ("-" + "9" * 19, "provider_invalid"),
    ],
)
def test_provider_header_edges(api: Api, demo: Demo, value: str, code: str) -> None:
    session_id = demo.manifest["course_sessions"]["main"][0]
    token = demo.manifest["tokens"]["admin"]
    headers = {PROVIDER: value.encode("latin-1")}
    # A bytes value goes as these bytes (Latin-1 here); httpx accepts it, its types do not.
    response = api.get(path(session_id), token, headers=headers)  # type: ignore[arg-type]
    assert outcome(response) == (400 if code == "parameter_invalid" else 403, code)
    assert bool(INTEGER.fullmatch(value)) == (code == "provider_invalid")


def test_leading_zeros_name_the_same_provider(api: Api, demo: Demo) -> None:
    session_id = demo.manifest["course_sessions"]["main"][0]
    main = demo.manifest["providers"]["main"]
    response = request(api, demo, "admin", session_id, provider=f"00{main}")
    assert outcome(response) == (200, None)


def test_multi_provider(api: Api, demo: Demo) -> None:
    world = world_of(demo)
    main, other = (str(world.providers[k]) for k in ("main", "other"))
    main_id = demo.manifest["course_sessions"]["main"][0]
    other_id = demo.manifest["course_sessions"]["other"][0]
    cases = [
        (main_id, None, 400, "provider_required"),
        (other_id, None, 400, "provider_required"),
        (main_id, main, 200, None),
        (other_id, other, 200, None),
        (other_id, main, 404, "not_found"),
        (main_id, other, 404, "not_found"),
        (main_id, UNREACHABLE, 403, "provider_invalid"),
        (main_id, "abc", 400, "parameter_invalid"),
        (main_id, "1.0", 400, "parameter_invalid"),
        (main_id, "", 400, "parameter_invalid"),
    ]
    mismatches = []
    for session_id, provider, status, code in cases:
        response = request(api, demo, "multi_provider", session_id, provider)
        if outcome(response) != (status, code):
            mismatches.append(f"#{session_id} {provider=}: {outcome(response)} != {status, code}")
        elif status == 200:
            match = CUSTOMER_URL.match(response.json()["customer_url"])
            assert match and match.group(1) == provider
    fail_on(mismatches)


def test_dual_mode(api: Api, demo: Demo) -> None:
    world = world_of(demo)
    lists = demo.manifest["course_sessions"]
    hidden = sorted(world.sessions["main"] - world.customer_visible["dual_mode"])
    visible = sorted(world.customer_visible["dual_mode"])
    assert hidden and visible
    assert outcome(request(api, demo, "dual_mode", visible[0])) == (400, "mode_required")
    assert outcome(request(api, demo, "dual_mode", visible[0], mode="bogus")) == (
        400,
        "parameter_invalid",
    )
    # provider mode: every session, staff permissions shown
    expand = {"expand": "instructors"}
    staff = request(api, demo, "dual_mode", hidden[0], mode="provider", params=expand)
    assert staff.status_code == 200
    assert all(
        len(i["permissions"]) == len(m.PERMISSION_NAMES) for i in staff.json()["instructors"]
    )
    # customer mode: fewer sessions, permissions redacted
    assert outcome(request(api, demo, "dual_mode", hidden[0], mode="customer")) == (
        404,
        "not_found",
    )
    seen = request(api, demo, "dual_mode", visible[0], mode="customer", params=expand)
    assert seen.status_code == 200
    assert seen.json()["instructors"]
    assert all(i["permissions"] == {} for i in seen.json()["instructors"])
    # staff-only and M2M tokens asking for customer mode
    for role in ("admin", "manager", "instructor", "no_permission", "developer"):
        response = request(api, demo, role, lists["main"][0], mode="customer")
        assert outcome(response) == (403, "mode_not_allowed"), role
    assert outcome(request(api, demo, "customer", lists["main"][0], mode="provider")) == (
        403,
        "mode_not_allowed",
    )


# -- 2. customer mode -------------------------------------------------------------------


def test_customer_reads_visible_sessions_only(api: Api, demo: Demo) -> None:
    lists = demo.manifest["course_sessions"]
    mismatches = []
    for session_id in lists["customer_visible"][::7]:
        response = request(api, demo, "customer", session_id)
        if outcome(response) != (200, None):
            mismatches.append(f"visible #{session_id}: {outcome(response)}")
    for session_id in [*lists["customer_hidden"], *lists["other"][::20]]:
        response = request(api, demo, "customer", session_id)
        if outcome(response) != (404, "not_found"):
            mismatches.append(f"hidden #{session_id}: {outcome(response)}")
    fail_on(mismatches)


INSTRUCTOR_EXPANSIONS = ("instructors", "course.offering_type.instructors")


def instructors_in(body: dict[str, Any]) -> list[dict[str, Any]]:
    found = list(body["instructors"]) if isinstance(body["instructors"], list) else []
    if isinstance(body["course"], dict):
        found += body["course"]["offering_type"]["instructors"]
    return found


@pytest.mark.parametrize(
    ("role", "mode", "redacted"),
    [
        ("customer", None, True),
        ("dual_mode", "customer", True),
        ("dual_mode", "provider", False),
        ("admin", None, False),
        ("developer", None, False),
        ("instructor", None, False),
    ],
)
def test_instructor_permissions(
    api: Api, demo: Demo, role: str, mode: str | None, redacted: bool
) -> None:
    lists = demo.manifest["course_sessions"]
    session_id = min(set(lists["customer_visible"]) & set(lists["instructed"]))
    for expansion in INSTRUCTOR_EXPANSIONS:
        response = request(api, demo, role, session_id, mode=mode, params={"expand": expansion})
        assert response.status_code == 200, response.text
        instructors = instructors_in(response.json())
        assert instructors
        for instructor in instructors:
            if redacted:
                assert instructor["permissions"] == {}
            else:
                assert set(instructor["permissions"]) == set(m.PERMISSION_NAMES)
                assert len(instructor["permissions"]) == 13
                assert all(isinstance(v, bool) for v in instructor["permissions"].values())


HIDDEN_FROM_CUSTOMERS = [
    {"expand": "instructors.availability_schedules"},
    {"fields": "instructors.availability_schedules"},
    {"expand": "course.offering_type.availability_schedule_offering_types"},
    {"fields": "course.offering_type.availability_schedule_offering_types"},
    {"expand": "course.offering_type.instructors.availability_schedules"},
    {"expand": "venue", "fields": "id,instructors.availability_schedules"},
]


@pytest.mark.parametrize("params", HIDDEN_FROM_CUSTOMERS, ids=lambda p: str(p))
def test_customer_cannot_request_staff_only_fields(
    api: Api, demo: Demo, params: dict[str, str]
) -> None:
    session_id = demo.manifest["course_sessions"]["customer_visible"][0]
    for role, mode in (("customer", None), ("dual_mode", "customer")):
        response = request(api, demo, role, session_id, mode=mode, params=params)
        assert outcome(response) == (400, "parameter_invalid"), (role, response.text)
        named = "fields" if "fields" in params else "expand"
        assert list(response.json()["field_errors"]) == [named]
        assert "not available in customer mode" in response.json()["field_errors"][named][0]
    for role, mode in (("admin", None), ("dual_mode", "provider")):
        response = request(api, demo, role, session_id, mode=mode, params=params)
        assert response.status_code == 200, (role, response.text)


@contextmanager
def memberships_changed(demo: Demo, changes: dict[int, dict[str, bool]]) -> Iterator[None]:
    """Temporarily change flags of memberships, restoring them afterwards."""
    ms = m.memberships
    with demo.engine.begin() as conn:
        before = {
            row.id: {"visible_to_customers": row.visible_to_customers, "is_draft": row.is_draft}
            for row in conn.execute(select(ms).where(ms.c.id.in_(changes)))
        }
        for membership_id, values in changes.items():
            conn.execute(update(ms).where(ms.c.id == membership_id).values(**values))
    try:
        yield
    finally:
        with demo.engine.begin() as conn:
            for membership_id, values in before.items():
                conn.execute(update(ms).where(ms.c.id == membership_id).values(**values))


@pytest.mark.writes
def test_customer_memberships_leave_out_hidden_and_drafts(api: Api, demo: Demo) -> None:
    """Expanded offering_type.memberships in customer mode: visible, non-draft ones only."""
    main = demo.manifest["providers"]["main"]
    lists = demo.manifest["course_sessions"]
    otm, cs, ms = m.offering_type_memberships, m.course_sessions, m.memberships
    with demo.engine.connect() as conn:
        rows = conn.execute(
            select(cs.c.id, otm.c.offering_type_id, otm.c.membership_id)
            .join(m.courses, m.courses.c.id == cs.c.course_id)
            .join(otm, otm.c.offering_type_id == m.courses.c.offering_type_id)
            .where(cs.c.provider_id == main, cs.c.id.in_(lists["customer_visible"]))
            .order_by(cs.c.id, otm.c.membership_id)
        ).all()
    by_session: dict[int, list[int]] = {}
    for session_id, _type, membership_id in rows:
        by_session.setdefault(session_id, []).append(membership_id)
    session_id, linked = next((s, ids) for s, ids in by_session.items() if len(ids) >= 3)
    changes = {linked[0]: {"visible_to_customers": False}, linked[1]: {"is_draft": True}}
    params = {"expand": "course.offering_type.memberships"}

    def memberships(role: str, mode: str | None) -> list[int]:
        response = request(api, demo, role, session_id, mode=mode, params=params)
        assert response.status_code == 200, response.text
        return [x["id"] for x in response.json()["course"]["offering_type"]["memberships"]]

    with memberships_changed(demo, changes):
        with demo.engine.connect() as conn:
            shown = list(
                conn.scalars(
                    select(ms.c.id)
                    .where(
                        ms.c.id.in_(linked),
                        ms.c.visible_to_customers.is_(True),
                        ms.c.is_draft.is_(False),
                    )
                    .order_by(ms.c.id)
                )
            )
        assert shown == linked[2:]
        assert sorted(memberships("customer", None)) == shown
        assert sorted(memberships("dual_mode", "customer")) == shown
        assert sorted(memberships("dual_mode", "provider")) == linked
        assert sorted(memberships("admin", None)) == linked
    assert sorted(memberships("customer", None)) == linked


@pytest.mark.writes
def test_membership_holders_sessions_need_an_active_membership(api: Api, demo: Demo) -> None:
    """A lapsed membership no longer shows the offering types reserved to its holders."""
    profile_id = customer_profile_of(demo, "customer")
    visible = demo.manifest["course_sessions"]["customer_visible"]
    cs, ot, cm = m.course_sessions, m.offering_types, m.customer_memberships
    with demo.engine.connect() as conn:
        rows = conn.execute(
            select(cs.c.id, ot.c.customer_visibility)
            .join(m.courses, m.courses.c.id == cs.c.course_id)
            .join(ot, ot.c.id == m.courses.c.offering_type_id)
            .where(cs.c.id.in_(visible))
        )
        kinds = {row.id: row.customer_visibility for row in rows}
        held = list(conn.scalars(select(cm.c.id).where(cm.c.customer_profile_id == profile_id)))
    holders = next(i for i in visible if kinds[i] == "membership_holders")
    public = next(i for i in visible if kinds[i] == "public")
    assert outcome(request(api, demo, "customer", holders)) == (200, None)
    with demo.engine.begin() as conn:
        conn.execute(update(cm).where(cm.c.id.in_(held)).values(active=False))
    try:
        assert outcome(request(api, demo, "customer", holders)) == (404, "not_found")
        assert outcome(request(api, demo, "customer", public)) == (200, None)
    finally:
        with demo.engine.begin() as conn:
            conn.execute(update(cm).where(cm.c.id.in_(held)).values(active=True))
    assert outcome(request(api, demo, "customer", holders)) == (200, None)


# -- 3. header names are case-insensitive -----------------------------------------------


@pytest.mark.wire
@pytest.mark.parametrize(
    ("provider_name", "mode_name"),
    [
        ("teamup-provider-id", "teamup-request-mode"),
        ("TEAMUP-PROVIDER-ID", "TEAMUP-REQUEST-MODE"),
        ("tEaMuP-pRoViDeR-iD", "TeamUp-Request-Mode"),
    ],
)
def test_header_names_are_case_insensitive(
    api: Api, demo: Demo, provider_name: str, mode_name: str
) -> None:
    world = world_of(demo)
    tokens = demo.manifest["tokens"]
    other_id = demo.manifest["course_sessions"]["other"][0]
    main_id = demo.manifest["course_sessions"]["main"][0]
    other = {provider_name: str(world.providers["other"])}

    def get(session_id: int, token: str, headers: dict[str, str], **params: str) -> Any:
        return api.get(path(session_id), token, headers=headers, params=params)

    assert get(other_id, tokens["multi_provider"], other).status_code == 200
    assert get(main_id, tokens["multi_provider"], other).status_code == 404
    assert get(main_id, tokens["admin"], other).json()["code"] == "provider_invalid"
    assert get(main_id, tokens["admin"], {provider_name: "abc"}).json()["code"] == (
        "parameter_invalid"
    )
    hidden = min(world.sessions["main"] - world.customer_visible["dual_mode"])
    visible = min(world.customer_visible["dual_mode"])
    customer = {mode_name: "customer"}
    assert get(hidden, tokens["dual_mode"], customer).status_code == 404
    response = get(visible, tokens["dual_mode"], customer, expand="instructors")
    assert response.status_code == 200
    assert all(i["permissions"] == {} for i in response.json()["instructors"])
    assert get(hidden, tokens["dual_mode"], {mode_name: "provider"}).status_code == 200
    assert get(main_id, tokens["admin"], {mode_name: "customer"}).json()["code"] == (
        "mode_not_allowed"
    )
    assert get(main_id, tokens["admin"], {mode_name: "bogus"}).json()["code"] == (
        "parameter_invalid"
    )


# -- 4. properties over arbitrary requests ----------------------------------------------

PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
LATIN1 = st.characters(min_codepoint=0xA0, max_codepoint=0xFF)
#: Header values httpx can send: printable ASCII and Latin-1, no edge whitespace.
HEADER_TEXT = st.text(st.one_of(PRINTABLE, LATIN1), max_size=30).map(str.strip)


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of ``choices``, each drawn with its relative weight (``one_of`` is not uniform)."""
    indices = [i for i, (weight, _) in enumerate(choices) for _ in range(weight)]
    return st.sampled_from(indices).flatmap(lambda i: choices[i][1])


tokens_st = weighted(
    (6, st.sampled_from([*ROLES]).map(lambda r: ("role", r))),
    (1, st.text(PRINTABLE, min_size=1, max_size=60).map(lambda t: ("random", t))),
    (1, st.just(("none", ""))),
)
provider_st = weighted(
    (2, st.none()),
    (3, st.sampled_from(["main", "other"])),
    (1, st.integers(-(10**18), 10**18).map(str)),
    (1, st.from_regex(r"[-+ ]{0,2}[0-9]{0,21}[-.]?", fullmatch=True).map(str.strip)),
    (1, HEADER_TEXT),
)
mode_st = weighted(
    (2, st.none()),
    (3, st.sampled_from(["provider", "customer"])),
    (1, HEADER_TEXT),
)
session_st = weighted(
    (6, st.tuples(st.sampled_from(SESSION_CLASSES), st.integers(0, 10**6))),
    (1, st.integers(0, 2**63 - 1)),
    (1, st.integers(-(2**70), 2**70)),
    (1, st.text(st.one_of(PRINTABLE, st.characters(codec="utf-8")), min_size=1, max_size=20)),
)


@dataclass(frozen=True)
class Probe:
    """One generated request, resolved against the demo's manifest."""

    role: str | None
    token: str | None
    provider: str | None
    mode: str | None
    session: int | str


def resolve_probe(demo: Demo, token: Any, provider: Any, mode: Any, session: Any) -> Probe:
    world = world_of(demo)
    kind, value = token
    role = value if kind == "role" else None
    secret = (
        demo.manifest["tokens"][value] if kind == "role" else value if kind == "random" else None
    )
    if isinstance(session, tuple):
        ids = demo.manifest["course_sessions"][session[0]]
        session = ids[session[1] % len(ids)]
    return Probe(role, secret, header_value(world, provider), mode, session)


def send(api: Api, probe: Probe) -> httpx.Response:
    headers: dict[str, bytes] = {}
    if probe.token is not None:
        # h11 refuses header values with edge whitespace: "Bearer  " goes as "Bearer".
        headers["Authorization"] = f"Bearer {probe.token}".strip().encode("latin-1")
    if probe.provider is not None:
        headers[PROVIDER] = probe.provider.encode("latin-1")
    if probe.mode is not None:
        headers[MODE] = probe.mode.encode("latin-1")
    segment = quote(str(probe.session), safe="")
    # Bytes values go as these bytes; httpx accepts them, its types do not.
    return api.client.get(f"/api/v2/course_sessions/{segment}", headers=headers)  # type: ignore[arg-type]


_session_providers: dict[str, dict[int, int]] = {}


def session_providers(demo: Demo) -> dict[int, int]:
    """Each session's provider, from the database."""
    if demo.url not in _session_providers:
        with demo.engine.connect() as conn:
            query = select(m.course_sessions.c.id, m.course_sessions.c.provider_id)
            _session_providers[demo.url] = {row.id: row.provider_id for row in conn.execute(query)}
    return _session_providers[demo.url]


@pytest.mark.wire
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(token=tokens_st, provider=provider_st, mode=mode_st, session=session_st)
def test_arbitrary_requests(
    api: Api, demo: Demo, token: Any, provider: Any, mode: Any, session: Any
) -> None:
    world = world_of(demo)
    probe = resolve_probe(demo, token, provider, mode, session)
    response = send(api, probe)
    status = response.status_code
    event(f"status {status}")
    assert status < 500, response.text
    assert status in (200, *CODES), response.text
    assert check_error_body(response) is None
    if probe.role is not None:  # a random token may be any text, even "field_errors"
        assert probe.token is not None and probe.token not in response.text
    if status == 200:
        body = response.json()
        assert probe.role is not None and ROLES[probe.role].live
        match = CUSTOMER_URL.match(body["customer_url"])
        assert match, body["customer_url"]
        provider_id, session_id = int(match.group(1)), int(match.group(2))
        assert session_id == body["id"] == int(str(probe.session))
        assert provider_id in world.reachable(probe.role)
        if probe.provider is not None:
            assert provider_id == int(probe.provider)
        assert session_id in world.sessions[world.key_of(provider_id)]
        assert session_providers(demo)[session_id] == provider_id
    # Where the oracle's inputs are well defined, the answer is exactly the oracle's.
    known_headers = (probe.provider is None or INTEGER.fullmatch(probe.provider)) and (
        probe.mode is None or probe.mode in ("provider", "customer")
    )
    requested = probe.session
    if isinstance(requested, str) or not 0 <= requested < 2**63 or not known_headers:
        return
    role = ANONYMOUS if token[0] == "none" else probe.role
    if role is None:
        # A random token, even a blank one, goes as "Bearer <token>" (a blank one as
        # "Bearer" alone): the scheme is named, so the token is what is wrong.
        assert outcome(response) == (401, "authentication_failed")
        return
    event("checked against the oracle")
    assert outcome(response) == expected(world, role, requested, probe.provider, probe.mode)


# -- 5. tokens never come back ----------------------------------------------------------


def test_tokens_never_appear_in_responses(api: Api, demo: Demo) -> None:
    world = world_of(demo)
    main_id = demo.manifest["course_sessions"]["main"][0]
    hidden = demo.manifest["course_sessions"]["customer_hidden"][0]
    variants = [
        ({}, {}),
        ({"expand": "bogus"}, {}),
        ({"fields": "bogus"}, {}),
        ({"expand": "instructors.availability_schedules"}, {}),
        ({"format": "yaml"}, {}),
        ({}, {PROVIDER: "abc"}),
        ({}, {PROVIDER: UNREACHABLE}),
        ({}, {PROVIDER: str(world.providers["other"])}),
        ({}, {MODE: "bogus"}),
        ({}, {MODE: "customer"}),
        ({}, {MODE: "provider"}),
    ]
    leaks = []
    for role, token in demo.manifest["tokens"].items():
        for scheme, secret in (("Token", token), ("Bearer", token + "x")):
            for session_id in (main_id, hidden):
                for params, headers in variants:
                    response = api.get(
                        path(session_id), secret, scheme=scheme, params=params, headers=headers
                    )
                    sent = " ".join(f"{k}: {v}" for k, v in response.headers.items())
                    if token in response.text or token in sent:
                        leaks.append(f"{role} {scheme} #{session_id} {params} {headers}")
    fail_on(leaks)
