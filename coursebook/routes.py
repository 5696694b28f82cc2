"""The route table: every path the service answers, declared once.

In the spirit of starlette's ``Route``, ``compile_path`` and ``url_path_for``: a route
is a path template (``/api/v2/course_sessions/{id:id}``, the part after the colon
naming its converter), a name and the endpoint it serves. The table drives routing
(``ROUTES.match``), the OpenAPI document's paths (``openapi.py`` walks it) and links
(``url_path_for``). A list endpoint's route is made from its ``Listing``, whose path
also builds related-collection URLs and page links, so that path is written once.

Every route answers with and without a trailing slash, and tolerates a doubled slash
between segments, as TeamUp's own documentation writes ``/api/v2//course_sessions/``.

Each endpoint knows the query parameters it reads (a list endpoint, from its
``Listing``); any other is ignored, as TeamUp ignores it, and named to the client by
``ignored_parameters``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from coursebook.fields import Listing, Resource
from coursebook.graph import COURSE_SESSION, LISTINGS
from coursebook.ids import ID, IdConvertor
from coursebook.listing import list_parameters

CONVERTORS: dict[str, IdConvertor] = {"id": ID}
PARAMETER = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*):([a-zA-Z_]+)}")

#: The response header naming the query parameters a route ignored (TeamUp ignores them
#: unannounced).
IGNORED_PARAMETERS = "Coursebook-Ignored-Parameters"
#: Read on every route, by the transport: the answer's format.
EVERY_ROUTE = frozenset({"format"})
#: Read by every endpoint answering with objects: the projection's ``expand`` and ``fields``.
OBJECTS = EVERY_ROUTE | {"expand", "fields"}


@dataclass(frozen=True)
class Retrieve:
    """One object of ``resource``, by id."""

    resource: Resource
    summary: str
    id_description: str
    parameters: frozenset[str] = field(default=OBJECTS, init=False)


@dataclass(frozen=True)
class ListOf:
    """A page of a list endpoint."""

    listing: Listing
    parameters: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", OBJECTS | list_parameters(self.listing))


@dataclass(frozen=True)
class Probe:
    """A health probe: the process answers, or (``database``) the database does too."""

    database: bool
    summary: str
    parameters: frozenset[str] = field(default=EVERY_ROUTE, init=False)


@dataclass(frozen=True)
class Document:
    """A fixed document about the API (the OpenAPI document, Swagger UI)."""

    kind: str
    parameters: frozenset[str] = field(default=EVERY_ROUTE, init=False)


Endpoint = Retrieve | ListOf | Probe | Document


def ignored_parameters(endpoint: Endpoint, query: Mapping[str, list[str]]) -> str | None:
    """The query parameters ``endpoint`` does not read, sorted, percent-encoded (a name is
    the client's text, and may hold anything) and joined by ``, ``; None when it reads
    them all."""
    unknown = query.keys() - endpoint.parameters
    if not unknown:
        return None
    return ", ".join(quote(name, safe="") for name in sorted(unknown))


def compile_path(template: str) -> tuple[re.Pattern[str], str, dict[str, IdConvertor]]:
    """``template``'s regular expression, its format (``{name}`` placeholders) and
    converters by parameter name."""
    pattern, path_format, convertors = "^", "", {}
    end = 0
    for found in PARAMETER.finditer(template):
        name, kind = found.groups()
        if kind not in CONVERTORS:
            raise ValueError(f"{template}: unknown converter '{kind}'")
        literal = template[end : found.start()]
        pattern += _literal(literal) + f"(?P<{name}>{CONVERTORS[kind].regex})"
        path_format += literal + "{" + name + "}"
        convertors[name] = CONVERTORS[kind]
        end = found.end()
    tail = template[end:].rstrip("/")
    pattern += _literal(tail) + "/?$"
    return re.compile(pattern), path_format + tail, convertors


def _literal(text: str) -> str:
    return re.escape(text).replace("/", "/+")


@dataclass(frozen=True)
class Route:
    """A path template, its name (the OpenAPI ``operationId``) and its endpoint."""

    path: str
    name: str
    endpoint: Endpoint
    pattern: re.Pattern[str] = field(init=False, repr=False)
    path_format: str = field(init=False, repr=False)
    convertors: dict[str, IdConvertor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        pattern, path_format, convertors = compile_path(self.path)
        object.__setattr__(self, "pattern", pattern)
        object.__setattr__(self, "path_format", path_format)
        object.__setattr__(self, "convertors", convertors)

    def convert(self, raw: dict[str, str]) -> dict[str, Any]:
        """The parameters through their converters; ``ValueError`` for one that is not valid."""
        if not raw:
            return raw
        return {name: self.convertors[name].convert(value) for name, value in raw.items()}

    def url_path_for(self, **params: Any) -> str:
        """This route's path with ``params`` filled in."""
        if set(params) != set(self.convertors):
            raise KeyError(f"{self.name} takes {sorted(self.convertors)}, not {sorted(params)}")
        values = {name: self.convertors[name].to_string(value) for name, value in params.items()}
        return self.path_format.format(**values)


class Router:
    """The route table, matched in order."""

    def __init__(self, routes: tuple[Route, ...]) -> None:
        self.routes = routes
        names = [route.name for route in routes]
        if len(set(names)) != len(names):
            raise ValueError(f"route names repeat: {names}")

    def __iter__(self) -> Iterator[Route]:
        return iter(self.routes)

    def match(self, path: str) -> tuple[Route, dict[str, str]] | None:
        """The first route ``path`` matches, with its raw parameters."""
        for route in self.routes:
            found = route.pattern.match(path)
            if found is not None:
                return route, found.groupdict()
        return None

    def url_path_for(self, name: str, **params: Any) -> str:
        """The path of the route called ``name`` with ``params`` filled in."""
        for route in self.routes:
            if route.name == name:
                return route.url_path_for(**params)
        raise KeyError(f"no route is called {name!r}")


def list_route(listing: Listing) -> Route:
    """The route of a list endpoint, at its listing's path."""
    return Route(listing.path, f"{listing.name}_list", ListOf(listing))


ROUTES = Router(
    (
        Route(
            "/api/v2/course_sessions/{id:id}",
            "course_sessions_retrieve",
            Retrieve(
                COURSE_SESSION,
                "Retrieve a course session",
                "A unique integer value identifying this course date.",
            ),
        ),
        *(list_route(listing) for listing in LISTINGS),
        Route("/healthz", "healthz", Probe(database=False, summary="The process answers.")),
        Route("/readyz", "readyz", Probe(database=True, summary="The database answers.")),
        Route("/openapi.json", "openapi", Document("openapi")),
        Route("/docs", "docs", Document("docs")),
    )
)
