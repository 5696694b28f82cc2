"""Rendering: loaded rows and a projection to the response's dict tree.

A projection's rendering plan (one ``Step`` per field) is compiled once, when the
projection is, into a Python function that builds the object as a dict display:
no per-field loop, branch or tuple unpacking on the hot path, which renders every
object of a response (hundreds in a full expansion or a list page). A loaded
object that appears several times in one response is rendered once and shared.
The generated source reads like hand-written code (``Renderer.source`` keeps it
for debugging); only names and row keys from the resource graph go into it, never
request input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from coursebook.graph import Field, Getter, RenderContext, Row

if TYPE_CHECKING:
    from coursebook.loader import Level
    from coursebook.projection import Projection

#: How a step renders: a row's column as it is, a column through a conversion, a
#: constant, a value computed from the row, or loaded object(s).
COLUMN, CONVERT, CONSTANT, VALUE, ONE, MANY = range(6)


class Step(NamedTuple):
    """One field of a rendering plan."""

    kind: int
    name: str
    get: Getter | None
    omit_if_none: bool
    key: str | None
    convert: Callable[[Any], Any] | None = None
    constant: Any = None


def plan_step(field: Field, loaded: bool) -> Step:
    """How ``field`` renders: its loaded object(s), its column, a constant or its getter."""
    relation = field.relation
    if loaded:
        assert relation is not None
        return Step(MANY if relation.many else ONE, field.name, None, False, relation.key)
    if field.constant is not None:
        return Step(CONSTANT, field.name, None, False, None, constant=field.constant)
    if field.column is None:
        return Step(VALUE, field.name, field.get, field.omit_if_none, None)
    kind = COLUMN if field.convert is None else CONVERT
    return Step(kind, field.name, None, field.omit_if_none, field.column, field.convert)


RenderFunction = Callable[[Row, "Level", RenderContext], dict[str, Any]]

ONCE = "_render_once"


def _render_once(
    done: dict[Any, Any],
    key: Any,
    row: Row | None,
    function: RenderFunction,
    level: Level,
    ctx: RenderContext,
) -> dict[str, Any] | None:
    """Render a related object the first time it appears; ``done`` keeps it for the rest.

    An object related to many others (a list page's venues and instructors) is the
    same wherever it appears in a response, so it is rendered once and shared.
    """
    rendered = done[key] = None if row is None else function(row, level, ctx)
    return rendered


@dataclass(frozen=True, slots=True)
class Renderer:
    """A compiled rendering plan: ``function(row, level, ctx)`` and its source."""

    function: RenderFunction
    source: str


def compile_renderer(steps: Sequence[Step], children: dict[str, Renderer]) -> Renderer:
    """Compile ``steps`` into a function; ``children`` renders each loaded relation."""
    namespace: dict[str, Any] = {}

    def bind(value: Any) -> str:
        name = f"_{len(namespace)}"
        namespace[name] = value
        return name

    prelude: list[str] = []  # the loaded relations, looked up once per call
    body: list[str] = []
    display: list[str] = []  # the leading unconditional fields, as one dict display
    started = False  # once a field is conditional, the rest are assignments in order

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

    for step in steps:
        name = step.name
        if step.kind == CONSTANT:
            put(name, bind(step.constant))
        elif step.kind in (COLUMN, CONVERT):
            value = f"row[{step.key!r}]"
            if step.kind == CONVERT:
                convert = bind(step.convert)
                if step.omit_if_none:
                    begin()
                    body.append(
                        f"    if (value := {value}) is not None: out[{name!r}] = {convert}(value)"
                    )
                else:
                    put(name, f"(None if (value := {value}) is None else {convert}(value))")
            elif step.omit_if_none:
                begin()
                body.append(f"    if (value := {value}) is not None: out[{name!r}] = value")
            else:
                put(name, value)
        elif step.kind == VALUE:
            call = f"{bind(step.get)}(row, ctx)"
            if step.omit_if_none:
                begin()
                body.append(f"    if (value := {call}) is not None: out[{name!r}] = value")
            else:
                put(name, call)
        else:
            child = bind(children[name].function)
            index = len(prelude) // 2
            prelude.append(f"    related = children[{name!r}]")
            prelude.append(
                f"    rows{index}, level{index}, done{index} = "
                "related.rows, related.level, related.rendered"
            )
            done = f"done{index}"
            if step.kind == MANY:
                put(
                    name,
                    f"[{done}[item['id']] if item['id'] in {done} else "
                    f"{ONCE}({done}, item['id'], item, {child}, level{index}, ctx) "
                    f"for item in rows{index}.get(row['id'], ())]",
                )
            else:
                put(
                    name,
                    f"({done}[key] if (key := row[{step.key!r}]) in {done} else "
                    f"{ONCE}({done}, key, rows{index}.get(key), {child}, level{index}, ctx))",
                )
    begin()
    source = "\n".join(
        [
            "def render(row, level, ctx):",
            *(["    children = level.children", *prelude] if prelude else []),
            *body,
            "    return out",
        ]
    )
    namespace[ONCE] = _render_once
    exec(compile(source, "<renderer>", "exec"), namespace)  # noqa: S102 - graph-made source
    return Renderer(namespace["render"], source)


def render(projection: Projection, row: Row, level: Level, ctx: RenderContext) -> dict[str, Any]:
    """One object of ``projection``'s resource, with its expanded relations nested in."""
    return projection.renderer.function(row, level, ctx)
