"""``docs/data-format.md`` is what the record kinds say, never a hand-made copy."""

from __future__ import annotations

from pathlib import Path

import orjson

from coursebook.datadoc import data_format, examples
from coursebook.records import KINDS, validator

PAGE = Path(__file__).parent.parent.parent / "docs" / "data-format.md"


def test_the_committed_page_is_generated_from_the_kinds() -> None:
    assert PAGE.read_text() == data_format(), (
        "docs/data-format.md is stale: run `python -m coursebook.datadoc > docs/data-format.md`"
    )


def test_every_kind_has_an_example_its_schema_admits() -> None:
    found = examples()
    assert set(found) == set(KINDS)
    for name, line in found.items():
        validator(KINDS[name])(orjson.loads(line))
