"""The published OpenAPI document: validity, what it documents, its agreement with the
contract copy in docs/contract/, and the offline Swagger UI at /docs."""

from __future__ import annotations

import copy
import re
import socket
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from openapi_spec_validator import validate as validate_spec

from tests.contract import contract
from tests.support import Api

ALLOWED_DIFFERENCES = (
    Path(__file__).parent.parent / "docs" / "contract" / "allowed_differences.yaml"
)
OPERATION_PATH = "/api/v2/course_sessions/{id}"
ERROR_STATUSES = ("400", "401", "403", "404", "405", "406", "429", "500", "503")

#: Schema keywords whose values must agree between the contract and the generated document.
#: Descriptions, titles and examples are documentation only and may differ.
COMPARED_KEYWORDS = (
    "type",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "default",
    "x-expandable",
    "x-deferred",
)
BRANCH_KEYWORDS = ("oneOf", "anyOf", "allOf")


class _Missing:
    """Marks a value one side of a comparison does not have."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()

Difference = tuple[str, Any, Any]


@pytest.fixture(scope="module")
def document(shared_api: Api) -> dict[str, Any]:
    response = shared_api.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


# -- the generic schema diff ---------------------------------------------------------


def _ref_name(node: Any) -> str | None:
    if isinstance(node, dict) and isinstance(node.get("$ref"), str):
        prefix = "#/components/schemas/"
        assert node["$ref"].startswith(prefix), node["$ref"]
        return str(node["$ref"][len(prefix) :])
    return None


def _resolve(node: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    """``node`` with its ``$ref`` replaced by the target, keywords beside the ``$ref`` kept."""
    name = _ref_name(node)
    if name is None:
        return node
    target = document["components"]["schemas"][name]
    siblings = {key: value for key, value in node.items() if key != "$ref"}
    return {**_resolve(target, document), **siblings}


def _types(node: dict[str, Any]) -> Any:
    kind = node.get("type", MISSING)
    if kind is MISSING:
        return MISSING
    return sorted([kind] if isinstance(kind, str) else kind)


def _nullable(node: dict[str, Any], document: dict[str, Any]) -> bool:
    """Whether ``node`` admits null: a null type, a null enum value or a nullable branch."""
    node = _resolve(node, document)
    kind = node.get("type", [])
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    if None in node.get("enum", ()):
        return True
    return any(_nullable(branch, document) for branch in node.get("oneOf", ()))


def schema_diff(
    contract_node: Any,
    generated_node: Any,
    path: str,
    contract_doc: dict[str, Any],
    generated_doc: dict[str, Any],
    seen: frozenset[tuple[str | None, str | None]] = frozenset(),
) -> Iterator[Difference]:
    """Every ``(path, contract value, generated value)`` where the two schemas disagree.

    A ``$ref`` to the same name on both sides is equal here (each named schema is compared
    on its own); otherwise references are resolved on both sides and the structures compared,
    so an inlined schema equals a reference to an identical one.
    """
    if contract_node is MISSING or generated_node is MISSING:
        yield path, contract_node, generated_node
        return
    if not isinstance(contract_node, dict) or not isinstance(generated_node, dict):
        if contract_node != generated_node:
            yield path, contract_node, generated_node
        return
    contract_ref, generated_ref = _ref_name(contract_node), _ref_name(generated_node)
    if contract_ref is not None and contract_ref == generated_ref:
        contract_node = {k: v for k, v in contract_node.items() if k != "$ref"}
        generated_node = {k: v for k, v in generated_node.items() if k != "$ref"}
    elif contract_ref is not None or generated_ref is not None:
        if (contract_ref, generated_ref) in seen:
            return
        seen = seen | {(contract_ref, generated_ref)}
        contract_node = _resolve(contract_node, contract_doc)
        generated_node = _resolve(generated_node, generated_doc)

    for keyword in COMPARED_KEYWORDS:
        theirs, ours = contract_node.get(keyword, MISSING), generated_node.get(keyword, MISSING)
        if keyword == "type":
            theirs, ours = _types(contract_node), _types(generated_node)
        if theirs != ours:
            yield f"{path}.{keyword}", theirs, ours
    theirs_null = _nullable(contract_node, contract_doc)
    ours_null = _nullable(generated_node, generated_doc)
    if theirs_null != ours_null:
        yield f"{path}.nullable", theirs_null, ours_null

    theirs_required = sorted(contract_node.get("required", []))
    ours_required = sorted(generated_node.get("required", []))
    if theirs_required != ours_required:
        yield f"{path}.required", theirs_required, ours_required

    theirs_props = contract_node.get("properties", {})
    ours_props = generated_node.get("properties", {})
    for name in [*theirs_props, *(n for n in ours_props if n not in theirs_props)]:
        yield from schema_diff(
            theirs_props.get(name, MISSING),
            ours_props.get(name, MISSING),
            f"{path}.properties.{name}",
            contract_doc,
            generated_doc,
            seen,
        )

    for keyword in ("items", "additionalProperties"):
        theirs, ours = contract_node.get(keyword, MISSING), generated_node.get(keyword, MISSING)
        if theirs is MISSING and ours is MISSING:
            continue
        yield from schema_diff(theirs, ours, f"{path}.{keyword}", contract_doc, generated_doc, seen)

    for keyword in BRANCH_KEYWORDS:
        theirs, ours = contract_node.get(keyword, []), generated_node.get(keyword, [])
        if len(theirs) != len(ours):
            yield f"{path}.{keyword}", len(theirs), len(ours)
            continue
        for index, (their_branch, our_branch) in enumerate(zip(theirs, ours, strict=True)):
            yield from schema_diff(
                their_branch,
                our_branch,
                f"{path}.{keyword}.{index}",
                contract_doc,
                generated_doc,
                seen,
            )


def schema_differences(
    contract_doc: dict[str, Any], generated_doc: dict[str, Any]
) -> list[Difference]:
    """Differences of every component schema of the contract (extra generated ones are fine)."""
    generated = generated_doc["components"]["schemas"]
    differences: list[Difference] = []
    for name, schema in contract_doc["components"]["schemas"].items():
        differences += schema_diff(
            schema, generated.get(name, MISSING), name, contract_doc, generated_doc
        )
    return differences


def _parameters(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    operation = document["paths"][OPERATION_PATH]["get"]
    return {p["name"]: p for p in operation["parameters"]}


def parameter_differences(
    contract_doc: dict[str, Any], generated_doc: dict[str, Any]
) -> list[Difference]:
    """Differences of the operation's parameter schemas (names, ``in`` and ``required`` are
    checked separately and must be equal)."""
    theirs, ours = _parameters(contract_doc), _parameters(generated_doc)
    differences: list[Difference] = []
    for name in theirs.keys() & ours.keys():
        differences += schema_diff(
            theirs[name]["schema"],
            ours[name]["schema"],
            f"parameters.{name}.schema",
            contract_doc,
            generated_doc,
        )
    return differences


def allowed_differences() -> dict[str, str]:
    entries = yaml.safe_load(ALLOWED_DIFFERENCES.read_text())
    allowed: dict[str, str] = {}
    for entry in entries:
        assert set(entry) == {"path", "justification"}, entry
        assert entry["justification"].strip(), f"{entry['path']}: no justification"
        assert entry["path"] not in allowed, f"{entry['path']} is listed twice"
        allowed[entry["path"]] = entry["justification"]
    return allowed


def _all_differences(document: dict[str, Any]) -> list[Difference]:
    return schema_differences(contract(), document) + parameter_differences(contract(), document)


# -- validity and what the document says ----------------------------------------------


def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    validate_spec(document)
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == "Course Sessions (TeamUp API v2 compatible)"
    assert set(document["paths"]) == {
        OPERATION_PATH,
        "/api/v2/course_sessions",
        "/api/v2/instructors",
        "/api/v2/venue_rooms",
        "/healthz",
        "/readyz",
    }


def test_the_contract_copy_is_itself_valid_openapi() -> None:
    validate_spec(copy.deepcopy(contract()))


def test_query_parameters_are_documented(document: dict[str, Any]) -> None:
    params = _parameters(document)
    assert params["id"]["in"] == "path" and params["id"]["required"] is True
    assert params["id"]["schema"]["type"] == "integer"
    for name in ("expand", "fields"):
        assert params[name]["in"] == "query"
        assert (params[name]["style"], params[name]["explode"]) == ("form", False)
        assert params[name]["schema"]["type"] == "array"
    expand_values = params["expand"]["schema"]["items"]["enum"]
    assert "venue" in expand_values
    assert "course.offering_type.category" in expand_values
    assert "instructors.availability_schedules" in expand_values
    assert "name" not in expand_values, "plain fields cannot be expanded"
    assert max(value.count(".") for value in expand_values) == 3, "at most four levels"
    field_values = params["fields"]["schema"]["items"]["enum"]
    assert {"id", "name", "venue.name", "course.offering_type.memberships.price"} <= set(
        field_values
    )
    assert set(expand_values) < set(field_values)
    assert params["format"] == {
        "name": "format",
        "in": "query",
        "schema": {"type": "string", "enum": ["json", "xml"]},
    }


def test_headers_are_documented(document: dict[str, Any]) -> None:
    params = _parameters(document)
    provider = params["TeamUp-Provider-ID"]
    assert provider["in"] == "header" and not provider.get("required", False)
    assert re.match(provider["schema"]["pattern"], "12")
    assert not re.match(provider["schema"]["pattern"], "twelve")
    mode = params["Teamup-Request-Mode"]
    assert mode["in"] == "header" and not mode.get("required", False)
    assert mode["schema"] == {"type": "string", "enum": ["customer", "provider"]}


def test_the_course_session_list_documents_teamups_parameters(document: dict[str, Any]) -> None:
    operation = document["paths"]["/api/v2/course_sessions"]["get"]
    params = {p["name"]: p for p in operation["parameters"]}
    for name in (
        "course",
        "venues",
        "instructors",
        "offering_types",
        "status",
        "starts_at_gte",
        "ends_at_lte",
        "local_starts_at_gte",
        "local_starts_at_lte",
        "occupancy_status",
    ):
        assert not params[name].get("deprecated", False), name
        assert "Empty: no filter." in params[name]["description"], name
    assert params["start_gte"]["deprecated"] and params["start_lte"]["deprecated"]
    assert {"type": "string", "enum": ["me"]} in params["instructors"]["schema"]["items"]["anyOf"]
    assert params["status"]["schema"]["items"]["enum"] == ["", "active", "cancelled"]
    assert (params["status"]["style"], params["status"]["explode"]) == ("form", False)
    assert params["occupancy_status"]["schema"]["items"]["enum"] == [
        "",
        "full",
        "not_full",
        "has_registrations",
        "has_waitlist",
        "empty",
    ]
    assert params["sort"]["schema"]["default"] == "start"
    assert {"", "start", "-start"} <= set(params["sort"]["schema"]["enum"])
    assert "last" in params["page"]["schema"]["anyOf"][1]["enum"]
    assert "Invalid page." in params["page"]["description"]
    assert "Invalid page" in operation["responses"]["404"]["description"]


def test_every_answer_documents_the_ignored_parameters_header(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        assert "Coursebook-Ignored-Parameters" in item["get"]["responses"]["200"]["headers"], path
    for name, response in document["components"]["responses"].items():
        assert "Coursebook-Ignored-Parameters" in response["headers"], name


def test_bearer_security(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"] == {
        "bearerAuth": {"type": "http", "scheme": "bearer"}
    }
    assert document["paths"][OPERATION_PATH]["get"]["security"] == [{"bearerAuth": []}]
    for probe in ("/healthz", "/readyz"):
        assert document["paths"][probe]["get"]["security"] == []


@pytest.mark.parametrize("status", ERROR_STATUSES)
def test_every_error_status_refers_to_the_error_body(document: dict[str, Any], status: str) -> None:
    responses = document["paths"][OPERATION_PATH]["get"]["responses"]
    assert responses[status] == {"$ref": f"#/components/responses/Error{status}"}
    response = document["components"]["responses"][f"Error{status}"]
    assert response["description"]
    assert response["content"] == {
        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}},
        "application/xml": {"schema": {"$ref": "#/components/schemas/Error"}},
    }
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["code", "field_errors", "message", "type"]
    assert list(error["properties"]) == ["code", "field_errors", "message", "type"]


def test_documented_statuses(document: dict[str, Any]) -> None:
    responses = document["paths"][OPERATION_PATH]["get"]["responses"]
    assert sorted(responses) == sorted(("200", "304", *ERROR_STATUSES))
    contract_statuses = set(contract()["paths"][OPERATION_PATH]["get"]["responses"])
    assert contract_statuses <= set(responses)
    ok = responses["200"]["content"]
    assert set(ok) == {"application/json", "application/xml"}
    full = {"$ref": "#/components/schemas/CourseSession"}
    for media_type in ("application/json", "application/xml"):
        schema = ok[media_type]["schema"]
        assert schema == full or full in schema["anyOf"], schema


# -- agreement with the contract copy -------------------------------------------------


def test_every_contract_schema_is_generated(document: dict[str, Any]) -> None:
    missing = set(contract()["components"]["schemas"]) - set(document["components"]["schemas"])
    assert not missing


def test_parameter_names_locations_and_required_match_the_contract(
    document: dict[str, Any],
) -> None:
    def summary(doc: dict[str, Any]) -> dict[str, tuple[str, bool]]:
        return {n: (p["in"], p.get("required", False)) for n, p in _parameters(doc).items()}

    assert summary(document) == summary(contract())


def test_no_difference_from_the_contract_outside_the_allow_list(
    document: dict[str, Any],
) -> None:
    allowed = allowed_differences()
    unexpected = [d for d in _all_differences(document) if d[0] not in allowed]
    assert not unexpected, "\n".join(
        f"{path}: contract {theirs!r}, generated {ours!r}" for path, theirs, ours in unexpected
    )


def test_no_stale_allow_list_entry(document: dict[str, Any]) -> None:
    found = {path for path, _theirs, _ours in _all_differences(document)}
    stale = sorted(set(allowed_differences()) - found)
    assert not stale, f"allow-list entries that no longer differ: {stale}"


def test_inlined_schema_equals_a_reference_to_the_same_schema(document: dict[str, Any]) -> None:
    path = "OfferingType.properties.availability_schedule_offering_types.items"
    theirs = contract()["components"]["schemas"]["OfferingType"]["properties"]
    ours = document["components"]["schemas"]["OfferingType"]["properties"]
    name = "availability_schedule_offering_types"
    assert "$ref" not in theirs[name]["items"] and "$ref" in ours[name]["items"]
    assert not list(
        schema_diff(theirs[name]["items"], ours[name]["items"], path, contract(), document)
    )


def _mutated(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``document`` with the schema keyword at dotted ``path`` set (or removed)."""
    mutated = copy.deepcopy(document)
    *parents, last = path.split(".")
    node: Any = mutated["components"]["schemas"]
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is MISSING:
        del node[last]
    else:
        node[last] = value
    return mutated


