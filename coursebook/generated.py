"""Functions compiled from source made at run time, with that source in tracebacks.

The renderer and the query row builders generate small functions from the resource
graph and the statements (never from request input). ``define`` compiles one under
a unique file name and registers its source with ``linecache``, as doctest and
``dataclasses`` do, so a traceback through it shows the generated lines.
"""

from __future__ import annotations

import itertools
import linecache
import weakref
from collections.abc import Callable
from typing import Any

_serial = itertools.count(1)


def define(source: str, name: str, namespace: dict[str, Any], label: str) -> Callable[..., Any]:
    """Compile ``source``, which defines the function ``name``, in ``namespace``."""
    filename = f"<coursebook {label} #{next(_serial)}>"
    lines = source.splitlines(keepends=True)
    linecache.cache[filename] = (len(source), None, lines, filename)
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - generated from the graph
    function: Callable[..., Any] = namespace[name]
    # Caches of generated functions are bounded; the source goes when its function does.
    weakref.finalize(function, linecache.cache.pop, filename, None)
    return function
