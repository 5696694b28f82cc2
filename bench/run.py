"""The benchmark suite: throughput, latency, SQL statements and memory, against a ceiling.

``make bench`` runs it: it builds the demo datasets (small, and large with over a
million course sessions), serves each with ``coursebook serve`` at 1 and 2 workers,
drives every scenario with wrk at 32 connections, and measures the ceiling (a
minimal ASGI app answering a fixed course-session body, same server, same workers,
same connections) in the same run, before the first scenario and after each one, so
that every ratio is to the ceiling measured around it. It prints a table and writes
``docs/performance.md`` from it; nothing in that file is typed by hand.

R1-R4 request sessions of ordinary-length courses only (``scenario_ids``): the demo's
one long course (``LONG_COURSE_SESSIONS``) is left out, so that an R2, whose expansion
renders every session of the course, does the same work on both datasets, and the
comparison of small with large measures table size alone.

    python -m bench.run [--quick] [--profile] [--duration S] [--output FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, cast

from coursebook.demo import FULL_EXPANSION, Manifest, write_manifest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "var" / "bench"
PROFILES = ROOT / "var" / "bench" / "profiles"
BIN = Path(sys.executable).parent
CONNECTIONS = 32
#: Where the PostgreSQL datasets are kept (a database each, made once).
POSTGRES_ADMIN_URL = os.environ.get(
    "COURSEBOOK_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
#: Added to each direction between coursebook and PostgreSQL: 1 ms a round trip.
LATENCY_MS = 0.5
#: Raised whenever the demo generator's output changes shape, so kept datasets are remade.
DATASET_VERSION = 2
#: R1-R4 take sessions of courses with fewer sessions than this: every course but the
#: demo's one long course (``coursebook.demo.LONG_COURSE_SESSIONS``).
ORDINARY_COURSE_LIMIT = 100
#: Most session ids R1-R4 cycle through, evenly spaced over the ordinary ones.
SCENARIO_IDS = 400

#: A server under load answers one token thousands of times a second: no rate limit
#: (``bench/overhead.py`` measures what the limit, the metrics and the log cost).
UNLIMITED = {"COURSEBOOK_RATE_LIMIT": "0"}

#: name -> (description, query string or list path template)
SCENARIOS: dict[str, tuple[str, str]] = {
    "R1": ("plain retrieve", ""),
    "R2": ("full expansion", f"expand={FULL_EXPANSION}"),
    "R3": ("sparse fields", "fields=id,name,starts_at,venue.name,instructors.name"),
    "R4": ("R2 as XML", f"expand={FULL_EXPANSION}&format=xml"),
    "R5": ("list, 100 a page", "page_size=100&expand=venue,instructors"),
    "R6": ("R1 answered 304 (If-None-Match with the current ETag)", ""),
}


@dataclass
class Result:
    """One wrk run."""

    scenario: str
    dataset: str
    workers: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    statements: float | None = None
    ratio: float | None = None


@dataclass
class Config:
    """A dataset served with a number of workers: its results and worker memory."""

    dataset: str
    workers: int
    seconds: int
    backend: str = "SQLite"
    results: dict[str, Result] = field(default_factory=dict)
    peak_mb: float = 0.0


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def ensure_wrk() -> str:
    """The wrk binary; installed from Debian's packages when missing and we are root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("wrk is missing: installing it with apt-get")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
        found = shutil.which("wrk")
    if not found:
        sys.exit("bench: wrk is needed (Debian/Ubuntu: sudo apt-get install wrk)")
    return found


def dataset(scale: str) -> tuple[str, dict[str, Any]]:
    """The SQLite URL and manifest of a demo dataset, generated once and kept.

    The names carry ``DATASET_VERSION``: a kept dataset of an older shape is deleted
    and made again rather than measured.
    """
    DATA.mkdir(parents=True, exist_ok=True)
    name = f"{scale}-v{DATASET_VERSION}"
    database = DATA / f"{name}.sqlite3"
    manifest_path = DATA / f"{name}-manifest.json"
    if not manifest_path.exists():
        for stale in DATA.glob(f"{scale}*.sqlite3*"):
            stale.unlink()
        for stale in DATA.glob(f"{scale}*-manifest.json"):
            stale.unlink()
        log(f"generating the {scale} dataset (kept in {database.relative_to(ROOT)})")
        started = time.monotonic()
        subprocess.run(
            [
                BIN / "coursebook",
                "demo",
                "--scale",
                scale,
                "--seed",
                "42",
                "--manifest",
                str(manifest_path),
            ],
            env={**os.environ, "COURSEBOOK_DATABASE_URL": f"sqlite:///{database}"},
            check=True,
            stdout=subprocess.DEVNULL,
        )
        log(f"{scale} dataset ready in {time.monotonic() - started:.0f} s")
    else:  # a kept dataset follows the schema's migrations
        subprocess.run(
            [BIN / "coursebook", "db", "upgrade"],
            env={**os.environ, "COURSEBOOK_DATABASE_URL": f"sqlite:///{database}"},
            check=True,
            stdout=subprocess.DEVNULL,
        )
    manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    return f"sqlite:///{database}", manifest


