"""The field reference (``docs/fields.md``), generated from the resource graph.

``python -m coursebook.reference > docs/fields.md`` writes it; a test fails when the
committed page differs from what the graph says, so the page is never hand-copied.
"""

from __future__ import annotations

from typing import Any

from coursebook.fields import (
    Column,
    Computed,
    Constant,
    Customers,
    DateTime,
    Deferred,
    DeferredMany,
    Field,
    Relation,
    Resource,
    ToMany,
    ToOne,
)
from coursebook.graph import LISTINGS, RESOURCES
from coursebook.projection import MAX_DEPTH

INTRO = f"""# Fields

Every resource coursebook serves, its fields in the order responses write them, and
how `expand` and `fields` treat each. Generated from the resource graph
(`coursebook/graph.py`) by `python -m coursebook.reference`; do not edit by hand.

- **expandable**: `expand=name` replaces the id (or the related collection's URL) with
  the object(s); paths go {MAX_DEPTH} levels deep (`course.offering_type.category`).
- **deferred**: left out unless `expand` or `fields` names it.
- **customers**: what customer mode does (`docs/access.md`): *hidden* fields are a 400
  when asked for; *their rows only* relations keep the related objects a customer may
  see. Instructor `permissions` are written as `{{}}` in customer mode.
"""


def describe(schema: dict[str, Any]) -> str:
    """A short reading of a field's JSON Schema: its type, format, values or target."""
    if "$ref" in schema:
        return f"`{schema['$ref'].rsplit('/', 1)[1]}`"
    if "oneOf" in schema:
        branches = [b for b in schema["oneOf"] if b != {"type": "null"}]
        text = " or ".join(describe(branch) for branch in branches)
        return text + (", nullable" if len(branches) < len(schema["oneOf"]) else "")
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind else []
    words = [str(k) for k in kinds if k != "null"] or ["any"]
    text = " or ".join(words)
    if "format" in schema:
        text += f" ({schema['format']})"
    if "enum" in schema:
        text += ": " + ", ".join(f"`{value}`" for value in schema["enum"] if value is not None)
    if "items" in schema:
        text += f" of {describe(schema['items'])}"
    if "null" in kinds:
        text += ", nullable"
    return text


def value_of(field: Field) -> str:
    """What the field holds when it is not expanded."""
    match field:
        case ToOne(target=target):
            return f"the {RESOURCES[target].title} id; expanded: the `{RESOURCES[target].title}`"
        case ToMany(listing=listing, filter=spec, target=target):
            return (
                f"URL of `{listing.path}?{spec.name}={{id}}`; expanded: "
                f"`{RESOURCES[target].title}` list"
            )
        case DeferredMany(target=target):
            return f"`{RESOURCES[target].title}` list"
        case Column() | DateTime() | Computed() | Constant():
            return describe(field.schema)
    raise TypeError(f"{type(field).__name__} is not a field kind")


def kind_of(field: Field) -> str:
    match field:
        case Deferred():
            return "computed, deferred"
        case Column():
            return "column"
        case DateTime():
            return "column, in the venue's time zone"
        case Constant(value=value):
            return f"always `{value}`" if value is not None else "always null"
        case Computed():
            return "computed"
        case ToOne():
            return "to-one"
        case ToMany():
            return "to-many"
        case DeferredMany():
            return "to-many, deferred"
    raise TypeError(f"{type(field).__name__} is not a field kind")


def customers_of(field: Field) -> str:
    if not isinstance(field, Relation):
        return ""
    if field.customers is Customers.HIDDEN:
        return "hidden"
    return "their rows only" if RESOURCES[field.target].customer_rows else ""


def resource_section(resource: Resource) -> list[str]:
    lines = [f"## {resource.title}", ""]
    if resource.customer_rows:
        lines += [f"Customer mode sees only some {resource.title} rows (`docs/access.md`).", ""]
    lines += [
        "| field | value | kind | expandable | deferred | required | customers |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for field in resource.fields:
        lines.append(
            f"| `{field.name}` | {value_of(field)} | {kind_of(field)} "
            f"| {'yes' if field.expandable else ''} | {'yes' if field.deferred else ''} "
            f"| {'yes' if field.required else ''} | {customers_of(field)} |"
        )
    return [*lines, ""]


def list_section() -> list[str]:
    lines = [
        "## List endpoints",
        "",
        "| path | resource | filters | sort |",
        "| --- | --- | --- | --- |",
    ]
    for listing in LISTINGS:
        filters = ", ".join(f"`{spec.name}`" for spec in listing.filters)
        sorts = ", ".join(f"`{name}`" for name in listing.sorts)
        lines.append(f"| `{listing.path}` | {listing.resource.title} | {filters} | {sorts} |")
    return [*lines, ""]


def fields_reference() -> str:
    """The whole page."""
    lines = [INTRO]
    for resource in RESOURCES.values():
        lines += resource_section(resource)
    lines += list_section()
    return "\n".join(lines).rstrip("\n") + "\n"


if __name__ == "__main__":
    print(fields_reference(), end="")
