"""``make soak``: two workers on PostgreSQL and Redis under load, through a PostgreSQL
restart and a Redis outage, judged by what every client saw.

It serves a scratch copy of the small PostgreSQL benchmark dataset with
``coursebook serve --workers 2``, the rate limit counted in a Redis server of its own
(started here on a free port, so that stopping it disturbs nobody else's), and drives
64 connections of mixed requests and tokens for 60 s (after a warm-up): retrieves
plain, expanded, sparse and as XML, lists, conditional requests answered 304, unknown
ids, made-up and missing tokens. Every response's status and time is recorded. A
fifth of the way in Redis is shut down for 10 s and started again; a little past the
middle PostgreSQL is restarted (``pg_ctlcluster <version> main restart``: the
machine's server, which other clients lose for a few seconds too). Each worker's
resident memory is sampled every second.

The verdicts: no 5xx but 503; 503 only while PostgreSQL is away or within the
recovery bound after it returns; recovery (the last 503 after PostgreSQL answers
again) within 5 s; resident memory growing less than 10% from the end of the warm-up
to the end; nothing lost (every request answered, and the server's metrics and access
log count as many API answers as the clients received). The report is markdown,
written to ``docs/soak.md`` by default; the exit status is 1 when a verdict fails.

    python -m bench.soak [--seconds 60] [--connections 64] [--output FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import uvloop
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench import cluster
from bench.run import (
    BIN,
    POSTGRES_ADMIN_URL,
    ROOT,
    free_port,
    log,
    machine,
    postgres_dataset,
    scenario_ids,
    worker_pids,
)
from coursebook.demo import FULL_EXPANSION

#: The bounds the issue sets.
RECOVERY_SECONDS = 5.0
RSS_GROWTH = 0.10
REDIS_DOWN_SECONDS = 10.0
WARM_UP_SECONDS = 10.0
#: Routes that are not the API's: probes and the scrape, left out of the counts.
NOT_API = {"/healthz", "/readyz", "/metrics"}


class Outcome(NamedTuple):
    """One request: when it was sent and answered (seconds from the start), its status
    (0 when no answer came) and, for those, the error."""

    sent: float
    done: float
    status: int
    error: str = ""


@dataclass
class Events:
    """When the faults happened, in seconds from the start."""

    redis_stopped: float = 0.0
    redis_started: float = 0.0
    database_stopped: float = 0.0
    database_back: float = 0.0
    rss: list[tuple[float, int]] = field(default_factory=list)
    #: API requests before the measured run (the warm-up's, the conditional requests'
    #: tagging): the server counts them too.
    before: list[Outcome] = field(default_factory=list)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="Length of the run.")
    parser.add_argument("--connections", type=int, default=64, help="Concurrent connections.")
    parser.add_argument(
        "--output", type=Path, default=ROOT / "docs" / "soak.md", help="Where the report goes."
    )
    args = parser.parse_args()
    version = _postgres_version()
    found = postgres_dataset("small")
    if found is None:
        sys.exit("soak: PostgreSQL is needed (COURSEBOOK_BENCH_POSTGRES_URL)")
    template, manifest = found
    with ExitStack() as stack:
        url = stack.enter_context(scratch_copy(template))
        redis = stack.enter_context(RedisServer.running())
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="coursebook-soak-")))
        server = stack.enter_context(serving(url, redis.url, workdir))
        log(f"serving on {server.base_url} (workers {server.worker_pids()}); warming up")
        requests = Mix(manifest, scenario_ids(url, manifest["providers"]["main"]))
        events = Events()
        requests.tag(server.base_url, events.before)
        outcomes = uvloop.run(
            drive(server, requests, redis, events, args.seconds, args.connections)
        )
        time.sleep(1.5)  # every worker publishes its tallies once a second
        counted = api_answers(httpx.get(server.base_url + "/metrics", timeout=10).text)
        server.stop()
        logged = sum(
            1
            for line in server.log.read_text().splitlines()
            if line.startswith("{") and json.loads(line).get("route") not in NOT_API
        )
    text_ = report(outcomes, events, args.seconds, args.connections, counted, logged, version)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text_)
    print(text_)
    log(f"written to {args.output}")
    if "| no |" in text_:
        sys.exit(1)


def _postgres_version() -> str:
    """The version of the machine's PostgreSQL cluster, whose server is restarted."""
    if not cluster.available():
        sys.exit("soak: pg_ctlcluster is needed to restart PostgreSQL (Debian's packaging)")
    return cluster.version()


