"""Stages import in request order: a later stage may import an earlier one, never the
reverse (``TYPE_CHECKING`` imports, for annotations, are not counted)."""

from __future__ import annotations

import ast
from pathlib import Path

import coursebook

PACKAGE = Path(coursebook.__file__).parent

#: The package's modules, each allowed to import only those before it.
ORDER = [
    "__init__",
    "settings",
    "metrics",
    "models",
    "migrate",
    "errors",
    "ids",
    "values",
    "generated",
    "query",
    "db",
    "memo",
    "tokens",
    "accounts",
    "auth",
    "fields",
    "graph",
    "access",
    "projection",
    "loader",
    "render",
    "listing",
    "service",
    "routes",
    "formats",
    "openapi",
    "reference",
    "ratelimit",
    "accesslog",
    "hosts",
    "protocol",
    "drain",
    "app",
    "demo",
    "records",
    "transfer",
    "source",
    "mirror",
    "datadoc",
    "cli",
]
#: The request path itself, in the order a request takes it.
STAGES = ["graph", "projection", "loader", "render", "service", "app"]


def imports(module: str) -> set[str]:
    """The package modules ``module`` imports at run time."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found: set[str] = set()
    for node in tree.body:  # top level only: an ``if TYPE_CHECKING:`` block is skipped
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "coursebook":
                found.update(alias.name for alias in node.names if alias.name in ORDER)
            elif node.module.startswith("coursebook."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(
                alias.name.split(".")[1]
                for alias in node.names
                if alias.name.startswith("coursebook.")
            )
    return found


def test_every_module_is_placed_in_the_order() -> None:
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    assert modules == set(ORDER)


def test_modules_import_only_earlier_modules() -> None:
    backwards = [
        f"{module} imports {imported}"
        for position, module in enumerate(ORDER)
        for imported in imports(module)
        if ORDER.index(imported) >= position
    ]
    assert backwards == []


def test_the_request_path_runs_in_order() -> None:
    positions = [ORDER.index(stage) for stage in STAGES]
    assert positions == sorted(positions)
    for earlier, later in zip(STAGES, STAGES[1:], strict=False):
        assert later not in imports(earlier)
