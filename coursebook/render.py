"""Rendering: loaded rows and a projection to the response's dict tree."""

from __future__ import annotations

from typing import Any

from coursebook.graph import RenderContext, Row
from coursebook.loader import Level
from coursebook.projection import Projection


def render(projection: Projection, row: Row, level: Level, ctx: RenderContext) -> dict[str, Any]:
    """One object of ``projection``'s resource, with its expanded relations nested in."""
    out: dict[str, Any] = {}
    children = level.children
    for field in projection.fields:
        related = children.get(field.name)
        if related is not None:
            if related.many:
                out[field.name] = [
                    render(related.projection, child, related.level, ctx)
                    for child in related.rows.get(row["id"], ())
                ]
                continue
            assert field.relation is not None and field.relation.key is not None
            target = related.rows.get(row[field.relation.key])
            out[field.name] = (
                None if target is None else render(related.projection, target, related.level, ctx)
            )
            continue
        assert field.get is not None
        value = field.get(row, ctx)
        if value is None and field.omit_if_none:
            continue
        out[field.name] = value
    return out