@contextmanager
def scratch_copy(template: str) -> Iterator[str]:
    """A database copied from ``template``'s for this run, dropped after it."""
    source = make_url(template)
    name = f"coursebook_soak_{os.getpid()}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{source.database}"'))
        yield source.set(database=name).render_as_string(hide_password=False)
    finally:
        # On a fresh connection: the restart ended the ones the pool held.
        admin.dispose()
        cluster.wait_until_ready()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class RedisServer:
    """A Redis server of the run's own, on a free port, with nothing saved to disk."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    @contextmanager
    def running(cls) -> Iterator[RedisServer]:
        """Started now, and stopped at the end whatever happened."""
        redis = cls()
        redis.start()
        try:
            yield redis
        finally:
            if redis.process is not None and redis.process.poll() is None:
                redis.process.kill()
                redis.process.wait()

    def start(self) -> None:
        """Start it (again) the way it was first started, and wait until it answers."""
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while self._cli("ping").stdout.strip() != b"PONG":
            if time.monotonic() > deadline:
                raise RuntimeError("soak: Redis did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        """Shut it down as an operator would (``redis-cli shutdown nosave``)."""
        self._cli("shutdown", "nosave")
        if self.process is not None:
            self.process.wait(10)

    def _cli(self, *command: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["redis-cli", "-p", str(self.port), *command], capture_output=True, check=False
        )


class Served(NamedTuple):
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def worker_pids(self) -> list[int]:
        """The workers: uvicorn's supervisor's children but multiprocessing's resource
        tracker."""
        return [
            pid
            for pid in worker_pids(self.process.pid)
            if b"spawn_main" in _cmdline(pid) and pid != self.process.pid
        ]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


@contextmanager
def serving(database_url: str, redis_url: str, workdir: Path) -> Iterator[Served]:
    """``coursebook serve --workers 2``, as deployed: the rate limit in Redis (a limit
    no caller reaches, so that every request is counted and none refused), metrics and
    the access log on (to a file: it is counted at the end)."""
    port = free_port()
    env = {
        **os.environ,
        "COURSEBOOK_DATABASE_URL": database_url,
        "COURSEBOOK_REDIS_URL": redis_url,
        "COURSEBOOK_RATE_LIMIT": str(10**9),
        "COURSEBOOK_ACCESS_LOG": "true",
        "COURSEBOOK_METRICS": "true",
        "COURSEBOOK_LOG_LEVEL": "warning",
        "COURSEBOOK_DRAIN_SECONDS": "0",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [str(BIN / "coursebook"), "serve", "--workers", "2", "--port", str(port)]
    log_path = workdir / "server.log"
    with log_path.open("wb") as stderr:
        process = subprocess.Popen(
            command, env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=stderr
        )
    served = Served(process, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"soak: the server exited: {log_path.read_text()}")
            try:
                if httpx.get(served.base_url + "/readyz", timeout=2).status_code == 200:
                    if len(served.worker_pids()) == 2:
                        break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("soak: the server did not become ready")
            time.sleep(0.2)
        yield served
    finally:
        served.stop()


class Request(NamedTuple):
    path: str
    headers: dict[str, str]


class Mix:
    """The requests the clients draw from: paths of several shapes, several tokens."""

    def __init__(self, manifest: dict[str, Any], ids: list[int]) -> None:
        tokens = manifest["tokens"]
        self.ids = ids[:100]
        self.requests: list[tuple[int, Request]] = []
        admin = {"Authorization": f"Bearer {tokens['admin']}"}
        sessions = [f"/api/v2/course_sessions/{i}" for i in self.ids]
        visible = manifest["course_sessions"]["customer_visible"][:20]
        customer = {"Authorization": f"Bearer {tokens['customer']}"}
        instructor = {"Authorization": f"Bearer {tokens['instructor']}"}
        instructed = manifest["course_sessions"]["instructed"][:20]
        weighted: list[tuple[int, list[Request]]] = [
            (30, [Request(path, admin) for path in sessions]),
            (10, [Request(f"{path}?expand={FULL_EXPANSION}", admin) for path in sessions]),
            (8, [Request(f"{path}?fields=id,name,venue.name", admin) for path in sessions]),
            (5, [Request(f"{path}?format=xml&expand=venue", admin) for path in sessions]),
            (8, [Request(f"/api/v2/course_sessions?page_size=20&page={p}", admin) for p in (1, 2)]),
            (10, [Request(f"/api/v2/course_sessions/{i}", customer) for i in visible]),
            (8, [Request(f"/api/v2/course_sessions/{i}", instructor) for i in instructed]),
            (3, [Request("/api/v2/course_sessions/999999999", admin)]),  # 404
            (3, [Request(sessions[0], {"Authorization": "Token cb_made-up"})]),  # 401
            (3, [Request(sessions[0], {})]),  # 401, counted by address
        ]
        self.choices = weighted
        self.weights = [weight for weight, _ in weighted]

    def tag(self, base_url: str, outcomes: list[Outcome]) -> None:
        """Add conditional requests (answered 304) for a few sessions, tagged now."""
        admin = self.choices[0][1][0].headers
        conditional = []
        for request in self.choices[0][1][:20]:
            answer = httpx.get(base_url + request.path, headers=admin, timeout=10)
            outcomes.append(Outcome(0.0, 0.0, answer.status_code))
            etag = answer.headers["etag"]
            conditional.append(Request(request.path, {**admin, "If-None-Match": etag}))
        self.choices.append((12, conditional))
        self.weights.append(12)

    def draw(self, chance: random.Random) -> Request:
        group = chance.choices(self.choices, self.weights)[0][1]
        return group[chance.randrange(len(group))]


async def drive(
    server: Served,
    mix: Mix,
    redis: RedisServer,
    events: Events,
    seconds: float,
    connections: int,
) -> list[Outcome]:
    """Warm up, then load for ``seconds`` while the faults happen; every outcome."""
    await load(server.base_url, mix, WARM_UP_SECONDS, connections, time.monotonic(), events.before)
    log(f"warm-up done; {seconds:.0f} s of load with the faults")
    start = time.monotonic()
    outcomes: list[Outcome] = []
    faults = asyncio.create_task(inject(server, redis, events, start, seconds))
    await load(server.base_url, mix, seconds, connections, start, outcomes)
    await faults
    return outcomes


async def load(
    base_url: str,
    mix: Mix,
    seconds: float,
    connections: int,
    start: float,
    outcomes: list[Outcome],
) -> None:
    """``connections`` clients of a connection each (httpx's pool, shared by many, costs
    more client CPU than the server's answers), each sending one request after another
    until the end."""
    end = start + seconds

    async def one_client(number: int) -> None:
        chance = random.Random(number)
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30.0) as client:
            while (now := time.monotonic()) < end:
                request = mix.draw(chance)
                try:
                    answer = await client.get(request.path, headers=request.headers)
                    outcome = Outcome(now - start, time.monotonic() - start, answer.status_code)
                except httpx.HTTPError as error:
                    done = time.monotonic() - start
                    outcome = Outcome(now - start, done, 0, type(error).__name__)
                outcomes.append(outcome)

    await asyncio.gather(*(one_client(n) for n in range(connections)))


async def inject(
    server: Served, redis: RedisServer, events: Events, start: float, seconds: float
) -> None:
    """The faults, at their times, and the memory samples, every second."""

    async def at(moment: float) -> None:
        await asyncio.sleep(max(0.0, start + moment - time.monotonic()))

    def now() -> float:
        return time.monotonic() - start

    async def sample() -> None:
        while now() < seconds:
            events.rss.append((now(), rss(server.worker_pids())))
            await asyncio.sleep(1.0)
        events.rss.append((now(), rss(server.worker_pids())))

    sampling = asyncio.create_task(sample())
    await at(seconds * 0.2)
    log("stopping Redis")
    events.redis_stopped = now()
    await asyncio.to_thread(redis.stop)
    await at(events.redis_stopped + REDIS_DOWN_SECONDS)
    log("starting Redis")
    await asyncio.to_thread(redis.start)
    events.redis_started = now()
    await at(seconds * 0.55)
    log("restarting PostgreSQL")
    events.database_stopped = now()
    await asyncio.to_thread(cluster.control, "restart")
    events.database_back = now()
    log(f"PostgreSQL answers again after {events.database_back - events.database_stopped:.1f} s")
    await sampling


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def rss(pids: list[int]) -> int:
    """The resident memory of the processes, in kB."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:  # a worker that died: the report shows the memory it left
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def api_answers(exposition: str) -> int:
    """API answers the server counted (``coursebook_requests_total``, probes and the
    scrape left out)."""
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(exposition)
            for sample in family.samples
            if sample.name == "coursebook_requests_total" and sample.labels["route"] not in NOT_API
        )
    )


