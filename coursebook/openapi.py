"""The OpenAPI 3.1 document, generated from the resource graph.

Schemas come from each resource's field declarations (with ``x-expandable`` and
``x-deferred`` marks) and from the value-object schemas next to them; parameters,
headers, security and error responses come from the same modules the server runs.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson

from coursebook import __version__
from coursebook.errors import MESSAGES
from coursebook.graph import RELATED_COLLECTION, RESOURCES, VALUE_SCHEMAS, Field, Resource, ref
from coursebook.listing import (
    LISTINGS,
    MAX_IDS,
    MAX_PAGE,
    MAX_PAGE_SIZE,
    Filter,
    IdsFilter,
    Listing,
)
from coursebook.models import MAX_ID
from coursebook.projection import MAX_DEPTH

ERROR_STATUSES = ("400", "401", "403", "404", "405", "406", "429", "500", "503")


def field_schema(field: Field) -> dict[str, Any]:
    """A field's schema as the contract writes it: plain, expandable or deferred."""
    relation = field.relation
    if field.deferred:
        return {"x-deferred": True, **field.schema}
    if relation is None:
        return {"x-expandable": True, **field.schema} if field.expandable else field.schema
    target = ref(RESOURCES[relation.target].title)
    if relation.many:
        return {
            "x-expandable": True,
            "oneOf": [RELATED_COLLECTION, {"type": "array", "items": target}],
        }
    return {"x-expandable": True, "oneOf": [field.schema, target]}


def resource_schema(resource: Resource) -> dict[str, Any]:
    """The object schema of ``resource``: required list and every property."""
    return {
        "type": "object",
        "required": [f.name for f in resource.fields if f.required],
        "properties": {f.name: field_schema(f) for f in resource.fields},
    }


SELECTION = "Selection"
_RESOURCE_REFS = {f"#/components/schemas/{r.title}" for r in RESOURCES.values()}


def _to_selection(node: Any) -> Any:
    if isinstance(node, dict):
        if node.get("$ref") in _RESOURCE_REFS:
            return {**node, "$ref": node["$ref"] + SELECTION}
        return {key: _to_selection(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_to_selection(item) for item in node]
    return node


def selection_schema(resource: Resource) -> dict[str, Any]:
    """``resource`` as a ``fields`` selection answers it: any subset of its properties."""
    full = resource_schema(resource)
    return {
        "type": "object",
        "description": f"A {resource.title} with only the fields that `fields` selected.",
        "properties": _to_selection(full["properties"]),
    }


def _paths(
    resource: Resource,
    prefix: str,
    depth: int,
    seen: frozenset[tuple[str, str]],
    leaves: bool,
    excluded: frozenset[tuple[str, str]] = frozenset(),
) -> list[str]:
    """Dotted paths below ``resource``: expandable ones, or (``leaves``) every field.

    ``expand`` paths have at most ``MAX_DEPTH`` names; ``fields`` paths may add one
    plain field below the deepest expansion. A path that loads the same relation
    twice (``course.course_sessions.course.course_sessions``) is valid but not
    advertised: it repeats data already in the response and is what blows the
    expansion budget; so are the ``excluded`` relations.
    """
    found: list[str] = []
    for field in resource.fields:
        key = (resource.name, field.name)
        if key in excluded:
            continue
        path = prefix + field.name
        if leaves or ((field.expandable or field.deferred) and depth < MAX_DEPTH):
            found.append(path)
        relation = field.relation
        if relation is not None and key not in seen and depth + 1 < MAX_DEPTH + leaves:
            target = RESOURCES[relation.target]
            found += _paths(target, path + ".", depth + 1, seen | {key}, leaves, excluded)
    return found


#: Not advertised on list endpoints: a page of 100 objects each expanding a course's
#: sessions holds more objects than the expansion budget allows (it is still valid).
LIST_EXCLUDED = frozenset({("course", "course_sessions")})


def _list_parameter(name: str, description: str, values: list[str]) -> dict[str, Any]:
    """A comma-separated list of the ``values``; empty items are ignored (SEMANTICS 5)."""
    return {
        "name": name,
        "in": "query",
        "description": f"{description} Empty items are ignored.",
        "style": "form",
        "explode": False,
        "schema": {"type": "array", "items": {"type": "string", "enum": ["", *values]}},
    }


def _error_response(status: str) -> dict[str, Any]:
    description = MESSAGES[int(status)]
    return {
        "description": f"{description} (TeamUp's error body.)",
        "content": {
            "application/json": {"schema": ref("Error")},
            "application/xml": {"schema": ref("Error")},
        },
    }


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {"schema": schema},
            "application/xml": {"schema": schema},
        },
    }


HEALTH_SCHEMA = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"type": "string", "enum": ["ok"]}},
}

ERROR_SCHEMA = {
    "type": "object",
    "required": ["code", "field_errors", "message", "type"],
    "properties": {
        "code": {
            "type": "string",
            "examples": [
                "parameter_invalid",
                "not_authenticated",
                "permission_denied",
                "not_found",
            ],
        },
        "field_errors": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
        "message": {"type": "string"},
        "type": {"type": "string", "examples": ["invalid_request_error"]},
    },
}


