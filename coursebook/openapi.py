"""The OpenAPI 3.1 document, generated from the resource graph.

Schemas come from each resource's field declarations (with ``x-expandable`` and
``x-deferred`` marks) and from the value-object schemas next to them; parameters,
headers, security and error responses come from the same modules the server runs.
"""

from __future__ import annotations

from functools import cache
from typing import Any, assert_never

import orjson

from coursebook import __version__
from coursebook.errors import MESSAGES
from coursebook.fields import (
    RELATED_COLLECTION,
    STR,
    Field,
    Filter,
    IdsFilter,
    Listing,
    Relation,
    Resource,
    ValueFilter,
    enum_schema,
    ref,
)
from coursebook.graph import RESOURCES, VALUE_SCHEMAS
from coursebook.ids import ID
from coursebook.listing import LAST_PAGE, MAX_PAGE_SIZE, ME, PAGE, PAGE_SIZE, SORT
from coursebook.projection import MAX_DEPTH
from coursebook.routes import IGNORED_PARAMETERS, ROUTES, Document, ListOf, Probe, Retrieve, Route
from coursebook.values import MAX_IDS

ERROR_STATUSES = ("400", "401", "403", "404", "405", "406", "429", "500", "503")


def field_schema(field: Field) -> dict[str, Any]:
    """A field's schema as the contract writes it: plain, expandable or deferred."""
    if field.deferred:
        return {"x-deferred": True, **field.schema}
    if not isinstance(field, Relation):
        return {"x-expandable": True, **field.schema} if field.expandable else field.schema
    target = ref(RESOURCES[field.target].title)
    if field.many:
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
        if isinstance(field, Relation) and key not in seen and depth + 1 < MAX_DEPTH + leaves:
            target = RESOURCES[field.target]
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


#: The response header every answer of a route may carry (``routes.ignored_parameters``).
IGNORED_PARAMETERS_HEADER = {
    IGNORED_PARAMETERS: {
        "description": (
            "The query parameters this route ignored, sorted, percent-encoded and "
            "separated by `, ` (TeamUp ignores unknown parameters without a word)."
        ),
        "schema": {"type": "string", "examples": ["cours, ordering"]},
    }
}


def _error_response(status: str, description: str | None = None) -> dict[str, Any]:
    description = description or MESSAGES[int(status)]
    return {
        "description": f"{description} (TeamUp's error body.)",
        "headers": IGNORED_PARAMETERS_HEADER,
        "content": {
            "application/json": {"schema": ref("Error")},
            "application/xml": {"schema": ref("Error")},
        },
    }


ETAG_HEADER = {
    "description": "A strong entity tag of this representation: send it back in "
    "If-None-Match, and an unchanged answer is 304 with no body.",
    "schema": {"type": "string", "pattern": '^"[0-9a-f]{32}"$'},
}
PRIVATE_HEADERS = {
    "Cache-Control": {
        "description": "private: the answer is the caller's; no shared cache keeps it.",
        "schema": {"type": "string", "enum": ["private"]},
    },
    "Vary": {
        "description": "The request headers the answer depends on.",
        "schema": {"type": "string"},
    },
}


def _ok(description: str, schema: dict[str, Any], *, private: bool = False) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {
            "ETag": ETAG_HEADER,
            **(PRIVATE_HEADERS if private else {}),
            **IGNORED_PARAMETERS_HEADER,
        },
        "content": {
            "application/json": {"schema": schema},
            "application/xml": {"schema": schema},
        },
    }


NOT_MODIFIED = {"$ref": "#/components/responses/NotModified"}


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
    """The 304 of a conditional request and every error answer."""
    return {
        "304": NOT_MODIFIED,
        **{status: {"$ref": f"#/components/responses/Error{status}"} for status in ERROR_STATUSES},
    }


def _either(resource: Resource) -> dict[str, Any]:
    """The whole object, or (with ``fields``) the selection of it."""
    return {"anyOf": [ref(resource.title), ref(resource.title + SELECTION)]}


def _retrieve_operation(route: Route, retrieve: Retrieve) -> dict[str, Any]:
    root = retrieve.resource
    return {
        "operationId": route.name,
        "summary": retrieve.summary,
        "description": PERMISSIONS_NOTE,
        "security": [{"bearerAuth": []}],
        "parameters": [
            *[
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "description": retrieve.id_description,
                    "schema": convertor.schema,
                }
                for name, convertor in route.convertors.items()
            ],
            *_shared_parameters(root),
        ],
        "responses": {
            "200": _ok(
                f"The {root.name.replace('_', ' ')}; with `fields`, only the selected fields.",
                _either(root),
                private=True,
            ),
            **_error_refs(),
        },
    }