def postgres_dataset(scale: str) -> tuple[str, dict[str, Any]] | None:
    """The URL and manifest of a demo dataset in PostgreSQL, made once and kept in a
    database of its own on ``POSTGRES_ADMIN_URL``'s server; None when no server answers.

    It is the SQLite dataset's rows, moved with ``coursebook export`` and ``coursebook
    import`` (``copy_dataset``): the same rows as generating them again, in a fraction
    of the time at large scale.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    name = f"coursebook_bench_{scale}_v{DATASET_VERSION}"
    manifest_path = DATA / f"{scale}-v{DATASET_VERSION}-postgresql-manifest.json"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            if exists is None or not manifest_path.exists():
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}"'))
                exists = None
    except OperationalError:
        log(f"no PostgreSQL at {make_url(POSTGRES_ADMIN_URL).host}: PostgreSQL runs skipped")
        return None
    finally:
        admin.dispose()
    env = {**os.environ, "COURSEBOOK_DATABASE_URL": url}
    if exists is None:
        log(f"copying the {scale} dataset to PostgreSQL (kept in database {name})")
        started = time.monotonic()
        copy_dataset(*dataset(scale), url, manifest_path)
        log(f"{scale} PostgreSQL dataset ready in {time.monotonic() - started:.0f} s")
    else:
        subprocess.run(
            [BIN / "coursebook", "db", "upgrade"], env=env, check=True, stdout=subprocess.DEVNULL
        )
    manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    return url, manifest


def copy_dataset(source: str, manifest: dict[str, Any], target: str, manifest_path: Path) -> None:
    """Fill the empty database at ``target`` with the dataset at ``source``: each provider
    piped from ``coursebook export`` into ``coursebook import``, then each of the
    manifest's tokens made again with its secret and its rights (an export never holds
    a token), and the manifest written for ``target``."""
    from sqlalchemy import select

    from coursebook.db import create_db_engine
    from coursebook.models import PERMISSION_NAMES, api_tokens
    from coursebook.tokens import create_token, hash_token

    coursebook = str(BIN / "coursebook")
    for provider in sorted(manifest["providers"].values()):
        export = subprocess.Popen(
            [coursebook, "export", "-q", "--provider-id", str(provider)],
            env={**os.environ, "COURSEBOOK_DATABASE_URL": source},
            stdout=subprocess.PIPE,
        )
        imported = subprocess.run(
            [coursebook, "import", "-q", "-"],
            env={**os.environ, "COURSEBOOK_DATABASE_URL": target},
            stdin=export.stdout,
            stdout=subprocess.DEVNULL,
        )
        assert export.stdout is not None
        export.stdout.close()
        if export.wait() != 0 or imported.returncode != 0:
            sys.exit(f"bench: copying provider {provider} to PostgreSQL failed")
    reading, writing = create_db_engine(source), create_db_engine(target)
    try:
        with reading.connect() as src, writing.begin() as dst:
            for secret in manifest["tokens"].values():
                row = src.execute(
                    select(api_tokens).where(api_tokens.c.token_hash == hash_token(secret))
                ).one()
                owner: dict[str, Any] = (
                    {"user_id": row.user_id}
                    if row.user_id is not None
                    else {"provider_id": row.provider_id}
                )
                create_token(
                    dst,
                    created_at=utc(row.created_at),
                    name=row.name,
                    permissions=frozenset(p for p in PERMISSION_NAMES if row._mapping[p]),
                    expires_at=utc(row.expires_at),
                    revoked_at=utc(row.revoked_at),
                    secret=secret,
                    **owner,
                )
    finally:
        reading.dispose()
        writing.dispose()
    write_manifest(manifest_path, cast(Manifest, manifest))


def utc(value: Any) -> Any:
    """A date-time SQLite gave back (naive, in UTC) as the aware one it stands for."""
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) and not value.tzinfo else value


def scalar(url: str, query: str, params: dict[str, Any]) -> list[Any]:
    """The first column of ``query``'s rows on the database at ``url``."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [row[0] for row in conn.execute(text(query), params)]
    finally:
        engine.dispose()