@pytest.mark.parametrize(
    ("mutation", "value", "expected"),
    [
        (
            "Venue.properties.name.maxLength",
            100,
            [("Venue.properties.name.maxLength", 200, 100)],
        ),
        (
            "Course.properties.name.type",
            "string",
            [
                ("Course.properties.name.type", ["null", "string"], ["string"]),
                ("Course.properties.name.nullable", True, False),
            ],
        ),
        (
            "Venue.properties.lat",
            MISSING,
            [("Venue.properties.lat", {"type": "number", "format": "double"}, MISSING)],
        ),
        (
            "Venue.properties.archived.x-expandable",
            True,
            [("Venue.properties.archived.x-expandable", MISSING, True)],
        ),
        (
            "CourseSession.required",
            ["id"],
            None,
        ),
        (
            "CourseSession.properties.venue.oneOf.1.$ref",
            "#/components/schemas/Course",
            None,
        ),
        (
            "AvailabilityScheduleOfferingType.properties.venue_rooms.items.type",
            "string",
            [
                (
                    "OfferingType.properties.availability_schedule_offering_types.items"
                    ".properties.venue_rooms.items.type",
                    ["integer"],
                    ["string"],
                )
            ],
        ),
        (
            "Membership.properties.one_time_fee.$ref",
            "#/components/schemas/Image",
            None,
        ),
    ],
)
def test_the_diff_finds_a_changed_generated_schema(
    document: dict[str, Any], mutation: str, value: Any, expected: list[Difference] | None
) -> None:
    before = set(map(repr, schema_differences(contract(), document)))
    mutated = _mutated(document, mutation, value)
    new = [d for d in schema_differences(contract(), mutated) if repr(d) not in before]
    if expected is None:
        owner = mutation.split(".properties.")[0].split(".required")[0]
        assert new and all(path.startswith(owner) for path, _t, _o in new), new
    else:
        assert new == expected


