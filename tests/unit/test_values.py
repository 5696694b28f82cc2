"""coursebook.values on its own: date-time filter values, comma-separated items, ids and
choices as a list request writes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from coursebook.errors import ApiError
from coursebook.values import MAX_IDS, Bound, choices, parse_bound, parse_ids, split_items


def refusal(raw: str, *, upper: bool = False, local: bool = False) -> str:
    """The one message of the 400 that ``parse_bound`` answers ``raw`` with."""
    with pytest.raises(ApiError) as caught:
        parse_bound("starts_at_gte", raw, upper=upper, local=local)
    error = caught.value
    assert (error.status, error.code) == (400, "parameter_invalid")
    [message] = error.field_errors["starts_at_gte"]
    return message


# -- date-time bounds ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "instant"),
    [
        ("2026-01-02T00:00+00:00", datetime(2026, 1, 2, tzinfo=UTC)),
        ("2026-01-02T00:00:00Z", datetime(2026, 1, 2, tzinfo=UTC)),
        ("2026-01-02t00:00z", datetime(2026, 1, 2, tzinfo=UTC)),
        ("2026-01-02T06:30-04:00", datetime(2026, 1, 2, 10, 30, tzinfo=UTC)),
        ("2026-01-02T06:30:15+05:30", datetime(2026, 1, 2, 1, 0, 15, tzinfo=UTC)),
        ("2026-01-02T06:30:15.5+0100", datetime(2026, 1, 2, 5, 30, 15, 500_000, tzinfo=UTC)),
        ("2026-01-02T06:30:00.1234567Z", datetime(2026, 1, 2, 6, 30, 0, 123_456, tzinfo=UTC)),
        ("2026-01-02T06:30:00-00:00", datetime(2026, 1, 2, 6, 30, tzinfo=UTC)),
        ("2026-01-02 06:30", datetime(2026, 1, 2, 6, 30, tzinfo=UTC)),
        (" 2026-01-02T06:30 ", datetime(2026, 1, 2, 6, 30, tzinfo=UTC)),
    ],
)
def test_an_instant_takes_any_offset_and_minute_precision(raw: str, instant: datetime) -> None:
    bound = parse_bound("starts_at_gte", raw, upper=False)
    assert bound == Bound(instant)
    assert bound.at.utcoffset() == timedelta(0)
    assert parse_bound("starts_at_lte", raw, upper=True) == Bound(instant)


def test_a_plain_date_is_its_midnight_below_and_its_whole_day_above() -> None:
    assert parse_bound("x", "2026-01-02", upper=False) == Bound(datetime(2026, 1, 2, tzinfo=UTC))
    assert parse_bound("x", "2026-01-02", upper=True) == Bound(
        datetime(2026, 1, 3, tzinfo=UTC), inclusive=False
    )
    assert parse_bound("x", "2026-02-28", upper=True, local=True) == Bound(
        datetime(2026, 3, 1), inclusive=False
    )


def test_a_plain_date_at_the_end_of_time_still_covers_its_day() -> None:
    bound = parse_bound("x", "9999-12-31", upper=True)
    assert bound == Bound(datetime.max.replace(tzinfo=UTC))


def test_offsets_past_the_edge_of_time_are_held_at_it() -> None:
    assert parse_bound("x", "0001-01-01T00:00+01:00", upper=False).at == datetime.min.replace(
        tzinfo=UTC
    )
    assert parse_bound("x", "9999-12-31T23:00-02:00", upper=True).at == datetime.max.replace(
        tzinfo=UTC
    )


def test_a_local_time_is_its_wall_clock_part() -> None:
    assert parse_bound("x", "2026-04-30T06:30:00", upper=False, local=True) == Bound(
        datetime(2026, 4, 30, 6, 30)
    )
    echoed = parse_bound("x", "2026-04-30T06:30:00-04:00", upper=True, local=True)
    assert echoed == Bound(datetime(2026, 4, 30, 6, 30))
    assert echoed.at.tzinfo is None


@pytest.mark.parametrize(
    "raw",
    [
        "2026-01-02T00:00 00:00",
        "2026-01-02T00:00:00 01:00",
        "2026-01-02 06:30 0530",
        "2026-01-02T00:00 05",
    ],
)
@pytest.mark.parametrize("local", [False, True])
def test_a_plus_that_arrived_as_a_space_is_named(raw: str, local: bool) -> None:
    message = refusal(raw, local=local)
    assert "%2B" in message and "'+'" in message


@pytest.mark.parametrize(
    "raw",
    [
        "yesterday",
        "2026-13-45",
        "2026-02-30",
        "2026-01-02T24:00",
        "2026-01-02T10:00+24:00",
        "2026-01-02T10",
        "20260102",
        "٢٠٢٦-01-02",
        "2026-01-02T10:00:00.Z",
        "1767312000",
    ],
)
def test_anything_else_is_refused_with_an_example(raw: str) -> None:
    message = refusal(raw)
    assert raw in message
    assert "%2B" not in message


def test_the_example_of_a_local_filter_has_no_offset() -> None:
    assert "2026-04-30T06:30:00." in refusal("soon", local=True)
    assert "Z." in refusal("soon")


# -- comma-separated items, ids and choices ------------------------------------------------


def test_empty_items_are_no_items() -> None:
    assert split_items("") == []
    assert split_items(" , ,") == []
    assert split_items("1,, 2 ,") == ["1", "2"]


def test_ids() -> None:
    assert parse_ids("venues", ["3", "1", "3"]) == [3, 1, 3]
    for item in ("me", "0", "-1", "1.5", "9223372036854775808", "١"):
        with pytest.raises(ApiError) as caught:
            parse_ids("venues", ["1", item])
        assert item in caught.value.field_errors["venues"][0]
    with pytest.raises(ApiError):
        parse_ids("venues", ["1"] * (MAX_IDS + 1))


def test_choices_are_comma_separated_sorted_and_once_each() -> None:
    parse = choices("active", "cancelled")
    assert parse("status", "cancelled,active,cancelled") == ("active", "cancelled")
    assert parse("status", " active ") == ("active",)
    assert parse("status", ",") is None
    with pytest.raises(ApiError) as caught:
        parse("status", "active,done")
    assert caught.value.field_errors == {
        "status": ["'done' is not valid. Valid: active, cancelled."]
    }


def test_one_instant_written_two_ways_is_one_key() -> None:
    """The count memo keys a list by its parsed filter values."""
    written = {
        parse_bound("x", raw, upper=False)
        for raw in ("2026-01-02T00:00+01:00", "2026-01-01T23:00Z")
    }
    assert len(written) == 1
