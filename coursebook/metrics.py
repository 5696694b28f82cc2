"""Prometheus metrics: what each worker counts, and the text ``/metrics`` answers.

Under ``coursebook serve`` every worker writes its values to memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode), and the worker
that answers a scrape sums every worker's files: one scrape sees the whole server.
Without that variable (tests, an app embedded elsewhere) the values live in the
process and the scrape reads them there.

An update of a Prometheus value takes a lock (and in multiprocess mode writes to a
memory-mapped file): a request's count and latency cost about 9 microseconds that way,
and a plain retrieve is about 50. So the hot path adds to plain numbers in this
worker's ``Tally`` (a request: a dictionary entry and a bucket of its route's
histogram; memo lookups; statements), and ``Publisher.publish`` moves what gathered
into the Prometheus values once a second and before each scrape. A scrape sees the
worker that answers it up to date, and the others as of their last second.
"""

from __future__ import annotations

import os
from bisect import bisect_left
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
from sqlalchemy import Engine

#: Where the workers' values are, when there are several: read once, as
#: prometheus-client reads it when it is imported (just above).
MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
CONTENT_TYPE = CONTENT_TYPE_LATEST.encode()
#: The label of a request that matched no route: raw paths would make a series each.
UNMATCHED = "unmatched"

REQUESTS = Counter(
    "coursebook_requests", "Requests answered, by route template and status.", ["route", "status"]
)
#: Upper bounds of the latency histogram's buckets, in seconds (and +Inf).
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LATENCY = Histogram(
    "coursebook_request_duration_seconds",
    "Time from the request's arrival to its answer, by route template.",
    ["route"],
    buckets=BUCKETS,
)
DATABASE_STATEMENTS = Counter(
    "coursebook_database_statements", "SQL statements requests ran to read the data."
)
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
    """Counts kept as plain numbers by the hot path, published once a second.

    ``requests`` counts answers by (route, status); ``latency`` holds, by route, the sum
    of the latencies and then one count per bucket of ``BUCKETS`` and one for +Inf (each
    latency counted in its own bucket only: publishing makes them cumulative).
    """

    __slots__ = ("latency", "memo_hits", "memo_misses", "requests", "statements")

    def __init__(self) -> None:
        self.memo_hits = 0
        self.memo_misses = 0
        self.statements = 0
        self.requests: dict[tuple[str, int], int] = {}
        self.latency: dict[str, list[float]] = {}


#: This process's tally.
TALLY = Tally()


def observe_request(route: str, status: int, seconds: float) -> None:
    """Count one answered request and its latency (a dictionary entry and a bucket)."""
    tally = TALLY
    key = (route, status)
    requests = tally.requests
    requests[key] = requests.get(key, 0) + 1
    latency = tally.latency.get(route)
    if latency is None:
        latency = tally.latency[route] = [0.0] * (len(BUCKETS) + 2)
    latency[0] += seconds
    latency[bisect_left(BUCKETS, seconds) + 1] += 1


class Publisher:
    """Moves this worker's tally and its pool's state into the Prometheus values."""

    def __init__(self, engine: Engine, kept: Callable[[], tuple[int, int]] | None = None) -> None:
        self.engine = engine
        #: Where the pool's state is when the engine's pool is not it: PostgreSQL's
        #: connections are kept by ``db.Connections`` (open, lent), over a ``NullPool``.
        self.kept = kept
        self._published = (0, 0, 0)

    def publish(self) -> None:
        """Add what the tally gained since the last call; set the pool's gauges.

        Run on the event loop, as ``observe_request`` is: the request tallies are taken
        whole and replaced, with no request between.
        """
        tally = TALLY
        requests, tally.requests = tally.requests, {}
        latency, tally.latency = tally.latency, {}
        for (route, status), count in requests.items():
            REQUESTS.labels(route, str(status)).inc(count)
        for route, sums in latency.items():
            _add_observations(LATENCY.labels(route), sums)
        counts = (tally.memo_hits, tally.memo_misses, tally.statements)
        then = self._published
        hits, misses, statements = (counts[0] - then[0], counts[1] - then[1], counts[2] - then[2])
        self._published = counts
        if hits:
            MEMO.labels("hit").inc(hits)
        if misses:
            MEMO.labels("miss").inc(misses)
        if statements:
            DATABASE_STATEMENTS.inc(statements)
        if self.kept is not None:
            opened, lent = self.kept()
            POOL.labels("size").set(opened)
            POOL.labels("checked_out").set(lent)
            return
        pool = self.engine.pool
        size, checked_out = getattr(pool, "size", None), getattr(pool, "checkedout", None)
        if callable(size) and callable(checked_out):
            POOL.labels("size").set(size())
            POOL.labels("checked_out").set(checked_out())

    def close(self) -> None:
        """This worker is done: its live gauges leave the sums (multiprocess mode)."""
        if MULTIPROCESS_DIR:
            mark_process_dead(os.getpid(), MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]


def _add_observations(histogram: Any, sums: list[float]) -> None:
    """Add a tally's latencies to one route's histogram: ``sums`` is the sum of the
    latencies, then a count per bucket and +Inf.

    prometheus-client adds one observation at a time (``observe``); its histogram keeps
    the sum and a value per bucket, each latency counted in its own bucket only (the
    exposition makes them cumulative), which is what is added here, in one update each.
    ``tests/unit/test_metrics.py`` checks the result against ``observe``'s.
    """
    histogram._sum.inc(sums[0])
    for bucket, count in zip(histogram._buckets, sums[1:], strict=True):
        if count:
            bucket.inc(count)


def exposition() -> bytes:
    """The metrics in Prometheus' text format: every worker's, in multiprocess mode."""
    if MULTIPROCESS_DIR:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)