def session_count(url: str, provider_id: int | None = None) -> int:
    """Course sessions in the dataset, or of one provider."""
    if provider_id is None:
        return int(scalar(url, "SELECT count(*) FROM course_sessions", {})[0])
    query = "SELECT count(*) FROM course_sessions WHERE provider_id = :provider"
    return int(scalar(url, query, {"provider": provider_id})[0])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"bench: the server on port {port} exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"bench: the server on port {port} did not become ready")


@contextmanager
def serving(command: list[str], env: dict[str, str], port: int, cwd: Path = ROOT) -> Iterator[int]:
    """Run a server until the block ends; yields its process id."""
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd
    )
    try:
        wait_ready(port, process)
        yield process.pid
    finally:
        process.terminate()
        process.wait(20)


def worker_pids(pid: int) -> list[int]:
    """The processes serving requests: the children of uvicorn's supervisor, or itself."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [int(child) for child in children] or [pid]


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory (VmHWM) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk_command(
    wrk: str,
    url: str,
    paths: Path,
    token: str | None,
    seconds: int,
    connections: int = CONNECTIONS,
    threads: int = 2,
) -> list[str]:
    """The wrk command line of one run over the request paths in ``paths``."""
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(Path(__file__).with_name("paths.lua")),
    ]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    return [*command, url, "--", str(paths)]


def wrk_result(output: str) -> dict[str, float]:
    """Requests per second, requests, p50/p99 latency and errors of wrk's ``output``."""
    latency = {q: float(v) * _UNIT[u] for q, v, u in _LATENCY.findall(output)}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    requests = re.search(r"(\d+) requests in", output)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if rps is None or requests is None or "50" not in latency:
        sys.exit(f"bench: could not read wrk's output:\n{output}")
    return {
        "rps": float(rps.group(1)),
        "requests": float(requests.group(1)),
        "p50": latency["50"],
        "p99": latency["99"],
        "errors": float(errors.group(1) if errors else 0)
        + (sum(int(n) for n in socket_errors.groups()) if socket_errors else 0),
    }


