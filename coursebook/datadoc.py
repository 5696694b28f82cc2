"""The data-format reference (``docs/data-format.md``), generated from the record kinds.

``python -m coursebook.datadoc > docs/data-format.md`` writes it: each kind's JSON
Schema as ``records.py`` derives it, and an example record exported from the demo
dataset (seed 42, in a scratch SQLite file). A test fails when the committed page
differs, so neither the schemas nor the examples are ever copied by hand.
"""

from __future__ import annotations

import io
import json
import tempfile

import orjson

from coursebook import demo, migrate
from coursebook.db import create_db_engine
from coursebook.records import KINDS
from coursebook.transfer import export

INTRO = """# Data format

The records `coursebook export` writes and `coursebook import` reads (`docs/data.md`
explains the commands). Generated from the record kinds (`coursebook/records.py`) by
`python -m coursebook.datadoc`; do not edit by hand.

A file is newline-delimited JSON in UTF-8: one object a line, each with its `object`
(TeamUp's object name) and its `id`. Fields are named and typed as the API serves
them, and a reference is the id of another record, in the file or already among the
provider's data. Each schema below is derived from the table the kind fills (types,
lengths, nullability, defaults) and from the resource graph's schema of the same
field (enums, ranges, descriptions). A key with a `default` may be left out.
Differences from the API's responses:

- instants are RFC 3339 with any offset; an export writes them in UTC (`Z`);
- to-many references (a session's `instructors`) are lists of ids, not URLs, and a
  record's list is the whole set;
- amounts are decimal strings, as the API's `dropin_price` (`"14.00"`);
- counts the database keeps (`attending_count`, `active_member_count`) come from the
  file's attendances and customer memberships where there are any, else as given;
- tokens are never part of a file.

Kinds, in the order an export writes them:
"""


def examples() -> dict[str, bytes]:
    """The first record of each kind in the demo's main provider's export."""
    out = io.BytesIO()
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{directory}/demo.sqlite3"
        migrate.upgrade(url)
        engine = create_db_engine(url)
        demo.generate(engine, seed=42, scale="small", progress=False)
        export(engine, 1, out)
        engine.dispose()
    found: dict[str, bytes] = {}
    for line in out.getvalue().splitlines():
        found.setdefault(orjson.loads(line)["object"], line)
    return found


def data_format() -> str:
    """The whole page."""
    shown = examples()
    lines = [INTRO]
    lines += [f"- [`{name}`](#{name})" for name in KINDS]
    lines.append("")
    for name, kind in KINDS.items():
        lines += [f"## {name}", "", kind.description, ""]
        if name in shown:
            pretty = json.dumps(orjson.loads(shown[name]), indent=2, ensure_ascii=False)
            lines += ["Example (one line in a file):", "", "```json", pretty, "```", ""]
        schema = json.dumps(kind.schema, indent=2, ensure_ascii=False)
        lines += ["Schema:", "", "```json", schema, "```", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


if __name__ == "__main__":
    print(data_format(), end="")
