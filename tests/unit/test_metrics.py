"""The request tally, published into Prometheus' histogram, reads as ``observe`` would
have it; and the access log's timestamps."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from coursebook import metrics
from coursebook.accesslog import Clock


def test_a_published_tally_reads_as_the_same_observations_one_at_a_time() -> None:
    latencies = [0.0001, 0.0005, 0.0007, 0.001, 0.003, 0.02, 0.5, 7.0, 10.0, 11.5, 300.0]
    registry = CollectorRegistry()
    observed = Histogram("observed", "each", ["route"], buckets=metrics.BUCKETS, registry=registry)
    tallied = Histogram("tallied", "tally", ["route"], buckets=metrics.BUCKETS, registry=registry)
    tally = metrics.Tally()
    saved, metrics.TALLY = metrics.TALLY, tally
    try:
        for seconds in latencies:
            observed.labels("/r").observe(seconds)
            metrics.observe_request("/r", 200, seconds)
    finally:
        metrics.TALLY = saved
    assert tally.requests == {("/r", 200): len(latencies)}
    metrics._add_observations(tallied.labels("/r"), tally.latency["/r"])
    exposition = generate_latest(registry).decode().splitlines()

    def samples(name: str) -> list[str]:
        return [
            line.replace(name, "x", 1)
            for line in exposition
            if line.startswith(f"{name}_") and "_created" not in line
        ]

    assert samples("tallied") == samples("observed")
    assert 'x_bucket{le="+Inf",route="/r"} 11.0' in samples("tallied")


def test_the_access_log_clock_gives_utc_to_the_millisecond() -> None:
    clock = Clock()
    for now in (0.0, 1764513088.0245, 1764513088.9999, 1764513089.5, time.time()):
        expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(now)))
        expected += f".{int(now * 1000) % 1000:03d}Z"
        assert clock.stamp(now) == expected
    assert clock.stamp(1764513088.0245) == "2025-11-30T14:31:28.024Z"
