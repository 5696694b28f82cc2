"""The route table: templates compile, every route matches its own paths (with and
without a trailing slash) before any other route, and links are built from it."""

from __future__ import annotations

import pytest

from coursebook.fields import ToMany
from coursebook.graph import LISTINGS, RESOURCES
from coursebook.ids import ID
from coursebook.models import MAX_ID
from coursebook.openapi import build_document
from coursebook.routes import ROUTES, ListOf, Route, Router, compile_path, ignored_parameters


def sample_path(route: Route) -> str:
    return route.url_path_for(**dict.fromkeys(route.convertors, 42))


@pytest.mark.parametrize("route", list(ROUTES), ids=lambda r: r.name)
@pytest.mark.parametrize("slash", ["", "/"])
def test_each_route_matches_its_own_paths_first(route: Route, slash: str) -> None:
    path = sample_path(route) + slash
    found = ROUTES.match(path)
    assert found is not None, path
    assert found[0] is route, f"{path} reached {found[0].name}, not {route.name}"
    assert route.convert(found[1]) == dict.fromkeys(route.convertors, 42)


def test_a_list_path_with_a_trailing_slash_is_the_list_not_an_empty_id() -> None:
    found = ROUTES.match("/api/v2/course_sessions/")
    assert found is not None
    assert found[0].name == "course_sessions_list"


def test_doubled_slashes_reach_the_route_as_teamups_page_writes_it() -> None:
    found = ROUTES.match("/api/v2//course_sessions/7/")
    assert found is not None
    route, raw = found
    assert route.name == "course_sessions_retrieve"
    assert route.convert(raw) == {"id": 7}


@pytest.mark.parametrize("path", ["/", "/api/v2/", "/api/v2/courses", "/api/v3/x", "/healthzz"])
def test_unknown_paths_match_nothing(path: str) -> None:
    assert ROUTES.match(path) is None


@pytest.mark.parametrize("raw", ["0", "-1", "1.5", "abc", "1e3", str(MAX_ID + 1), "٣", "9" * 30])
def test_the_id_converter_refuses_what_names_no_row(raw: str) -> None:
    with pytest.raises(ValueError):
        ID.convert(raw)


@pytest.mark.parametrize("raw", ["1", "007", str(MAX_ID)])
def test_the_id_converter_reads_ids(raw: str) -> None:
    assert ID.convert(raw) == int(raw)


def test_compile_path_gives_a_format_and_converters() -> None:
    pattern, path_format, convertors = compile_path("/a/{x:id}/b/")
    assert path_format == "/a/{x}/b"
    assert convertors == {"x": ID}
    assert pattern.match("/a//12/b/") is not None
    assert pattern.match("/a/12/b/c") is None


def test_a_template_with_an_unknown_converter_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown converter 'uuid'"):
        compile_path("/a/{x:uuid}")


def test_route_names_are_unique() -> None:
    route = next(iter(ROUTES))
    with pytest.raises(ValueError, match="repeat"):
        Router((route, route))


def test_url_path_for_fills_in_and_checks_parameters() -> None:
    assert ROUTES.url_path_for("course_sessions_retrieve", id=5) == "/api/v2/course_sessions/5"
    assert ROUTES.url_path_for("instructors_list") == "/api/v2/instructors"
    with pytest.raises(KeyError):
        ROUTES.url_path_for("course_sessions_retrieve")
    with pytest.raises(KeyError):
        ROUTES.url_path_for("nope")


def test_every_listing_has_its_route() -> None:
    routed = [route.endpoint.listing for route in ROUTES if isinstance(route.endpoint, ListOf)]
    assert routed == list(LISTINGS)


def test_related_collections_point_at_routed_list_endpoints() -> None:
    for resource in RESOURCES.values():
        for field in resource.fields:
            if isinstance(field, ToMany):
                path, _, query = field.path({"id": 3}).partition("?")
                found = ROUTES.match(path)
                assert found is not None, path
                assert found[0].endpoint == ListOf(field.listing)
                assert query == f"{field.filter.name}=3"


def test_the_openapi_paths_are_the_route_table() -> None:
    documented = set(build_document()["paths"])
    routed = {route.path_format for route in ROUTES if route.name not in ("openapi", "docs")}
    assert documented == routed
    operations = {
        operation["get"]["operationId"] for operation in build_document()["paths"].values()
    }
    assert operations == {route.name for route in ROUTES if route.name not in ("openapi", "docs")}


def test_each_endpoint_names_the_parameters_it_does_not_read() -> None:
    def ignored(path: str, *names: str) -> str | None:
        found = ROUTES.match(path)
        assert found is not None
        return ignored_parameters(found[0].endpoint, dict.fromkeys(names, [""]))

    assert ignored("/api/v2/course_sessions/1", "expand", "fields", "format") is None
    assert ignored("/api/v2/course_sessions/1", "sort", "expand", "page") == "page, sort"
    assert ignored("/api/v2/course_sessions", "ordering", "venues", "cours", "sort") == (
        "cours, ordering"
    )
    assert ignored("/api/v2/venue_rooms", "venue", "venues") == "venues"
    assert ignored("/healthz", "format", "expand") == "expand"
    assert ignored("/api/v2/instructors", "a b", "é", "x\r\nSet-Cookie: y") == (
        "a%20b, x%0D%0ASet-Cookie%3A%20y, %C3%A9"
    )


def test_a_list_endpoint_reads_its_listings_parameters() -> None:
    for route in ROUTES:
        if isinstance(route.endpoint, ListOf):
            listing = route.endpoint.listing
            names = {spec.name for spec in listing.filters} | {"sort", "page", "page_size"}
            assert route.endpoint.parameters == names | {"expand", "fields", "format"}