def _ids_schema(spec: IdsFilter) -> dict[str, Any]:
    """An id filter's ids; ``me`` too where the filter declares it."""
    items = ID.schema if spec.me is None else {"anyOf": [ID.schema, enum_schema(ME)]}
    return {"type": "array", "maxItems": MAX_IDS, "items": items}


def _filter_parameter(spec: Filter) -> dict[str, Any]:
    """A filter as a query parameter; an array is comma-separated, and every filter given
    with an empty value is absent."""
    schema = _ids_schema(spec) if isinstance(spec, IdsFilter) else spec.schema
    parameter: dict[str, Any] = {
        "name": spec.name,
        "in": "query",
        "description": f"{spec.description} Empty: no filter.",
        "schema": schema,
    }
    if schema.get("type") == "array":
        parameter.update(style="form", explode=False)
    if isinstance(spec, ValueFilter) and spec.deprecated:
        parameter["deprecated"] = True
    return parameter


PAGE_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": PAGE,
        "in": "query",
        "description": (
            f"Page number, from 1, or `{LAST_PAGE}`. A page that is no integer, below 1 or "
            "past the last is 404 `Invalid page.`; an empty list has one page, empty."
        ),
        "schema": {
            "anyOf": [{"type": "integer", "minimum": 1}, enum_schema(LAST_PAGE, "")],
            "default": 1,
        },
    },
    {
        "name": PAGE_SIZE,
        "in": "query",
        "description": (
            f"Results per page, at most {MAX_PAGE_SIZE}: a larger one is {MAX_PAGE_SIZE}, "
            f"and any other value (no integer, 0, negative) the default, {MAX_PAGE_SIZE}."
        ),
        "schema": {
            "anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE}, STR],
            "default": MAX_PAGE_SIZE,
        },
    },
]


def _list_operation(route: Route, listing: Listing) -> dict[str, Any]:
    resource = listing.resource
    return {
        "operationId": route.name,
        "summary": listing.summary,
        "description": (
            f"{PERMISSIONS_NOTE} Lists only what the caller may read: an instructor-only "
            "staff profile sees the sessions it instructs, a customer the sessions visible "
            "to it. A filter naming ids the caller cannot read matches nothing. Pages are "
            "Django REST framework's: `next` and `previous` keep every query parameter of "
            "the request, sorted by name and percent-encoded."
        ),
        "security": [{"bearerAuth": []}],
        "parameters": [
            *[_filter_parameter(spec) for spec in listing.filters],
            {
                "name": SORT,
                "in": "query",
                "description": "The order of the results. Empty: the default.",
                "schema": {
                    "type": "string",
                    "enum": ["", *listing.sorts],
                    "default": listing.default_sort,
                },
            },
            *PAGE_PARAMETERS,
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
                private=True,
            ),
            **_error_refs(),
            "404": _error_response("404", "Invalid page: `page` is no page of the list."),
        },
    }


def _probe(route: Route, probe: Probe) -> dict[str, Any]:
    failures = ("405", "406", "500", "503") if probe.database else ("405", "406", "500")
    return {
        "operationId": route.name,
        "summary": probe.summary,
        "security": [],
        "responses": {
            "200": _ok("The service answers.", HEALTH_SCHEMA),
            "304": NOT_MODIFIED,
            **{status: {"$ref": f"#/components/responses/Error{status}"} for status in failures},
        },
    }


def _operation(route: Route) -> dict[str, Any] | None:
    """The GET operation documenting ``route``; None for the documents about the API."""
    endpoint = route.endpoint
    match endpoint:
        case Retrieve():
            return _retrieve_operation(route, endpoint)
        case ListOf(listing=listing):
            return _list_operation(route, listing)
        case Probe():
            return _probe(route, endpoint)
        case Document():
            return None
        case _:
            assert_never(endpoint)


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
            route.path_format: {"get": operation}
            for route in ROUTES
            if (operation := _operation(route)) is not None
        },
        "components": {
            "responses": {
                "NotModified": {
                    "description": "Not Modified: the If-None-Match header names the current "
                    "entity tag. No body.",
                    "headers": {"ETag": ETAG_HEADER, **IGNORED_PARAMETERS_HEADER},
                },
                **{f"Error{status}": _error_response(status) for status in ERROR_STATUSES},
            },
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
    }


@cache
def document_bytes() -> bytes:
    """The document as JSON, built once per process."""
    return orjson.dumps(build_document())