def test_the_diff_finds_a_stricter_parameter(document: dict[str, Any]) -> None:
    mutated = copy.deepcopy(document)
    for parameter in mutated["paths"][OPERATION_PATH]["get"]["parameters"]:
        if parameter["name"] == "Teamup-Request-Mode":
            parameter["schema"]["enum"] = ["provider"]
    before = set(map(repr, parameter_differences(contract(), document)))
    new = [d for d in parameter_differences(contract(), mutated) if repr(d) not in before]
    assert new == [
        (
            "parameters.Teamup-Request-Mode.schema.enum",
            ["customer", "provider"],
            ["provider"],
        )
    ]


# -- Swagger UI at /docs ---------------------------------------------------------------


class _References(HTMLParser):
    """Every ``src`` and ``href`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found += [value for name, value in attrs if name in ("src", "href") and value]


def _docs_references(api: Api) -> list[str]:
    response = api.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    parser = _References()
    parser.feed(response.text)
    assert "/openapi.json" in response.text
    return parser.found


def test_docs_page_references_only_local_assets(api: Api) -> None:
    references = _docs_references(api)
    assert references, "the page should load Swagger UI's assets"
    assert not [r for r in references if urlsplit(r).scheme or urlsplit(r).netloc]
    assert not re.search(r"https?://", api.get("/docs").text)
    scripts = [r for r in references if r.endswith(".js")]
    assert "/docs/assets/swagger-ui-bundle.js" in scripts


def test_docs_page_asks_no_outside_validator(api: Api) -> None:
    """Swagger UI's default validator is an outside service: opened through any host but
    localhost, the page would send it the document's address."""
    assert re.search(r"validatorUrl:\s*null", api.get("/docs").text)


