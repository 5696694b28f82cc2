"""Prometheus metrics: what each worker counts, and the text ``/metrics`` answers.

Under ``coursebook serve`` every worker writes its values to memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode), and the worker
that answers a scrape sums every worker's files: one scrape sees the whole server.
Without that variable (tests, an app embedded elsewhere) the values live in the
process and the scrape reads them there.

A request pays for two updates (its route's count and latency). What the hot path
would otherwise update several times a request, memo lookups and statement times, it
adds to plain integers (``Tally``), which ``Publisher.publish`` moves into the
Prometheus values once a second and before each scrape.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from sqlalchemy import Engine, event

#: Where the workers' values are, when there are several: read once, as
#: prometheus-client reads it when it is imported (just above).
MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
CONTENT_TYPE = CONTENT_TYPE_LATEST.encode()
#: The label of a request that matched no route: raw paths would make a series each.
UNMATCHED = "unmatched"

REQUESTS = Counter(
    "coursebook_requests", "Requests answered, by route template and status.", ["route", "status"]
)
LATENCY = Histogram(
    "coursebook_request_duration_seconds",
    "Time from the request's arrival to its answer, by route template.",
    ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DATABASE_SECONDS = Counter(
    "coursebook_database_seconds", "Time spent in SQL statements, waiting for the server included."
)
DATABASE_STATEMENTS = Counter("coursebook_database_statements", "SQL statements run.")
POOL = Gauge(
    "coursebook_database_pool_connections",
    "Database connections of every live worker: its pool's size, and how many are lent out.",
    ["state"],
    multiprocess_mode="livesum",
)
MEMO = Counter(
    "coursebook_memo_lookups",
    "Per-connection memo lookups (SQLite: tokens, access, counts), hit or miss.",
    ["result"],
)
THROTTLED = Counter("coursebook_rate_limited", "Requests refused with 429 throttled.")
STORE_FAILURES = Counter(
    "coursebook_rate_limit_store_failures",
    "Rate-limit store (Redis) calls that failed or timed out; the request was let through.",
)
UNCHECKED = Counter(
    "coursebook_rate_limit_unchecked",
    "Requests let through unchecked while the rate-limit store was unreachable.",
)


class Tally:
    """Counts kept as plain integers by the hot path, published once a second."""

    __slots__ = ("memo_hits", "memo_misses", "statements", "statement_seconds")

    def __init__(self) -> None:
        self.memo_hits = 0
        self.memo_misses = 0
        self.statements = 0
        self.statement_seconds = 0.0


#: This process's tally.
TALLY = Tally()

_route_series: dict[tuple[str, int], tuple[Any, Any]] = {}


def observe_request(route: str, status: int, seconds: float) -> None:
    """Count one answered request and its latency (label children looked up once)."""
    series = _route_series.get((route, status))
    if series is None:
        series = _route_series[(route, status)] = (
            REQUESTS.labels(route, str(status)),
            LATENCY.labels(route),
        )
    series[0].inc()
    series[1].observe(seconds)


class Publisher:
    """Moves this worker's tally and its pool's state into the Prometheus values."""

    def __init__(
        self, engine: Engine, pool: Callable[[], tuple[int, int] | None] = lambda: None
    ) -> None:
        self.engine = engine
        #: The worker's connections: how many it may open, and how many are lent out
        #: (None: a backend without a pool, SQLite).
        self.pool = pool
        self._published = Tally()
        event.listen(engine, "before_cursor_execute", _statement_started)
        event.listen(engine, "after_cursor_execute", _statement_ended)

    def publish(self) -> None:
        """Add what the tally gained since the last call; set the pool's gauges."""
        now, then = TALLY, self._published
        MEMO.labels("hit").inc(now.memo_hits - then.memo_hits)
        MEMO.labels("miss").inc(now.memo_misses - then.memo_misses)
        DATABASE_STATEMENTS.inc(now.statements - then.statements)
        DATABASE_SECONDS.inc(now.statement_seconds - then.statement_seconds)
        for name in Tally.__slots__:
            setattr(then, name, getattr(now, name))
        pool = self.pool()
        if pool is not None:
            POOL.labels("size").set(pool[0])
            POOL.labels("checked_out").set(pool[1])

    def close(self) -> None:
        """This worker is done: its live gauges leave the sums (multiprocess mode)."""
        event.remove(self.engine, "before_cursor_execute", _statement_started)
        event.remove(self.engine, "after_cursor_execute", _statement_ended)
        if MULTIPROCESS_DIR:
            mark_process_dead(os.getpid(), MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]


#: Where a connection notes when its running statement began.
_STARTED = "coursebook.statement_started"


def _statement_started(conn: Any, *_args: Any) -> None:
    conn.info[_STARTED] = time.perf_counter()


def _statement_ended(conn: Any, *_args: Any) -> None:
    started = conn.info.pop(_STARTED, None)
    if started is not None:
        TALLY.statements += 1
        TALLY.statement_seconds += time.perf_counter() - started


def exposition() -> bytes:
    """The metrics in Prometheus' text format: every worker's, in multiprocess mode."""
    if MULTIPROCESS_DIR:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)
