"""Rendering: a projection and its loaded rows to the response's dict tree.

A projection's rendering plan (one ``Step`` per field, from the field's kind) is
compiled once into a Python function that builds the object as a dict display: no
per-field loop, branch or tuple unpacking on the hot path, which renders every
object of a response (hundreds in a full expansion or a list page). Rendering keeps
those functions, by projection, and, per response, the objects it has rendered: a
loaded object that appears several times in one response is rendered once and
shared. The generated source reads like hand-written code (``Renderer.source``);
only names and row keys from the resource graph go into it, never request input,
and tracebacks show it (``generated.define``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from coursebook.fields import (
    ZONE,
    Column,
    Computed,
    Constant,
    DateTime,
    Field,
    Relation,
    RenderContext,
    Row,
    ToMany,
    ToOne,
)
from coursebook.generated import define
from coursebook.loader import Loaded
from coursebook.projection import Projection
from coursebook.values import local_datetime


class Kind(enum.Enum):
    """How a step renders."""

    COLUMN = "the row's column as it is"
    DATE_TIME = "the row's date-time column in its zone"
    CONSTANT = "a constant"
    VALUE = "a value computed from the row"
    COLLECTION = "a related collection's URL"
    ONE = "a loaded object"
    MANY = "loaded objects"


class Step(NamedTuple):
    """One field of a rendering plan."""

    kind: Kind
    name: str
    omit_if_none: bool = False
    #: The row key read (column, date-time column, to-one key).
    key: str | None = None
    #: The date-time writer, getter, constant or collection path prefix.
    value: Any = None


def plan_step(field: Field, loaded: bool) -> Step:
    """How ``field`` renders: its loaded object(s), its column, a constant or its getter."""
    name, omit = field.name, field.omit_if_none
    match field:
        case ToOne(key=key) if loaded:
            return Step(Kind.ONE, name, key=key)
        case Relation() if loaded:
            return Step(Kind.MANY, name)
        case Constant(value=value):
            return Step(Kind.CONSTANT, name, value=value)
        case Column(column=column) | ToOne(key=column):
            return Step(Kind.COLUMN, name, omit, column)
        case DateTime(column=column):
            return Step(Kind.DATE_TIME, name, omit, column, local_datetime)
        case ToMany():
            return Step(Kind.COLLECTION, name, value=f"{field.listing.path}?{field.filter.name}=")
        case Computed(get=get):
            return Step(Kind.VALUE, name, omit, value=get)
    raise TypeError(f"{name}: a {type(field).__name__} renders only when loaded")


#: A per-response binding of one level's loaded relations: for each, its rows, the
#: binding of the level below, and the objects rendered so far (by id).
Bound = tuple[tuple[dict[Any, Any], "Bound", dict[Any, Any]], ...]
RenderFunction = Callable[[Row, Bound, RenderContext], dict[str, Any]]

ONCE = "_render_once"


def _render_once(
    done: dict[Any, Any],
    key: Any,
    row: Row | None,
    function: RenderFunction,
    bound: Bound,
    ctx: RenderContext,
) -> dict[str, Any] | None:
    """Render a related object the first time it appears; ``done`` keeps it for the rest.

    An object related to many others (a list page's venues and instructors) is the
    same wherever it appears in a response, so it is rendered once and shared.
    """
    rendered = done[key] = None if row is None else function(row, bound, ctx)
    return rendered


class Renderer(NamedTuple):
    """A compiled rendering plan: ``function(row, bound, ctx)`` and its source."""

    function: RenderFunction
    source: str


def compile_renderer(projection: Projection) -> Renderer:
    """Compile ``projection``'s plan (and its loaded relations') into a function."""
    loaded = {relation.name for relation, _child in projection.children}
    children = {relation.name: renderer(child) for relation, child in projection.children}
    steps = [plan_step(field, field.name in loaded) for field in projection.fields]
    namespace: dict[str, Any] = {ONCE: _render_once}

    def bind(value: Any) -> str:
        name = f"_{len(namespace)}"
        namespace[name] = value
        return name

    body: list[str] = []
    display: list[str] = []  # the leading unconditional fields, as one dict display
    started = False  # once a field is conditional, the rest are assignments in order
    indexes = {name: index for index, name in enumerate(children)}

    def put(name: str, expression: str) -> None:
        if started:
            body.append(f"    out[{name!r}] = {expression}")
        else:
            display.append(f"        {name!r}: {expression},")

    def begin() -> None:
        nonlocal started
        if not started:
            body.append("    out = {")
            body.extend(display)
            body.append("    }")
            started = True

    def put_or_omit(step: Step, expression: str) -> None:
        if step.omit_if_none:
            begin()
            body.append(f"    if (value := {expression}) is not None: out[{step.name!r}] = value")
        else:
            put(step.name, expression)

    for step in steps:
        name = step.name
        match step.kind:
            case Kind.CONSTANT:
                put(name, bind(step.value))
            case Kind.COLUMN:
                put_or_omit(step, f"row[{step.key!r}]")
            case Kind.DATE_TIME:
                # A date-time is written in the zone its resource's rows carry.
                written = f"{bind(step.value)}(value, row[{ZONE!r}])"
                if step.omit_if_none:
                    begin()
                    test = f"(value := row[{step.key!r}]) is not None"
                    body.append(f"    if {test}: out[{name!r}] = {written}")
                else:
                    put(name, f"(None if (value := row[{step.key!r}]) is None else {written})")
            case Kind.VALUE:
                put_or_omit(step, f"{bind(step.value)}(row, ctx)")
            case Kind.COLLECTION:
                put(name, f"f\"{{ctx.base_url}}{{{bind(step.value)}}}{{row['id']}}\"")
            case Kind.MANY:
                index = indexes[name]
                child, done = bind(children[name].function), f"done{index}"
                put(
                    name,
                    f"[{done}[item['id']] if item['id'] in {done} else "
                    f"{ONCE}({done}, item['id'], item, {child}, bound{index}, ctx) "
                    f"for item in rows{index}.get(row['id'], ())]",
                )
            case Kind.ONE:
                index = indexes[name]
                child, done = bind(children[name].function), f"done{index}"
                put(
                    name,
                    f"({done}[key] if (key := row[{step.key!r}]) in {done} else "
                    f"{ONCE}({done}, key, rows{index}.get(key), {child}, bound{index}, ctx))",
                )
    begin()
    unpack = ", ".join(f"(rows{i}, bound{i}, done{i})" for i in range(len(children)))
    function_name = f"render_{projection.resource.name}"
    source = "\n".join(
        [
            f"def {function_name}(row, bound, ctx):",
            *([f"    {unpack}, = bound"] if children else []),
            *body,
            "    return out",
        ]
    )
    function: RenderFunction = define(source, function_name, namespace, "renderer")
    return Renderer(function, source)


#: Compiled renderers by projection (compared by identity; projections are cached).
_renderers: dict[Projection, Renderer] = {}
MAX_RENDERERS = 4096


def renderer(projection: Projection) -> Renderer:
    """``projection``'s compiled renderer, compiled on first use."""
    found = _renderers.get(projection)
    if found is None:
        if len(_renderers) >= MAX_RENDERERS:
            _renderers.clear()
        found = _renderers[projection] = compile_renderer(projection)
    return found


def _bind(level: tuple[Loaded, ...]) -> Bound:
    """A fresh binding of ``level``: nothing rendered yet."""
    return tuple([(rows, _bind(children) if children else (), {}) for rows, children in level])


def render(
    projection: Projection, rows: Sequence[Row], level: tuple[Loaded, ...], ctx: RenderContext
) -> list[dict[str, Any]]:
    """``rows`` of ``projection``'s resource, with their loaded relations nested in.

    One call is one response: an object related to several of ``rows`` is rendered
    once and shared.
    """
    function = renderer(projection).function
    bound = _bind(level)
    return [function(row, bound, ctx) for row in rows]


def render_one(
    projection: Projection, row: Row, level: tuple[Loaded, ...], ctx: RenderContext
) -> dict[str, Any]:
    """``row`` of ``projection``'s resource alone: ``render`` of one row."""
    return renderer(projection).function(row, _bind(level) if level else (), ctx)
