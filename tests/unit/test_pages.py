"""coursebook.listing's pages on their own: Django REST framework's page-number
pagination (page size, page number, links), without a database."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from coursebook.errors import ApiError
from coursebook.graph import COURSE_SESSIONS, VENUE_ROOMS
from coursebook.listing import (
    MAX_PAGE_SIZE,
    envelope,
    list_parameters,
    page_number,
    page_url,
    parse_page,
    parse_page_size,
)

BASE = "https://studio.example"
PATH = "/api/v2/course_sessions"


def invalid_page(call: object, *args: object) -> None:
    """``call(*args)`` raises DRF's 404 "Invalid page." in TeamUp's body."""
    assert callable(call)
    with pytest.raises(ApiError) as caught:
        call(*args)
    body = caught.value.body()
    assert (caught.value.status, body["code"], body["message"]) == (
        404,
        "not_found",
        "Invalid page.",
    )


@pytest.mark.parametrize(
    ("raw", "size"),
    [
        ("", MAX_PAGE_SIZE),
        ("7", 7),
        (" 7 ", 7),
        ("100", 100),
        ("101", MAX_PAGE_SIZE),
        ("500", MAX_PAGE_SIZE),
        ("0", MAX_PAGE_SIZE),
        ("-3", MAX_PAGE_SIZE),
        ("ten", MAX_PAGE_SIZE),
        ("2.5", MAX_PAGE_SIZE),
        ("9" * 5000, MAX_PAGE_SIZE),
    ],
)
def test_a_page_size_is_capped_and_otherwise_the_default(raw: str, size: int) -> None:
    assert parse_page_size(raw) == size


@pytest.mark.parametrize(
    ("raw", "page"), [("", 1), ("1", 1), ("12", 12), (" 3", 3), ("last", None)]
)
def test_page_numbers(raw: str, page: int | None) -> None:
    assert parse_page(raw) == page


@pytest.mark.parametrize("raw", ["0", "-1", "x", "2.0", "LAST", "last ", " ", "9" * 5000])
def test_a_page_that_is_no_page_number_is_invalid(raw: str) -> None:
    invalid_page(parse_page, raw)


def test_the_page_answered_is_known_once_counted() -> None:
    assert page_number(1, 0, 100) == 1, "an empty list has one page, empty"
    assert page_number(None, 0, 100) == 1
    assert page_number(None, 250, 100) == 3
    assert page_number(3, 250, 100) == 3
    assert page_number(None, 200, 100) == 2
    invalid_page(page_number, 3, 200, 100)
    invalid_page(page_number, 2, 0, 100)


def test_links_keep_every_parameter_sorted_and_encoded_as_drf_writes_them() -> None:
    query = {
        "venues": [""],
        "starts_at_gte": ["2025-12-28T00:00+00:00"],
        "expand": ["instructors,venue"],
        "page_size": ["500"],
        "fields": ["id,name"],
        "page": ["2"],
        "cours": ["a b"],
    }
    assert page_url(BASE, PATH, query, 3) == (
        f"{BASE}{PATH}?cours=a+b&expand=instructors%2Cvenue&fields=id%2Cname&page=3"
        "&page_size=500&starts_at_gte=2025-12-28T00%3A00%2B00%3A00&venues="
    )


def test_the_link_to_the_first_page_has_no_page() -> None:
    assert (
        page_url(BASE, PATH, {"page": ["2"], "sort": ["-start"]}, 1) == f"{BASE}{PATH}?sort=-start"
    )
    assert page_url(BASE, PATH, {"page": ["2"]}, 1) == f"{BASE}{PATH}"


def test_a_repeated_parameter_keeps_its_values_in_order() -> None:
    link = page_url(BASE, PATH, {"status": ["cancelled", "active"], "page": ["1"]}, 2)
    assert parse_qsl(urlsplit(link).query) == [
        ("page", "2"),
        ("status", "cancelled"),
        ("status", "active"),
    ]


def test_the_envelope_links_its_neighbours() -> None:
    query = {"page": ["2"], "page_size": ["10"]}
    middle = envelope(BASE, PATH, query, 2, 10, 25, [])
    assert middle == {
        "count": 25,
        "next": f"{BASE}{PATH}?page=3&page_size=10",
        "previous": f"{BASE}{PATH}?page_size=10",
        "results": [],
    }
    last = envelope(BASE, PATH, query, 3, 10, 25, [])
    assert (last["next"], last["previous"]) == (None, f"{BASE}{PATH}?page=2&page_size=10")
    only = envelope(BASE, PATH, {}, 1, 10, 10, [])
    assert (only["next"], only["previous"]) == (None, None)


def test_a_listing_reads_its_filters_sort_and_page() -> None:
    assert list_parameters(VENUE_ROOMS) == {"venue", "sort", "page", "page_size"}
    sessions = list_parameters(COURSE_SESSIONS)
    assert {
        "course",
        "instructors",
        "local_starts_at_gte",
        "start_lte",
        "occupancy_status",
    } <= sessions
    assert "expand" not in sessions