def _shared_parameters(
    resource: Resource, excluded: frozenset[tuple[str, str]] = frozenset()
) -> list[dict[str, Any]]:
    """``expand``, ``fields``, ``format`` and the two TeamUp headers."""
    return [
        _list_parameter(
            "expand",
            "A comma-separated list of fields to expand.",
            _paths(resource, "", 0, frozenset(), leaves=False, excluded=excluded),
        ),
        _list_parameter(
            "fields",
            "A comma-separated list of fields to include. Dot-notation can be used to "
            "select nested fields.",
            _paths(resource, "", 0, frozenset(), leaves=True, excluded=excluded),
        ),
        {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "xml"]}},
        {
            "name": "TeamUp-Provider-ID",
            "in": "header",
            "description": (
                "ID of the provider account the API request is for. Required if the "
                "access credentials have access to multiple providers."
            ),
            "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
        },
        {
            "name": "Teamup-Request-Mode",
            "in": "header",
            "description": (
                "The authenticated user may have access to both staff and customer "
                "profiles. Indicate which mode that request should run in. Customer mode "
                "is more limited. Required if the access credentials have access to both "
                "modes."
            ),
            "schema": {"type": "string", "enum": ["customer", "provider"]},
        },
    ]


PERMISSIONS_NOTE = (
    "Must have one of the following permissions: manage_events, attendances, "
    "instructor_manage_events, instructor_attendances, developer."
)


def _error_refs() -> dict[str, Any]:
    return {status: {"$ref": f"#/components/responses/Error{status}"} for status in ERROR_STATUSES}


def _either(resource: Resource) -> dict[str, Any]:
    """The whole object, or (with ``fields``) the selection of it."""
    return {"anyOf": [ref(resource.title), ref(resource.title + SELECTION)]}


def _course_session_operation() -> dict[str, Any]:
    root = RESOURCES["course_session"]
    return {
        "operationId": "course_sessions_retrieve",
        "summary": "Retrieve a course session",
        "description": PERMISSIONS_NOTE,
        "security": [{"bearerAuth": []}],
        "parameters": [
            {
                "name": "id",
                "in": "path",
                "required": True,
                "description": "A unique integer value identifying this course date.",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
            },
            *_shared_parameters(root),
        ],
        "responses": {
            "200": _ok(
                "The course session; with `fields`, only the selected fields.", _either(root)
            ),
            **_error_refs(),
        },
    }


def _filter_parameter(spec: Filter) -> dict[str, Any]:
    if isinstance(spec, IdsFilter):
        return {
            "name": spec.name,
            "in": "query",
            "description": spec.description,
            "style": "form",
            "explode": False,
            "schema": {
                "type": "array",
                "maxItems": MAX_IDS,
                "items": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
            },
        }
    return {
        "name": spec.name,
        "in": "query",
        "description": spec.description,
        "schema": spec.schema,
    }


def _list_operation(listing: Listing) -> dict[str, Any]:
    resource = listing.resource
    return {
        "operationId": f"{listing.path.rsplit('/', 1)[1]}_list",
        "summary": listing.summary,
        "description": (
            f"{PERMISSIONS_NOTE} Lists only what the caller may read: an instructor-only "
            "staff profile sees the sessions it instructs, a customer the sessions visible "
            "to it. A filter naming ids the caller cannot read matches nothing."
        ),
        "security": [{"bearerAuth": []}],
        "parameters": [
            *[_filter_parameter(spec) for spec in listing.filters],
            {
                "name": "sort",
                "in": "query",
                "schema": {
                    "type": "string",
                    "enum": list(listing.sorts),
                    "default": listing.default_sort,
                },
            },
            {
                "name": "page",
                "in": "query",
                "description": "Page number, from 1. A page past the last is empty.",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1},
            },
            {
                "name": "page_size",
                "in": "query",
                "schema": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_PAGE_SIZE,
                    "default": MAX_PAGE_SIZE,
                },
            },
            *_shared_parameters(resource, LIST_EXCLUDED),
        ],
        "responses": {
            "200": _ok(
                f"A page of {resource.title} objects.",
                {
                    "type": "object",
                    "required": ["count", "next", "previous", "results"],
                    "properties": {
                        "count": {"type": "integer", "minimum": 0},
                        "next": {"type": ["string", "null"], "format": "uri"},
                        "previous": {"type": ["string", "null"], "format": "uri"},
                        "results": {"type": "array", "items": _either(resource)},
                    },
                },
            ),
            **_error_refs(),
        },
    }


def _probe(summary: str, operation_id: str, failures: tuple[str, ...]) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "security": [],
            "responses": {
                "200": _ok("The service answers.", HEALTH_SCHEMA),
                **{
                    status: {"$ref": f"#/components/responses/Error{status}"} for status in failures
                },
            },
        }
    }


def build_document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA, **VALUE_SCHEMAS}
    for resource in RESOURCES.values():
        schemas[resource.title] = resource_schema(resource)
    for resource in RESOURCES.values():
        schemas[resource.title + SELECTION] = selection_schema(resource)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Course Sessions (TeamUp API v2 compatible)",
            "version": __version__,
            "description": (
                "coursebook: the TeamUp API v2 course-session endpoints. Generated from the "
                "resource graph the server runs on."
            ),
        },
        "paths": {
            "/api/v2/course_sessions/{id}": {"get": _course_session_operation()},
            **{listing.path: {"get": _list_operation(listing)} for listing in LISTINGS.values()},
            "/healthz": _probe("The process answers.", "healthz", ("405", "406", "500")),
            "/readyz": _probe("The database answers.", "readyz", ("405", "406", "500", "503")),
        },
        "components": {
            "responses": {f"Error{status}": _error_response(status) for status in ERROR_STATUSES},
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
    }


@cache
def document_bytes() -> bytes:
    """The document as JSON, built once per process."""
    return orjson.dumps(build_document())
