"""Date-times as TeamUp writes them: whole seconds at the zone's offset at that instant,
``Z`` when it is zero (``coursebook.values.local_datetime``)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from coursebook import values
from coursebook.values import ZONES, local_datetime, write_datetime


@pytest.mark.parametrize(
    ("utc", "zone", "expected"),
    [
        # TeamUp's recorded responses (docs/contract/SEMANTICS.md section 7)
        (datetime(2026, 1, 29, 6, 30), "Europe/London", "2026-01-29T06:30:00Z"),
        (datetime(2026, 3, 30, 5, 30), "Europe/London", "2026-03-30T06:30:00+01:00"),
        (datetime(2026, 4, 30, 10, 30), "America/New_York", "2026-04-30T06:30:00-04:00"),
        (datetime(2026, 1, 29, 11, 30), "America/New_York", "2026-01-29T06:30:00-05:00"),
        (datetime(2026, 1, 29, 1, 0), "Asia/Kolkata", "2026-01-29T06:30:00+05:30"),
        (datetime(2026, 1, 29, 6, 30), "UTC", "2026-01-29T06:30:00Z"),
        # a day boundary crossed by the offset
        (datetime(2026, 7, 1, 2, 0), "America/New_York", "2026-06-30T22:00:00-04:00"),
    ],
)
def test_written_at_the_zones_offset(utc: datetime, zone: str, expected: str) -> None:
    assert local_datetime(utc, zone) == expected


@pytest.mark.parametrize(
    ("utc", "zone", "expected"),
    [
        # London springs forward at 01:00 UTC on 29 March 2026 ...
        (datetime(2026, 3, 29, 0, 59, 59), "Europe/London", "2026-03-29T00:59:59Z"),
        (datetime(2026, 3, 29, 1, 0), "Europe/London", "2026-03-29T02:00:00+01:00"),
        # ... and falls back at 01:00 UTC on 25 October: 01:30 local happens twice.
        (datetime(2026, 10, 25, 0, 30), "Europe/London", "2026-10-25T01:30:00+01:00"),
        (datetime(2026, 10, 25, 1, 30), "Europe/London", "2026-10-25T01:30:00Z"),
        # New York springs forward at 07:00 UTC on 8 March, falls back at 06:00 UTC on 1 Nov.
        (datetime(2026, 3, 8, 6, 59), "America/New_York", "2026-03-08T01:59:00-05:00"),
        (datetime(2026, 3, 8, 7, 0), "America/New_York", "2026-03-08T03:00:00-04:00"),
        (datetime(2026, 11, 1, 5, 30), "America/New_York", "2026-11-01T01:30:00-04:00"),
        (datetime(2026, 11, 1, 6, 30), "America/New_York", "2026-11-01T01:30:00-05:00"),
    ],
)
def test_the_offset_follows_daylight_saving_changes(
    utc: datetime, zone: str, expected: str
) -> None:
    assert local_datetime(utc, zone) == expected


def test_a_naive_value_is_utc() -> None:
    """SQLite gives date-times back without an offset; they were stored in UTC."""
    naive = datetime(2026, 6, 1, 17, 45)
    assert local_datetime(naive, "Europe/London") == "2026-06-01T18:45:00+01:00"
    assert local_datetime(naive, "Europe/London") == local_datetime(
        naive.replace(tzinfo=UTC), "Europe/London"
    )


def test_an_aware_value_in_another_zone_is_the_same_instant() -> None:
    """PostgreSQL gives date-times in the connection's zone, whatever it is."""
    berlin = datetime(2026, 6, 1, 19, 45, tzinfo=ZoneInfo("Europe/Berlin"))
    minus_three = datetime(2026, 6, 1, 14, 45, tzinfo=timezone(timedelta(hours=-3)))
    assert local_datetime(berlin, "Europe/London") == "2026-06-01T18:45:00+01:00"
    assert local_datetime(minus_three, "Europe/London") == "2026-06-01T18:45:00+01:00"