def test_every_docs_asset_is_served(api: Api) -> None:
    references = _docs_references(api)
    assert all(r.startswith("/docs/assets/") for r in references), references
    for reference in references:
        response = api.get(reference)
        assert response.status_code == 200, reference
        assert len(response.content) > 100, reference
    css = api.get("/docs/assets/swagger-ui.css")
    assert css.headers["content-type"].startswith("text/css")


def _raw_get(base_url: str, target: str) -> tuple[int, bytes]:
    """GET ``target`` exactly as written (no client-side dot-segment removal)."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode()
        )
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    status = int(raw.split(b" ", 2)[1])
    return status, raw.partition(b"\r\n\r\n")[2]


OUTSIDE_ASSETS = [
    "/docs/assets/../../../../../../etc/passwd",
    "/docs/assets/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/docs/assets/..%2f..%2f..%2f..%2f..%2f..%2fetc/passwd",
    "/docs/assets/../__init__.py",
    "/docs/assets/%2e%2e/__init__.py",
    "/docs/assets//etc/passwd",
]


@pytest.mark.wire
@pytest.mark.parametrize("target", OUTSIDE_ASSETS)
def test_docs_assets_do_not_leave_their_directory(api: Api, target: str) -> None:
    status, body = _raw_get(api.base_url, target)
    assert status != 200, target
    assert b"root:" not in body and b"import" not in body and b"swagger" not in body.lower()


@pytest.mark.wire
@pytest.mark.parametrize("target", [*OUTSIDE_ASSETS, "/docs/assets/no-such-asset.js"])
def test_docs_assets_outside_or_missing_are_404(api: Api, target: str) -> None:
    status, body = _raw_get(api.base_url, target)
    assert status == 404, (target, body[:200])
