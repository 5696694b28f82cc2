"""``docs/fields.md`` is what the resource graph says, never a hand-made copy."""

from __future__ import annotations

from pathlib import Path

from coursebook.graph import RESOURCES
from coursebook.reference import describe, fields_reference

PAGE = Path(__file__).parent.parent.parent / "docs" / "fields.md"


def test_the_committed_page_is_generated_from_the_graph() -> None:
    assert PAGE.read_text() == fields_reference(), (
        "docs/fields.md is stale: run `python -m coursebook.reference > docs/fields.md`"
    )


def test_every_field_of_every_resource_is_on_the_page() -> None:
    page = fields_reference()
    for resource in RESOURCES.values():
        section = page.split(f"## {resource.title}\n", 1)[1].split("\n## ", 1)[0]
        for field in resource.fields:
            assert f"| `{field.name}` |" in section, f"{resource.title}.{field.name}"


def test_hidden_and_deferred_fields_are_marked() -> None:
    instructor = fields_reference().split("## Instructor\n", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in instructor.splitlines() if "`availability_schedules`" in line)
    assert "| to-many, deferred |" in row and row.endswith("| hidden |")


def test_schemas_read_as_short_phrases() -> None:
    assert describe({"type": ["integer", "null"]}) == "integer, nullable"
    assert describe({"type": "string", "format": "date-time"}) == "string (date-time)"
    assert describe({"type": "string", "enum": ["a", "b"]}) == "string: `a`, `b`"
    assert describe({"oneOf": [{"type": "null"}, {"$ref": "#/x/Image"}]}) == "`Image`, nullable"
    assert describe({"type": "array", "items": {"type": "integer"}}) == "array of integer"
