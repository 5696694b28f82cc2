"""XML output and content negotiation (SEMANTICS.md sections 7 and 8).

The ``api`` client already checks that every XML answer parses back to its JSON twin;
these tests pin what that check cannot see: the exact bytes, element order, how null,
booleans, lists and special characters are written, and which format is chosen.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from sqlalchemy import Connection, select, update

from coursebook import models as m
from coursebook.demo import FULL_EXPANSION
from tests.contract import DATETIME
from tests.served import parse_xml, xml_char
from tests.support import Api, Demo, get, rich_session, session_times

PROLOG = b'<?xml version="1.0" encoding="utf-8"?>\n<root>'
XML_TYPE = "application/xml; charset=utf-8"
JSON_TYPE = "application/json"
TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d:[0-5]\d$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
TRICKY_NAME = '<b>&"Fun"</b>'


def _url(session_id: int) -> str:
    return f"/api/v2/course_sessions/{session_id}"


def _admin(demo: Demo) -> str:
    return demo.manifest["tokens"]["admin"]


def get_xml(
    api: Api,
    path: str,
    token: str | None,
    *,
    status: int = 200,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """An answer that must be XML in DRF's shape, with ``status``."""
    response = api.get(path, token, params=params, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == XML_TYPE
    assert response.content.startswith(PROLOG)
    assert response.content.endswith(b"</root>")
    return response


def _drf_text(value: Any) -> str:
    if value is True:
        return "True"
    if value is False:
        return "False"
    return "" if value is None else str(value)


def assert_same_shape(element: ElementTree.Element, data: Any, path: str = "root") -> None:
    """``element`` is ``data`` written by DRF's rules, children in the JSON key order."""
    children = list(element)
    if isinstance(data, dict):
        assert [child.tag for child in children] == list(data), path
        for child, value in zip(children, data.values(), strict=True):
            assert_same_shape(child, value, f"{path}.{child.tag}")
    elif isinstance(data, list):
        assert [child.tag for child in children] == ["list-item"] * len(data), path
        for index, (child, value) in enumerate(zip(children, data, strict=True)):
            assert_same_shape(child, value, f"{path}[{index}]")
    else:
        assert not children, path
        assert (element.text or "") == _drf_text(data), path


def assert_xml_is(response: httpx.Response, data: Any) -> None:
    assert_same_shape(ElementTree.fromstring(response.content), data)


def _session_where(demo: Demo, *conditions: Any) -> int:
    """The first main-provider session meeting ``conditions`` (on sessions/venues/courses)."""
    cs = m.course_sessions
    statement = (
        select(cs.c.id)
        .join(m.venues, m.venues.c.id == cs.c.venue_id)
        .join(m.courses, m.courses.c.id == cs.c.course_id)
        .where(cs.c.provider_id == demo.manifest["providers"]["main"], *conditions)
        .order_by(cs.c.id)
    )
    with demo.engine.connect() as conn:
        session_id = conn.execute(statement).scalar()
    assert session_id is not None, "the demo data should hold such a session"
    return int(session_id)


# -- the XML body ---------------------------------------------------------------------


def test_format_xml_and_accept_xml_give_the_same_document(api: Api, demo: Demo) -> None:
    session_id = demo.manifest["course_sessions"]["main"][0]
    by_param = get_xml(api, _url(session_id), _admin(demo), params={"format": "xml"})
    by_accept = get_xml(api, _url(session_id), _admin(demo), headers={"Accept": "application/xml"})
    assert by_param.content == by_accept.content
    body = get(api, demo, session_id)
    assert_xml_is(by_param, body)
    assert f"<id>{session_id}</id><object>course_session</object>".encode() in by_param.content
    assert f"<venue>{body['venue']}</venue>".encode() in by_param.content
    instructors = body["instructors"].replace("&", "&amp;")
    assert f"<instructors>{instructors}</instructors>".encode() in by_param.content


def test_full_expansion_in_xml(api: Api, demo: Demo) -> None:
    session_id = rich_session(demo, big_course=False)
    response = get_xml(
        api, _url(session_id), _admin(demo), params={"format": "xml", "expand": FULL_EXPANSION}
    )
    body = get(api, demo, session_id, expand=FULL_EXPANSION)
    assert_xml_is(response, body)
    text = response.text
    assert "<archived>False</archived>" in text
    venue_online = "True" if body["venue"]["is_online"] else "False"
    assert f"<is_online>{venue_online}</is_online>" in text
    assert "<instructors><list-item><id>" in text
    assert "<integrations></integrations>" in text, "an empty list is an empty element"
    assert body["instructors"][0]["integrations"] == []
    assert "<course_sessions><list-item><id>" in text
    root = ElementTree.fromstring(response.content)
    items = root.findall("./course/course_sessions/list-item")
    assert len(items) == len(body["course"]["course_sessions"]) > 1
    permissions = root.find("./instructors/list-item/permissions")
    assert permissions is not None and len(permissions) > 0
    assert {child.text for child in permissions} <= {"True", "False"}


def test_fields_selection_in_xml(api: Api, demo: Demo) -> None:
    session_id = rich_session(demo, big_course=False)
    params = {"fields": "id,name,venue.name,instructors.name", "format": "xml"}
    response = get_xml(api, _url(session_id), _admin(demo), params=params)
    body = get(api, demo, session_id, fields=params["fields"])
    assert list(body) == ["id", "name", "venue", "instructors"]
    assert_xml_is(response, body)
    root = ElementTree.fromstring(response.content)
    assert [child.tag for child in root] == ["id", "name", "venue", "instructors"]
    venue = root.find("venue")
    assert venue is not None
    assert [child.tag for child in venue] == ["name"]
    names = [e.text for e in root.findall("./instructors/list-item/name")]
    assert names == [i["name"] for i in body["instructors"]] and names


def test_null_is_an_empty_element(api: Api, demo: Demo) -> None:
    cs = m.course_sessions
    session_id = _session_where(demo, cs.c.max_occupancy.is_(None))
    response = get_xml(api, _url(session_id), _admin(demo), params={"format": "xml"})
    assert "<max_occupancy></max_occupancy>" in response.text
    assert get(api, demo, session_id)["max_occupancy"] is None
    assert parse_xml(response.content)["max_occupancy"] == ""


def test_online_venue_in_xml(api: Api, demo: Demo) -> None:
    session_id = _session_where(demo, m.venues.c.venue_type == "online")
    params = {"format": "xml", "expand": "venue"}
    response = get_xml(api, _url(session_id), _admin(demo), params=params)
    venue = get(api, demo, session_id, expand="venue")["venue"]
    assert venue["physical_address"] is None and venue["is_online"] is True
    assert "<physical_address></physical_address>" in response.text
    assert "<is_online>True</is_online><video_url_type>static</video_url_type>" in response.text


def test_physical_venue_in_xml(api: Api, demo: Demo) -> None:
    session_id = _session_where(demo, m.venues.c.venue_type == "physical")
    params = {"format": "xml", "expand": "venue"}
    response = get_xml(api, _url(session_id), _admin(demo), params=params)
    venue = get(api, demo, session_id, expand="venue")["venue"]
    assert venue["video_url"] is None and "video_url_type" not in venue
    assert "<video_url></video_url>" in response.text
    assert "<video_url_type>" not in response.text, "left out, not written as null"
    root = ElementTree.fromstring(response.content)
    address = root.find("./venue/physical_address")
    assert address is not None
    assert [child.tag for child in address][:6] == [
        "street",
        "street_secondary",
        "city",
        "region",
        "postal_code",
        "country",
    ]


def _course_of(conn: Connection, session_id: int) -> int:
    cs = m.course_sessions
    return int(conn.execute(select(cs.c.course_id).where(cs.c.id == session_id)).scalar_one())


@pytest.mark.writes
def test_special_characters_and_null_names(api: Api, demo: Demo) -> None:
    """On a database of its own: a course name full of markup, and a course without one."""
    manifest = demo.manifest
    session_id = manifest["course_sessions"]["main"][0]
    with demo.engine.begin() as conn:
        course_id = _course_of(conn, session_id)
        unnamed_id = next(
            s for s in manifest["course_sessions"]["main"] if _course_of(conn, s) != course_id
        )
        courses = m.courses.c
        conn.execute(update(m.courses).where(courses.id == course_id).values(name=TRICKY_NAME))
        conn.execute(
            update(m.courses).where(courses.id == _course_of(conn, unnamed_id)).values(name=None)
        )
    token = manifest["tokens"]["admin"]
    params = {"expand": "course"}
    plain = api.get(_url(session_id), token, params=params)
    assert plain.status_code == 200
    assert plain.json()["name"] == TRICKY_NAME
    assert plain.json()["course"]["name"] == TRICKY_NAME
    assert b'"name":"<b>&\\"Fun\\"</b>"' in plain.content

    xml = get_xml(api, _url(session_id), token, params={**params, "format": "xml"})
    escaped = b'<name>&lt;b&gt;&amp;"Fun"&lt;/b&gt;</name>'
    assert xml.content.count(escaped) == 2
    assert b"<b>" not in xml.content
    parsed = parse_xml(xml.content)
    assert parsed["name"] == TRICKY_NAME
    assert parsed["course"]["name"] == TRICKY_NAME

    unnamed = get_xml(api, _url(unnamed_id), token, params={"format": "xml"})
    assert api.get(_url(unnamed_id), token).json()["name"] is None
    assert "<object>course_session</object><name></name><starts_at>" in unnamed.text


def every_character_class(backend: str) -> str:
    """One character of every Unicode general category the JSON can carry (surrogates,
    ``Cs``, are not text), every C0 and C1 control, the line and paragraph separators,
    the noncharacters U+FFFE/U+FFFF, markup and a CDATA end. PostgreSQL's text holds no
    NUL, so it is left out there."""
    first: dict[str, str] = {}
    for code in range(sys.maxunicode + 1):
        category = unicodedata.category(chr(code))
        if category != "Cs":
            first.setdefault(category, chr(code))
    controls = "".join(map(chr, [*range(0x20), *range(0x7F, 0xA0)]))
    text = "".join(first.values()) + controls + "\u2028\u2029\ufeff\ufffe\uffff]]>&<'\"\U0001f600"
    return text.replace("\x00", "") if backend == "postgresql" else text


@pytest.mark.writes
def test_every_character_class_round_trips(api: Api, demo: Demo) -> None:
    """JSON carries every character as stored; XML every one XML 1.0 can carry, and
    U+FFFD for the others (docs/compatibility.md)."""
    name = every_character_class(api.backend)
    session_id = demo.manifest["course_sessions"]["main"][0]
    with demo.engine.begin() as conn:
        course = _course_of(conn, session_id)
        conn.execute(update(m.courses).where(m.courses.c.id == course).values(name=name))
    token = _admin(demo)
    assert api.get(_url(session_id), token).json()["name"] == name
    xml = get_xml(api, _url(session_id), token, params={"format": "xml"})
    readable = parse_xml(xml.content)["name"]
    assert len(readable) == len(name)
    for sent, read in zip(name, readable, strict=True):
        assert read == (sent if xml_char(sent) else "\ufffd"), f"U+{ord(sent):04X}"
    assert any(not xml_char(c) for c in name) and "\r" in readable


# -- dates and times -------------------------------------------------------------------


def _walk(data: Any, key: str = "") -> list[tuple[str, Any]]:
    """Every ``(key, value)`` pair in ``data``, at any depth."""
    if isinstance(data, dict):
        return [pair for k, v in data.items() for pair in [(k, v), *_walk(v, k)]]
    if isinstance(data, list):
        return [pair for item in data for pair in _walk(item, key)]
    return []


def _session_with_dated_membership(demo: Demo) -> int:
    """A fully populated session whose offering type sells a membership with an end date."""
    cs, otm = m.course_sessions, m.offering_type_memberships
    statement = (
        select(cs.c.id)
        .join(m.courses, m.courses.c.id == cs.c.course_id)
        .join(otm, otm.c.offering_type_id == m.courses.c.offering_type_id)
        .join(m.memberships, m.memberships.c.id == otm.c.membership_id)
        .join(
            m.course_session_instructors,
            m.course_session_instructors.c.course_session_id == cs.c.id,
        )
        .join(
            m.availability_schedules,
            m.availability_schedules.c.instructor_id
            == m.course_session_instructors.c.instructor_id,
        )
        .where(
            cs.c.provider_id == demo.manifest["providers"]["main"],
            m.memberships.c.expiration_date.is_not(None),
            m.memberships.c.start_date.is_(None),
        )
        .order_by(cs.c.id)
    )
    with demo.engine.connect() as conn:
        session_id = conn.execute(statement).scalar()
    assert session_id is not None, "the demo data should sell a membership with an end date"
    return int(session_id)


def test_dates_times_and_date_times(api: Api, demo: Demo) -> None:
    session_id = _session_with_dated_membership(demo)
    expand = "instructors.availability_schedules,course.offering_type.memberships"
    body = get(api, demo, session_id, expand=expand)
    xml = get_xml(api, _url(session_id), _admin(demo), params={"expand": expand, "format": "xml"})
    assert_xml_is(xml, body)

    for key, expected in session_times(demo, session_id).items():
        assert body[key] == expected
        assert f"<{key}>{expected}</{key}>" in xml.text

    pairs = _walk(body)
    date_times = [v for k, v in pairs if k in ("starts_at", "ends_at", "created_at")]
    times = [v for k, v in pairs if k in ("start", "end")]
    expirations = [v for k, v in pairs if k == "expiration_date"]
    starts = [v for k, v in pairs if k == "start_date"]
    assert date_times and all(DATETIME.match(v) for v in date_times), date_times
    assert times and all(TIME.match(v) for v in times), times
    dated = [v for v in expirations if v is not None]
    assert dated and all(DATE.match(v) for v in dated), expirations
    assert None in starts
    for value in [*times, *dated]:
        assert f">{value}</".encode() in xml.content
    assert b"<start_date></start_date>" in xml.content


# -- errors ----------------------------------------------------------------------------


def test_errors_in_xml(api: Api, demo: Demo) -> None:
    session_id = demo.manifest["course_sessions"]["main"][0]
    bad = get_xml(
        api,
        _url(session_id),
        _admin(demo),
        status=400,
        params={"format": "xml", "expand": "venu"},
    )
    assert bad.text.startswith(
        '<?xml version="1.0" encoding="utf-8"?>\n<root><code>parameter_invalid</code>'
        "<field_errors><expand><list-item>'venu' cannot be expanded here."
    )
    assert bad.text.endswith(
        "</list-item></expand></field_errors><message>Your request was invalid.</message>"
        "<type>invalid_request_error</type></root>"
    )

    anonymous = get_xml(
        api, _url(session_id), None, status=401, headers={"Accept": "application/xml"}
    )
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert parse_xml(anonymous.content)["code"] == "not_authenticated"
    assert "<field_errors></field_errors>" in anonymous.text

    missing = get_xml(api, _url(999_999_999), _admin(demo), status=404, params={"format": "xml"})
    assert missing.text == (
        '<?xml version="1.0" encoding="utf-8"?>\n<root><code>not_found</code>'
        "<field_errors></field_errors><message>Not found.</message>"
        "<type>invalid_request_error</type></root>"
    )


def test_format_xml_wins_for_an_authentication_error(api: Api, demo: Demo) -> None:
    session_id = demo.manifest["course_sessions"]["main"][0]
    response = get_xml(
        api,
        _url(session_id),
        "not-a-real-token",
        status=401,
        params={"format": "xml"},
        headers={"Accept": "application/json"},
    )
    assert parse_xml(response.content)["code"] == "authentication_failed"


# -- negotiation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/json", JSON_TYPE),
        ("application/xml", XML_TYPE),
        ("application/xml;q=0.5, application/json", JSON_TYPE),
        ("application/json;q=0.1, application/xml", XML_TYPE),
        ("*/*", JSON_TYPE),
        ("application/*", JSON_TYPE),
        ("text/html, */*;q=0.1", JSON_TYPE),
        ("text/html, application/xml;q=0.9", XML_TYPE),
        ("APPLICATION/XML", XML_TYPE),
    ],
)
def test_accept_chooses_the_format(api: Api, demo: Demo, accept: str, expected: str) -> None:
    session_id = demo.manifest["course_sessions"]["main"][0]
    response = api.get(_url(session_id), _admin(demo), headers={"Accept": accept})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == expected
    if expected == JSON_TYPE:
        assert response.json()["id"] == session_id
    else:
        assert parse_xml(response.content)["id"] == str(session_id)