def run_wrk(
    wrk: str,
    url: str,
    paths: Path,
    token: str | None,
    seconds: int,
    connections: int = CONNECTIONS,
) -> dict[str, float]:
    """Requests per second, p50/p99 latency and non-2xx count of one wrk run."""
    command = wrk_command(wrk, url, paths, token, seconds, connections)
    return wrk_result(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def scenario_ids(url: str, provider_id: int) -> list[int]:
    """Session ids for R1-R4: the provider's sessions of ordinary-length courses.

    Courses of ``ORDINARY_COURSE_LIMIT`` sessions or more (the demo's one long course)
    are left out, and at most ``SCENARIO_IDS`` ids are taken, evenly spaced in id order,
    so that a request costs the same on every dataset whatever its size.
    """
    query = """
        SELECT id FROM course_sessions
        WHERE provider_id = :provider AND course_id IN (
            SELECT course_id FROM course_sessions WHERE provider_id = :provider
            GROUP BY course_id HAVING count(*) < :limit
        )
        ORDER BY id
    """
    params = {"provider": provider_id, "limit": ORDINARY_COURSE_LIMIT}
    ids = [int(value) for value in scalar(url, query, params)]
    step = max(1.0, len(ids) / SCENARIO_IDS)
    return [ids[int(i * step)] for i in range(min(len(ids), SCENARIO_IDS))]


def scenario_paths(name: str, ids: list[int], count: int) -> list[str]:
    """The request paths of a scenario: the sessions ``ids``, or pages over ``count``."""
    query = SCENARIOS[name][1]
    if name == "R5":
        pages = max(1, min(-(-count // 100), 200))
        return [f"/api/v2/course_sessions?{query}&page={page}" for page in range(1, pages + 1)]
    suffix = f"?{query}" if query else ""
    return [f"/api/v2/course_sessions/{session_id}{suffix}" for session_id in ids]


def entity_tag(base: str, path: str, token: str) -> str:
    """The ETag of ``path``'s answer on the server at ``base``."""
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(response.headers["ETag"])


def http_scope(path: str, token: str) -> dict[str, Any]:
    """The ASGI scope of a GET of ``path`` with ``token``, for in-process measurements."""
    raw_path, _, query = path.partition("?")
    return {
        "type": "http",
        "method": "GET",
        "path": raw_path,
        "scheme": "http",
        "query_string": query.encode(),
        "server": ("127.0.0.1", 80),
        "headers": [(b"host", b"localhost"), (b"authorization", f"Bearer {token}".encode())],
    }


def count_statements(url: str, token: str, paths: list[str]) -> float:
    """Average SQL statements per request, counted by the engine's event counter.

    Each request is made once before it is counted, so the connection's memo holds
    the token and any list count, as in steady use (docs/architecture.md,
    "Connections and the memo").
    """
    from sqlalchemy.util import greenlet_spawn

    from coursebook.app import create_app
    from coursebook.db import StatementCounter
    from coursebook.settings import Settings

    app = create_app(Settings(database_url=url, log_level="warning", rate_limit=0))
    counter = StatementCounter(app.engine)
    sample = paths[:: max(1, len(paths) // 25)][:25]

    async def call(path: str) -> int:
        scope = http_scope(path, token)
        status = 0

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(scope, receive, send)
        return status

    async def count_all() -> float:
        counted = 0
        for path in sample:
            if await call(path) != 200:
                sys.exit(f"bench: {path} did not answer 200")
            before = counter.count
            await call(path)
            counted += counter.count - before
        if app.suspends:  # PostgreSQL's pool belongs to this loop: closed on it
            await greenlet_spawn(app.connections.close)
        else:
            app.connections.close()
        return counted / len(sample)

    return asyncio.run(count_all())


def profile(url: str, token: str, paths: dict[str, list[str]]) -> None:
    """Save pyinstrument profiles of R1 and R2 (HTML) for the next optimisation."""
    from pyinstrument import Profiler

    from coursebook.app import _parse_request, create_app
    from coursebook.formats import negotiate
    from coursebook.routes import ROUTES
    from coursebook.settings import Settings

    app = create_app(Settings(database_url=url, log_level="warning", rate_limit=0))
    PROFILES.mkdir(parents=True, exist_ok=True)
    for name in ("R1", "R2"):
        requests = []
        for path in paths[name][:200]:
            requests.append(_parse_request(http_scope(path, token), None, app.hosts))
        profiler = Profiler(interval=0.0002)
        profiler.start()
        for _ in range(5 if name == "R2" else 25):
            for request in requests:
                found = ROUTES.match(request.path)
                app.handle(request, negotiate(request.last("format"), None), found)
        profiler.stop()
        target = PROFILES / f"{name}.html"
        target.write_text(profiler.output_html())
        log(f"profile of {name} written to {target.relative_to(ROOT)}")
    app.engine.dispose()


def timed(
    wrk: str, name: str, config: Config, url: str, paths: Path, token: str | None = None
) -> Result:
    """A warm-up run, then the measured one, of ``name`` against ``url``."""
    run_wrk(wrk, url, paths, token, 2)
    return from_wrk(name, config, run_wrk(wrk, url, paths, token, config.seconds))


def from_wrk(name: str, config: Config, measured: dict[str, float]) -> Result:
    """The result of ``name`` in ``config`` from one wrk run's figures."""
    return Result(
        name,
        config.dataset,
        config.workers,
        measured["rps"],
        measured["p50"],
        measured["p99"],
        int(measured["errors"]),
    )


def ceiling_command(port: int, workers: int, app: str = "bench.ceiling:app") -> list[str]:
    """The ceiling: ``bench/ceiling.py`` under the same uvicorn settings as coursebook."""
    return [
        str(BIN / "uvicorn"),
        app,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def mean_result(name: str, config: Config, runs: list[dict[str, float]]) -> Result:
    """One row for several runs: mean requests per second and latencies, errors summed."""
    return Result(
        name,
        config.dataset,
        config.workers,
        sum(run["rps"] for run in runs) / len(runs),
        sum(run["p50"] for run in runs) / len(runs),
        sum(run["p99"] for run in runs) / len(runs),
        int(sum(run["errors"] for run in runs)),
    )


def measure(
    wrk: str, scale: str, workers: int, seconds: int, do_profile: bool, postgres: bool = False
) -> Config | None:
    """Every scenario on ``scale`` served by ``workers``, each between two ceiling runs.

    coursebook and the ceiling are both up for the whole configuration; the ceiling is
    driven before the first scenario and after each one, for half a scenario's
    duration, and each scenario's ratio is to the mean of the two ceiling runs around
    it. A shared machine's speed drifts by tens of percent within minutes; measured
    seconds apart, a scenario and its ceiling drift together.
    """
    found = postgres_dataset(scale) if postgres else dataset(scale)
    if found is None:
        return None
    database, manifest = found
    token = manifest["tokens"]["admin"]
    count = session_count(database)
    backend = "PostgreSQL" if postgres else "SQLite"
    config = Config(f"{scale} ({count:,} sessions)", workers, seconds, backend)
    main = manifest["providers"]["main"]
    ids, main_count = scenario_ids(database, main), session_count(database, main)
    paths = {name: scenario_paths(name, ids, main_count) for name in SCENARIOS}
    env = {
        **os.environ,
        "COURSEBOOK_DATABASE_URL": database,
        "COURSEBOOK_LOG_LEVEL": "warning",
        **UNLIMITED,
    }
    DATA.mkdir(parents=True, exist_ok=True)

    port, ceiling_port = free_port(), free_port()
    server = [str(BIN / "coursebook"), "serve", "--port", str(port), "--workers", str(workers)]
    with serving(server, env, port) as pid:
        base = f"http://127.0.0.1:{port}"
        body_file = DATA / "ceiling-body.json"
        with socket.create_connection(("127.0.0.1", port)) as sock:
            first = paths["R1"][0]
            sock.sendall(
                f"GET {first} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                f"{token}\r\nConnection: close\r\n\r\n".encode()
            )
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
        body_file.write_bytes(response.split(b"\r\n\r\n", 1)[1])
        ceiling_env = {**env, "CEILING_BODY_FILE": str(body_file)}
        with serving(ceiling_command(ceiling_port, workers), ceiling_env, ceiling_port):
            ceiling_url = f"http://127.0.0.1:{ceiling_port}"
            ceiling_paths = DATA / "paths-ceiling.txt"
            ceiling_paths.write_text("/\n")
            ceiling_seconds = max(2, seconds // 2)
            run_wrk(wrk, ceiling_url, ceiling_paths, None, 2)  # warm-up
            ceiling_runs = [run_wrk(wrk, ceiling_url, ceiling_paths, None, ceiling_seconds)]
            for name in SCENARIOS:
                path_file = DATA / f"paths-{name}.txt"
                lines = paths[name]
                if name == "R6":  # each path with the entity tag its answer has now
                    lines = [f"{p}\t{entity_tag(base, p, token)}" for p in lines]
                path_file.write_text("\n".join(lines) + "\n")
                result = config.results[name] = timed(wrk, name, config, base, path_file, token)
                ceiling_runs.append(run_wrk(wrk, ceiling_url, ceiling_paths, None, ceiling_seconds))
                around = (ceiling_runs[-2]["rps"] + ceiling_runs[-1]["rps"]) / 2
                result.ratio = result.rps / around
                log(
                    f"{backend} {scale} x{workers} {name}: {result.rps:.0f} req/s "
                    f"({result.ratio:.1%} of "
                    f"a ceiling of {around:.0f}), p99 {result.p99_ms:.1f} ms, "
                    f"non-2xx {result.errors}"
                )
        config.peak_mb = max(peak_rss_mb(worker) for worker in worker_pids(pid))
    ceiling = config.results["ceiling"] = mean_result("ceiling", config, ceiling_runs)
    log(f"{scale} x{workers} ceiling: {ceiling.rps:.0f} req/s (mean of {len(ceiling_runs)} runs)")

    for name in SCENARIOS:
        config.results[name].statements = count_statements(database, token, paths[name])
    if do_profile and workers == 1 and not postgres:
        profile(database, token, paths)
    return config


def round_trip_ms(url: str, count: int = 300) -> float:
    """The median time of a ``SELECT 1`` on one connection to ``url``, in milliseconds."""
    import psycopg
    from sqlalchemy.engine import make_url

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    times = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT 1")
        for _ in range(count):
            started = time.perf_counter()
            conn.execute("SELECT 1")
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def measure_network(wrk: str, seconds: int) -> Config | None:
    """PostgreSQL a network hop away: R1 at 64 connections, 1 worker, straight to the
    server, through ``bench/proxy.py`` adding nothing (the proxy's own cost), and through
    it adding ``LATENCY_MS`` each way; and the bare asyncpg ceiling at 32 connections."""
    from sqlalchemy.engine import make_url

    found = postgres_dataset("small")
    if found is None:
        return None
    url, manifest = found
    token = manifest["tokens"]["admin"]
    config = Config("small, R1, 1 worker", 1, seconds, "PostgreSQL over a network")
    main = manifest["providers"]["main"]
    path_file = DATA / "paths-network.txt"
    path_file.write_text("\n".join(scenario_paths("R1", scenario_ids(url, main), 0)) + "\n")
    target = make_url(url)
    host, port = target.host or "127.0.0.1", target.port or 5432
    plans: list[tuple[str, float | None, int]] = [
        ("R1 at 64 connections, direct", None, 64),
        ("R1 at 64 connections, through the proxy", 0.0, 64),
        (f"R1 at 64 connections, {2 * LATENCY_MS:g} ms added a round trip", LATENCY_MS, 64),
    ]
    proxied_ms = 0.0  # a round trip through the proxy adding nothing, unloaded
    for name, delay, connections in plans:
        through = url
        proxy: subprocess.Popen[bytes] | None = None
        if delay is not None:
            proxy_port = free_port()
            command = [sys.executable, "-m", "bench.proxy", str(proxy_port), host, str(port)]
            proxy = subprocess.Popen([*command, str(delay)], cwd=ROOT)
            time.sleep(1)
            through = target.set(host="127.0.0.1", port=proxy_port).render_as_string(
                hide_password=False
            )
        if delay == 0.0:
            proxied_ms = round_trip_ms(through)
        elif delay:  # what the proxy's delay adds, as measured
            name += f" (measured: {round_trip_ms(through) - proxied_ms:.2f} ms more)"
        env = {
            **os.environ,
            "COURSEBOOK_DATABASE_URL": through,
            "COURSEBOOK_LOG_LEVEL": "warning",
            **UNLIMITED,
        }
        server_port = free_port()
        server = [str(BIN / "coursebook"), "serve", "--port", str(server_port)]
        try:
            with serving(server, env, server_port):
                base = f"http://127.0.0.1:{server_port}"
                run_wrk(wrk, base, path_file, token, 2, connections)
                measured = run_wrk(wrk, base, path_file, token, seconds, connections)
        finally:
            if proxy is not None:
                proxy.terminate()
                proxy.wait(10)
        config.results[name] = from_wrk(name, config, measured)
        log(f"PostgreSQL {name}: {measured['rps']:.0f} req/s, p99 {measured['p99']:.1f} ms")
    dsn = target.set(drivername="postgresql").render_as_string(hide_password=False)
    ceiling_port = free_port()
    env = {**os.environ, "CEILING_POSTGRES_DSN": dsn}
    with serving(ceiling_command(ceiling_port, 1, "bench.pg_ceiling:app"), env, ceiling_port):
        base = f"http://127.0.0.1:{ceiling_port}"
        run_wrk(wrk, base, path_file, None, 2)
        measured = run_wrk(wrk, base, path_file, None, seconds)
    name = "bare asyncpg ceiling (one statement), 32 connections"
    config.results[name] = from_wrk(name, config, measured)
    log(f"PostgreSQL {name}: {measured['rps']:.0f} req/s")
    return config


def targets(configs: list[Config]) -> list[tuple[str, bool, str]]:
    """Each target of the benchmark issue, whether this run meets it, and the figures."""
    sqlite = [c for c in configs if c.backend == "SQLite"]
    one = [c for c in sqlite if c.workers == 1]
    checks: list[tuple[str, bool, str]] = []
    for config in one:
        r = config.results
        ratio = {name: r[name].ratio or 0.0 for name in SCENARIOS}
        label = config.dataset
        checks += [
            (f"{label}: R1 >= 35% of the ceiling", ratio["R1"] >= 0.35, f"{ratio['R1']:.1%}"),
            (f"{label}: R1 p99 < 10 ms", r["R1"].p99_ms < 10, f"{r['R1'].p99_ms:.1f} ms"),
            (f"{label}: R2 >= 5% of the ceiling", ratio["R2"] >= 0.05, f"{ratio['R2']:.1%}"),
            (
                f"{label}: R3 >= R1",
                ratio["R3"] >= ratio["R1"],
                f"{ratio['R3']:.1%} vs {ratio['R1']:.1%} of the ceiling",
            ),
            (
                f"{label}: R4 >= 60% of R2",
                ratio["R4"] >= 0.6 * ratio["R2"],
                f"{ratio['R4'] / ratio['R2']:.0%}",
            ),
            (f"{label}: R5 >= 1% of the ceiling", ratio["R5"] >= 0.01, f"{ratio['R5']:.1%}"),
            (
                f"{label}: a 304 (R6) costs no more than R1",
                ratio["R6"] >= ratio["R1"],
                f"{ratio['R6']:.1%} vs {ratio['R1']:.1%} of the ceiling",
            ),
            (
                f"{label}: R1 at most 3 statements",
                (r["R1"].statements or 0) <= 3,
                f"{r['R1'].statements:.1f}",
            ),
        ]
    if len(one) == 2:
        small, large = one
        for name in ("R1", "R2"):  # as ratios to the ceiling: runs minutes apart drift
            a, b = small.results[name].ratio or 0.0, large.results[name].ratio or 0.0
            checks.append((f"large within 15% of small for {name}", b >= 0.85 * a, f"{b / a:.0%}"))
    peak = max(c.peak_mb for c in configs)
    checks.append(("peak memory < 150 MB per worker", peak < 150, f"{peak:.0f} MB"))
    checks += postgres_targets(configs)
    errors = {
        f"{c.backend} {c.dataset} x{c.workers}": sum(r.errors for r in c.results.values())
        for c in configs
    }
    failed = {label: count for label, count in errors.items() if count}
    figure = ", ".join(f"{label}: {count}" for label, count in failed.items()) or "none"
    checks.append(("no request of any configuration fails", not failed, figure))
    return checks


def postgres_targets(configs: list[Config]) -> list[tuple[str, bool, str]]:
    """The PostgreSQL targets, where this run measured PostgreSQL."""
    checks: list[tuple[str, bool, str]] = []
    for pg in (c for c in configs if c.backend == "PostgreSQL" and c.workers == 1):
        lite = next(
            (
                c
                for c in configs
                if c.backend == "SQLite" and c.workers == 1 and c.dataset == pg.dataset
            ),
            None,
        )
        if lite is not None:
            for name in ("R1", "R2"):  # ratios to each one's ceiling: the runs drift apart
                a, b = lite.results[name].ratio or 0.0, pg.results[name].ratio or 0.0
                checks.append(
                    (
                        f"{pg.dataset}: PostgreSQL {name} >= 40% of SQLite {name}",
                        b >= 0.4 * a,
                        f"{b / a:.0%} ({pg.results[name].rps:,.0f} vs "
                        f"{lite.results[name].rps:,.0f} req/s)",
                    )
                )
        p99 = pg.results["R1"].p99_ms
        checks.append((f"{pg.dataset}: PostgreSQL R1 p99 < 15 ms", p99 < 15, f"{p99:.1f} ms"))
    for network in (c for c in configs if c.backend == "PostgreSQL over a network"):
        results = list(network.results.values())
        proxied, delayed = results[1], results[2]
        checks.append(
            (
                f"PostgreSQL R1 at 64 connections with {2 * LATENCY_MS:g} ms added >= 50% "
                "of it without (both through the proxy)",
                delayed.rps >= 0.5 * proxied.rps,
                f"{delayed.rps / proxied.rps:.0%} ({delayed.rps:,.0f} vs {proxied.rps:,.0f})",
            )
        )
    return checks


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()
    return (
        f"{os.cpu_count()} cores ({model}), {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, uvicorn {version('uvicorn')}, "
        f"SQLAlchemy {version('SQLAlchemy')}, SQLite {sqlite3.sqlite_version}, "
        f"orjson {version('orjson')}, wrk {wrk_version[1] if len(wrk_version) > 1 else '?'}"
    )


def report(
    configs: list[Config],
    checks: list[tuple[str, bool, str]],
    command: str,
    transfer: list[str] | None = None,
) -> str:
    lines = [
        "# Performance",
        "",
        f"Written by `{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; do not edit by hand.",
        "",
        f"Machine: {machine()}.",
        "",
        f"Load: wrk, 2 threads, {CONNECTIONS} connections, {configs[0].seconds} s a run, "
        "each request a different session "
        "id (R1-R4, R6) or page (R5), on the same machine as the server. SQL statements are "
        "counted per request by the engine's event counter on the same code path, with a "
        "warm memo (the first request after any write also reads the token, and a list "
        "also counts its rows: one or two statements more). Ratios "
        "are to the ceiling: a minimal ASGI app answering a fixed course-session body, served "
        "by the same uvicorn with the same workers, measured in the same run: before the "
        "first scenario and after each one, so that each scenario's ratio is to the mean of "
        "the two ceiling runs around it (its row gives the mean of all of them). Targets "
        "that compare two scenarios, or two datasets, compare these ratios: this "
        "machine's speed drifts between runs minutes apart. Errors count "
        "non-2xx answers and socket errors (wrk's timeout is 10 s).",
        "",
        "| database | dataset | workers | scenario | req/s | ratio to ceiling | p50 ms "
        "| p99 ms | SQL statements | errors |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for config in configs:
        for name, result in config.results.items():
            if name == "ceiling":
                description = "ceiling"
            else:
                description = f"{name} {SCENARIOS[name][0]}" if name in SCENARIOS else name
            ratio = (
                "1"
                if name == "ceiling"
                else ("" if result.ratio is None else f"{result.ratio:.1%}")
            )
            statements = "" if result.statements is None else f"{result.statements:.1f}"
            lines.append(
                f"| {config.backend} | {config.dataset} | {config.workers} | {description} "
                f"| {result.rps:,.0f} | {ratio} | {result.p50_ms:.2f} | {result.p99_ms:.2f} "
                f"| {statements} | {result.errors} |"
            )
    lines += ["", "Peak memory (VmHWM) per worker after each configuration:", ""]
    lines += [
        f"- {c.backend}, {c.dataset}, {c.workers} worker(s): {c.peak_mb:.0f} MB"
        for c in configs
        if c.peak_mb
    ]
    if transfer:
        lines += ["", "## Export and import", "", *transfer]
    lines += ["", "## Targets", "", "| target | met | this run |", "| --- | --- | --- |"]
    lines += [f"| {name} | {'yes' if ok else 'no'} | {figure} |" for name, ok, figure in checks]
    lines += [
        "",
        "Scenarios: R1 plain retrieve; R2 the full expansion "
        f"(`expand={FULL_EXPANSION}`); R3 `fields=id,name,starts_at,venue.name,"
        "instructors.name`; R4 R2 as XML; R5 `/api/v2/course_sessions?page_size=100&"
        "expand=venue,instructors`; R6 R1's requests, each with `If-None-Match` naming the "
        "ETag its answer has (taken just before the run), so every answer is a 304.",
        "",
        f"R1-R4 and R6 cycle through up to {SCENARIO_IDS} sessions of the main provider, evenly "
        f"spaced in id order, taken from courses of fewer than {ORDINARY_COURSE_LIMIT} "
        "sessions: the demo's one long course is left out, so that a request does the same "
        "work on every dataset (an R2 renders every session of its course; both datasets "
        "have about 15 sessions a course) and small and large differ in table size alone.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small dataset, 1 worker, 3 s runs")
    parser.add_argument("--profile", action="store_true", help="save R1/R2 profiles")
    parser.add_argument(
        "--postgres", action="store_true", help="with --quick: PostgreSQL's small dataset too"
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument(
        "--output",
        type=Path,
        help="default: docs/performance.md, or var/bench/performance-quick.md with --quick",
    )
    args = parser.parse_args()
    output = args.output or (
        DATA / "performance-quick.md" if args.quick else ROOT / "docs" / "performance.md"
    )
    wrk = ensure_wrk()
    plan: list[tuple[str, int, bool]]
    if args.quick:
        plan, seconds = [("small", 1, False)], 3
        if args.postgres:
            plan.append(("small", 1, True))
    else:
        plan = [("small", 1, False), ("large", 1, False), ("small", 2, False)]
        plan += [("large", 2, False), ("small", 1, True), ("small", 2, True)]
        plan += [("large", 1, True), ("large", 2, True)]
        seconds = args.duration
    started = time.monotonic()
    measured = [
        measure(wrk, scale, workers, seconds, args.profile, postgres)
        for scale, workers, postgres in plan
    ]
    if not args.quick or args.postgres:
        measured.append(measure_network(wrk, seconds))
    configs = [config for config in measured if config is not None]
    checks = targets(configs)
    moved: list[str] = []
    if not args.quick:
        from bench import transfer  # it imports this module's helpers

        steps = transfer.measure("large")
        moved = transfer.section("large", steps)
        checks += transfer.targets("large", steps)
    command = "make bench" + (" (--quick)" if args.quick else "")
    if args.duration != parser.get_default("duration") and not args.quick:
        command = f"python -m bench.run --duration {args.duration}"
    from bench import overhead  # it imports this module's helpers

    log("what metrics, the access log and the rate limit cost R1 (bench/overhead.py)")
    costs = overhead.measure(seconds, 2 if args.quick else 3, overhead.REDIS_URL)
    text = report(configs, checks, command, moved)
    text += "\n## What the production features cost\n\n" + costs
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(text)
    log(f"done in {time.monotonic() - started:.0f} s; written to {output}")


if __name__ == "__main__":
    main()