@pytest.mark.parametrize("tz", [None, UTC])
def test_fractions_of_a_second_are_dropped_not_rounded(tz: timezone | None) -> None:
    """Truncated: 23:59:59.999999 stays in its second, its minute and its day."""
    value = datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=tz)
    assert local_datetime(value, "UTC") == "2026-12-31T23:59:59Z"
    assert local_datetime(value, "Asia/Kolkata") == "2027-01-01T05:29:59+05:30"
    assert local_datetime(value.replace(microsecond=500), "Europe/London") == (
        "2026-12-31T23:59:59Z"
    )


@pytest.mark.parametrize(
    "name", ["Mars/Olympus_Mons", "Europe/London ", "", "../../etc/passwd", "/etc/localtime"]
)
def test_an_unknown_zone_is_utc_and_logged_once(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    ZONES.pop(name, None)
    value = datetime(2026, 6, 1, 17, 45, 30, 120000)
    with caplog.at_level(logging.WARNING, logger="coursebook"):
        assert local_datetime(value, name) == "2026-06-01T17:45:30Z"
        assert local_datetime(value, name) == "2026-06-01T17:45:30Z"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"Unknown time zone {name!r}: its date-times are written in UTC"]


def test_each_zone_is_looked_up_once() -> None:
    first = ZONES["Asia/Kolkata"]
    local_datetime(datetime(2026, 1, 1), "Asia/Kolkata")
    assert ZONES["Asia/Kolkata"] is first


@pytest.mark.parametrize(
    ("value", "zone", "expected"),
    [
        # Local mean time, -00:01:15: RFC 3339 has no offset with seconds.
        (datetime(1800, 1, 1, 12, 0), "Europe/London", "1800-01-01T12:00:00Z"),
        # The local time would be in year 10000.
        (datetime(9999, 12, 31, 23, 30), "Asia/Kolkata", "9999-12-31T23:30:00Z"),
        (datetime(1, 1, 1, 0, 30, tzinfo=UTC), "America/New_York", "0001-01-01T00:30:00Z"),
    ],
)
def test_what_cannot_be_written_locally_is_written_in_utc(
    value: datetime, zone: str, expected: str
) -> None:
    assert local_datetime(value, zone) == expected


def test_a_remembered_date_time_is_written_as_before() -> None:
    """``local_datetime`` keeps what it wrote; asked again, it answers the same text."""
    value = datetime(2026, 10, 25, 1, 30)
    first = local_datetime(value, "Europe/London")
    assert (value, "Europe/London") in values._WRITTEN
    assert local_datetime(datetime(2026, 10, 25, 1, 30), "Europe/London") == first
    assert first == write_datetime(value, "Europe/London") == "2026-10-25T01:30:00Z"
    assert local_datetime(value, "America/New_York") == "2026-10-24T21:30:00-04:00"


def test_wall_times_of_a_zone_are_not_remembered() -> None:
    """01:30 in New York on 1 November 2026 is two instants (``fold``), which compare
    equal as wall times of one zone: written each time, never taken for one another."""
    zone = ZoneInfo("America/New_York")
    first = datetime(2026, 11, 1, 1, 30, tzinfo=zone)
    second = first.replace(fold=1)
    assert first == second
    assert local_datetime(first, "UTC") == "2026-11-01T05:30:00Z"
    assert local_datetime(second, "UTC") == "2026-11-01T06:30:00Z"
    assert not any(key[0] == first for key in values._WRITTEN)


def test_what_is_remembered_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(values, "WRITTEN_KEPT", 3)
    start = datetime(2030, 1, 1)
    for minute in range(10):
        value = start + timedelta(minutes=minute)
        assert local_datetime(value, "UTC") == f"2030-01-01T00:{minute:02d}:00Z"
        assert len(values._WRITTEN) <= 3
