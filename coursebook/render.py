"""Rendering: loaded rows and a projection to the response's dict tree."""

from __future__ import annotations

from typing import Any

from coursebook.graph import RenderContext, Row
from coursebook.loader import Level
from coursebook.projection import COLUMN, MANY, ONE, Projection


def render(projection: Projection, row: Row, level: Level, ctx: RenderContext) -> dict[str, Any]:
    """One object of ``projection``'s resource, with its expanded relations nested in."""
    out: dict[str, Any] = {}
    children = level.children
    for kind, name, get, omit_if_none, key in projection.steps:
        if kind == COLUMN:
            value = row[key]
            if value is None and omit_if_none:
                continue
            out[name] = value
        elif kind == MANY:
            related = children[name]
            out[name] = [
                render(related.projection, child, related.level, ctx)
                for child in related.rows.get(row["id"], ())
            ]
        elif kind == ONE:
            related = children[name]
            target = related.rows.get(row[key])
            out[name] = (
                None if target is None else render(related.projection, target, related.level, ctx)
            )
        else:
            value = get(row, ctx)  # type: ignore[misc]
            if value is None and omit_if_none:
                continue
            out[name] = value
    return out
