"""What writing date-times in their venue's zone costs the renderer.

Times, in process and without a database, rendering one plain course session (two
date-times) and a page of 200, with the date-times as SQLite gives them back (naive,
in UTC) and as PostgreSQL does (aware), each row carrying its zone as the statement
selects it. The best of five runs, per call.

    python -m bench.render_datetimes [N]
"""

from __future__ import annotations

import sys
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from coursebook.fields import RenderContext
from coursebook.projection import compile_projection
from coursebook.render import render, render_one

CTX = RenderContext("http://testserver")


def session_row(aware: bool) -> dict[str, Any]:
    tz = UTC if aware else None
    return {
        "id": 5,
        "course_name": "Yoga",
        "starts_at": datetime(2026, 6, 2, 9, 30, 12, 345678, tzinfo=tz),
        "ends_at": datetime(2026, 6, 2, 10, 30, tzinfo=tz),
        "status": "active",
        "attending_count": 3,
        "max_occupancy": None,
        "venue_id": 7,
        "course_id": 8,
        "provider_id": 1,
        "provider_slug": "studio",
        "zone": "Europe/London",
    }


def best_us(calls: int, call: Callable[[], Any]) -> float:
    """The fastest of five runs of ``calls`` calls, in microseconds per call."""
    return min(timeit.repeat(call, number=calls, repeat=5)) / calls * 1e6


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    projection = compile_projection("course_session", "", "")
    for label, aware in (("naive (SQLite)", False), ("aware (PostgreSQL)", True)):
        row = session_row(aware)
        page = [dict(row, id=i) for i in range(200)]
        one = best_us(calls, partial(render_one, projection, row, (), CTX))
        many = best_us(calls // 200, partial(render, projection, page, (), CTX))
        print(f"{label:20s} one session {one:6.2f} us   a page of 200 {many:8.1f} us")


if __name__ == "__main__":
    main()