@pytest.mark.parametrize(
    "accept", ["text/html", "image/png, text/plain", "application/xml;q=0", "text/xml", "text/*"]
)
def test_an_unsatisfiable_accept_is_406(api: Api, demo: Demo, accept: str) -> None:
    session_id = demo.manifest["course_sessions"]["main"][0]
    response = api.get(_url(session_id), _admin(demo), headers={"Accept": accept})
    assert response.status_code == 406
    assert response.headers["content-type"] == JSON_TYPE
    body = response.json()
    assert body["code"] == "not_acceptable"
    assert body["type"] == "invalid_request_error"
    assert "application/json" in body["message"] and "application/xml" in body["message"]


@pytest.mark.parametrize(
    ("fmt", "accept", "expected"),
    [
        ("json", "application/xml", JSON_TYPE),
        ("xml", "application/json", XML_TYPE),
        ("xml", "text/html", XML_TYPE),
        ("json", "text/html", JSON_TYPE),
    ],
)
def test_format_wins_over_accept(
    api: Api, demo: Demo, fmt: str, accept: str, expected: str
) -> None:
    session_id = demo.manifest["course_sessions"]["main"][0]
    response = api.get(
        _url(session_id), _admin(demo), params={"format": fmt}, headers={"Accept": accept}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == expected


@pytest.mark.parametrize("value", ["yaml", "", "JSON"])
def test_an_unknown_format_is_400(api: Api, demo: Demo, value: str) -> None:
    session_id = demo.manifest["course_sessions"]["main"][0]
    response = api.get(_url(session_id), _admin(demo), params={"format": value})
    assert response.status_code == 400
    assert response.headers["content-type"] == JSON_TYPE
    body = response.json()
    assert body["code"] == "parameter_invalid"
    assert list(body["field_errors"]) == ["format"]
    (message,) = body["field_errors"]["format"]
    assert f"'{value}'" in message and "json" in message and "xml" in message


def test_healthz_in_xml(api: Api) -> None:
    expected = b'<?xml version="1.0" encoding="utf-8"?>\n<root><status>ok</status></root>'
    assert get_xml(api, "/healthz", None, params={"format": "xml"}).content == expected
    accepted = get_xml(api, "/healthz", None, headers={"Accept": "application/xml"})
    assert accepted.content == expected
    plain = api.get("/healthz")
    assert plain.headers["content-type"] == JSON_TYPE and plain.json() == {"status": "ok"}