def report(
    outcomes: list[Outcome],
    events: Events,
    seconds: float,
    connections: int,
    counted: int,
    logged: int,
    version: str,
) -> str:
    """The verdicts and the per-second table, as markdown."""
    answered = [o for o in outcomes if o.status]
    lost = [o for o in outcomes if not o.status]
    other_5xx = [o for o in answered if o.status >= 500 and o.status != 503]
    unavailable = [o for o in answered if o.status == 503]
    window_end = events.database_back + RECOVERY_SECONDS
    stray = [o for o in unavailable if o.done < events.database_stopped or o.sent > window_end]
    recovery = max((o.done - events.database_back for o in unavailable), default=0.0)
    during_redis = [o for o in answered if events.redis_stopped <= o.sent < events.redis_started]
    start_rss = next(kb for moment, kb in events.rss if moment >= 0)
    end_rss = events.rss[-1][1]
    growth = end_rss / start_rss - 1
    # The requests before the run are in the server's counts too.
    received = len(answered) + sum(1 for o in events.before if o.status)
    lost += [o for o in events.before if not o.status]
    verdicts = [
        ("5xx other than 503", "0", str(len(other_5xx)), not other_5xx),
        (
            "503 outside PostgreSQL's absence and the recovery bound",
            "0",
            str(len(stray)),
            not stray,
        ),
        (
            "recovery: last 503 after PostgreSQL answers again",
            f"< {RECOVERY_SECONDS:g} s",
            f"{max(recovery, 0.0):.2f} s",
            recovery < RECOVERY_SECONDS,
        ),
        (
            "resident memory growth of the workers, warm-up end to run end",
            f"< {RSS_GROWTH:.0%}",
            f"{growth:+.1%} ({start_rss / 1024:.0f} to {end_rss / 1024:.0f} MB)",
            growth < RSS_GROWTH,
        ),
        ("requests without an answer (connection errors, timeouts)", "0", str(len(lost)), not lost),
        (
            "API answers counted by the server's metrics and access log",
            "= answers received",
            f"metrics {counted:,}, access log {logged:,}, received {received:,}",
            counted == logged == received,
        ),
        (
            "5xx while Redis was down (the limit fails open)",
            "0",
            str(sum(o.status >= 500 for o in during_redis)),
            not any(o.status >= 500 for o in during_redis),
        ),
    ]
    statuses = Counter(o.status for o in answered)
    lines = [
        "# Soak",
        "",
        f"Written by `make soak` (`python -m bench.soak`) on {datetime.now(UTC):%Y-%m-%d %H:%M} "
        "UTC; do not edit by hand.",
        "",
        f"Machine: {machine()}; PostgreSQL {version}; load average at the end: "
        f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}.",
        "",
        f"`coursebook serve --workers 2` on a copy of the small PostgreSQL dataset, the rate "
        f"limit counted in Redis, metrics and access log on; {connections} connections of "
        f"mixed requests and tokens for {seconds:g} s after a {WARM_UP_SECONDS:g} s warm-up. "
        f"Redis shut down at {events.redis_stopped:.1f} s and started again at "
        f"{events.redis_started:.1f} s; PostgreSQL restarted at "
        f"{events.database_stopped:.1f} s, answering again at {events.database_back:.1f} s.",
        "",
        "| check | bound | this run | met |",
        "| --- | --- | --- | --- |",
        *(
            f"| {name} | {bound} | {figure} | {'yes' if ok else 'no'} |"
            for name, bound, figure, ok in verdicts
        ),
        "",
        f"{len(outcomes):,} requests ({len(outcomes) / seconds:,.0f} a second); answers by status: "
        + ", ".join(f"{status}: {count:,}" for status, count in sorted(statuses.items()))
        + ".",
        "",
        "Each second of the run, by the time each request was sent:",
        "",
        "| second | requests | 2xx/304 | 4xx | 503 | other 5xx | no answer | p99 ms "
        "| workers' RSS MB | event |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    by_second: dict[int, list[Outcome]] = {}
    for outcome in outcomes:
        by_second.setdefault(int(outcome.sent), []).append(outcome)
    memory = {int(moment): kb for moment, kb in events.rss}
    for second in range(int(seconds) + 1):  # a second the sampler skipped: the last one
        if second not in memory and second - 1 in memory:
            memory[second] = memory[second - 1]
    marks = {
        int(events.redis_stopped): "Redis stopped",
        int(events.redis_started): "Redis started",
        int(events.database_stopped): "PostgreSQL restarting",
        int(events.database_back): "PostgreSQL answers",
    }
    if int(events.database_stopped) == int(events.database_back):
        marks[int(events.database_stopped)] = "PostgreSQL restarted"
    for second in sorted(by_second):
        group = by_second[second]
        times = sorted(o.done - o.sent for o in group)
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))] * 1000
        resident = f"{memory[second] / 1024:.0f}" if second in memory else ""
        lines.append(
            f"| {second} | {len(group)} "
            f"| {sum(200 <= o.status < 400 for o in group)} "
            f"| {sum(400 <= o.status < 500 for o in group)} "
            f"| {sum(o.status == 503 for o in group)} "
            f"| {sum(o.status >= 500 and o.status != 503 for o in group)} "
            f"| {sum(not o.status for o in group)} | {p99:.0f} "
            f"| {resident} | {marks.get(second, '')} |"
        )
    lines += [
        "",
        "Rerun with `make soak` (it needs the machine's PostgreSQL cluster, restarted with "
        "`pg_ctlcluster`, and `redis-server`); `python -m bench.soak --help` for the options.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
