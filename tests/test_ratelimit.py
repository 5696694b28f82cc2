"""The rate limit (SEMANTICS.md section 10): per caller, shared by every worker, and
failing open when Redis does not answer.

Each test sets its own limit (the suite runs with none) and its own budget: a rate-limit
file in its temporary directory, or a Redis key prefix of its own.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from coursebook.settings import Settings
from tests.support import Demo, free_port, in_process, serve_process

REDIS_URL = "redis://127.0.0.1:6379/0"
RETRY_SECONDS = 1.0


def session_path(demo: Demo) -> str:
    return f"/api/v2/course_sessions/{demo.manifest['course_sessions']['main'][0]}"


def store_settings(store: str, tmp_path: Path) -> dict[str, str]:
    """A budget of this test's own, in Redis or in a local file."""
    if store == "redis":
        return {"redis_url": REDIS_URL, "rate_limit_prefix": f"test-{uuid.uuid4().hex}"}
    return {"rate_limit_file": str(tmp_path / "rate-limit.sqlite3")}


def metric(name: str) -> float:
    """This process's value of a sample of the default registry (0 before any)."""
    return REGISTRY.get_sample_value(name) or 0.0


def assert_throttled(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["code"] == "throttled"
    assert body["type"] == "rate_limit_error"
    wait = int(response.headers["retry-after"])
    assert 1 <= wait <= 60
    assert body["message"].startswith("Request was throttled. Expected available in")
    assert response.headers["x-ratelimit-remaining"] == "0"


@pytest.mark.parametrize("store", ["local", "redis"])
def test_300_requests_over_two_workers_give_exactly_250(
    demo: Demo, tmp_path: Path, store: str
) -> None:
    """Two workers count in one store: exactly the limit succeeds, every remaining count
    from 249 down to 0 is told once, and the rest are 429 ``throttled``."""
    settings = {"rate_limit": "250", **store_settings(store, tmp_path)}
    with serve_process(demo.url, settings, workers=2, directory=tmp_path) as server:
        url = server.base_url + session_path(demo)
        headers = {"Authorization": f"Bearer {demo.manifest['tokens']['admin']}"}

        def one(_: int) -> httpx.Response:
            # A connection each, so that both workers answer some.
            return httpx.get(url, headers={**headers, "Connection": "close"})

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(one, range(300)))
    succeeded = [a for a in answers if a.status_code == 200]
    assert len(succeeded) == 250
    assert sorted(int(a.headers["x-ratelimit-remaining"]) for a in succeeded) == list(range(250))
    assert {a.headers["x-ratelimit-limit"] for a in answers} == {"250"}
    for refused in [a for a in answers if a.status_code != 200]:
        assert_throttled(refused)


@pytest.mark.parametrize("store", ["local", "redis"])
def test_concurrent_requests_counted_together_each_get_their_own_count(
    demo: Demo, tmp_path: Path, store: str
) -> None:
    """64 connections at once to two workers: the requests one loop turn starts are
    counted in one increment, and still exactly 250 of 300 pass, each told a remaining
    count of its own."""
    settings = {"rate_limit": "250", **store_settings(store, tmp_path)}
    headers = {"Authorization": f"Bearer {demo.manifest['tokens']['admin']}"}

    async def flood(base_url: str) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
            # One request first, so that the token is proven and counted alone.
            first = await client.get(session_path(demo), headers=headers)
            rest = [client.get(session_path(demo), headers=headers) for _ in range(299)]
            return [first, *await asyncio.gather(*rest)]

    with serve_process(demo.url, settings, workers=2, directory=tmp_path) as server:
        answers = asyncio.run(flood(server.base_url))
    succeeded = [a for a in answers if a.status_code == 200]
    assert len(succeeded) == 250
    assert sorted(int(a.headers["x-ratelimit-remaining"]) for a in succeeded) == list(range(250))
    for refused in [a for a in answers if a.status_code != 200]:
        assert_throttled(refused)


def test_two_servers_on_one_redis_share_one_budget(demo: Demo) -> None:
    settings = Settings(
        database_url=demo.url,
        rate_limit=20,
        redis_url=REDIS_URL,
        rate_limit_prefix=f"test-{uuid.uuid4().hex}",
    )
    token = demo.manifest["tokens"]["admin"]
    with in_process(settings) as first, in_process(settings) as second:
        answers = [api.get(session_path(demo), token) for _ in range(15) for api in (first, second)]
    assert [a.status_code for a in answers] == [200] * 20 + [429] * 10


def test_callers_have_budgets_of_their_own(demo: Demo, tmp_path: Path) -> None:
    """A token's budget is its own; requests without one are counted by client address."""
    settings = Settings(
        database_url=demo.url, rate_limit=3, rate_limit_file=str(tmp_path / "limit.sqlite3")
    )
    tokens = demo.manifest["tokens"]
    with in_process(settings) as api:
        admin = [api.get(session_path(demo), tokens["admin"]).status_code for _ in range(4)]
        manager = [api.get(session_path(demo), tokens["manager"]).status_code for _ in range(4)]
        anonymous = [api.get(session_path(demo)) for _ in range(4)]
        # Outside the API nothing is counted: probes, documents.
        assert api.get("/healthz").headers.get("x-ratelimit-limit") is None
    assert admin == manager == [200, 200, 200, 429]
    assert [a.status_code for a in anonymous] == [401, 401, 401, 429]
    assert_throttled(anonymous[-1])


def test_made_up_tokens_spend_their_address_budget(demo: Demo, tmp_path: Path) -> None:
    """Each refused token costs its address a request: once the address has none left,
    tokens it has not proven are refused, while a token that authenticated keeps its own
    budget."""
    settings = Settings(
        database_url=demo.url, rate_limit=5, rate_limit_file=str(tmp_path / "limit.sqlite3")
    )
    token = demo.manifest["tokens"]["admin"]
    with in_process(settings) as api:
        assert api.get(session_path(demo), token).status_code == 200
        made_up = [api.get(session_path(demo), f"cb_{uuid.uuid4().hex}") for _ in range(7)]
        assert [a.status_code for a in made_up] == [401] * 5 + [429] * 2
        assert_throttled(made_up[-1])
        assert api.get(session_path(demo), token).status_code == 200


def test_the_client_address_is_the_one_a_trusted_proxy_names(demo: Demo, tmp_path: Path) -> None:
    """Behind a trusted proxy each forwarded address has a budget; from anyone else,
    ``X-Forwarded-For`` is ignored and cannot buy a fresh budget."""
    path = session_path(demo)

    def statuses(base: str, forwarded: str) -> list[int]:
        headers = {"X-Forwarded-For": forwarded}
        return [httpx.get(base + path, headers=headers).status_code for _ in range(3)]

    budget = {"rate_limit": "2", **store_settings("local", tmp_path)}
    with serve_process(
        demo.url, {"trusted_proxies": "127.0.0.1", **budget}, directory=tmp_path
    ) as proxy:
        assert statuses(proxy.base_url, "203.0.113.1") == [401, 401, 429]
        assert statuses(proxy.base_url, "203.0.113.2") == [401, 401, 429]
    budget = {"rate_limit": "2", **store_settings("local", tmp_path / "untrusted")}
    (tmp_path / "untrusted").mkdir()
    with serve_process(
        demo.url, {"trusted_proxies": "192.0.2.1", **budget}, directory=tmp_path
    ) as direct:
        assert statuses(direct.base_url, "203.0.113.1") == [401, 401, 429]
        assert statuses(direct.base_url, "203.0.113.2") == [429, 429, 429]


def test_no_limit_when_it_is_zero(api: Any, demo: Demo) -> None:
    response = api.get(session_path(demo), demo.manifest["tokens"]["admin"])
    assert response.status_code == 200
    assert "x-ratelimit-limit" not in response.headers


# Redis that does not answer: every request is let through (fail open), within bounds.


def fail_open(
    demo: Demo, redis_url: str, caplog: pytest.LogCaptureFixture, *, bound: float
) -> None:
    """With Redis at ``redis_url`` unusable, requests past the limit are answered, each
    within ``bound`` seconds, a warning is logged once and the failure counted."""
    caplog.set_level(logging.WARNING, logger="coursebook")
    failures = metric("coursebook_rate_limit_store_failures_total")
    settings = Settings(database_url=demo.url, rate_limit=2, redis_url=redis_url, redis_timeout=0.2)
    with in_process(settings) as api:
        for _ in range(6):
            started = time.monotonic()
            response = api.get(session_path(demo), demo.manifest["tokens"]["admin"])
            assert time.monotonic() - started < bound
            assert response.status_code == 200
            assert "x-ratelimit-limit" not in response.headers
    assert metric("coursebook_rate_limit_store_failures_total") > failures
    warnings = [r for r in caplog.records if "Rate-limit store unreachable" in r.getMessage()]
    assert len(warnings) == 1


def test_redis_refusing_connections_fails_open(
    demo: Demo, caplog: pytest.LogCaptureFixture
) -> None:
    fail_open(demo, f"redis://127.0.0.1:{free_port()}/0", caplog, bound=1.0)


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port that accepts connections and never answers on them."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        for connection in accepted:
            connection.close()
        listener.close()


def test_redis_that_never_answers_fails_open_within_the_timeout(
    demo: Demo, silent_listener: int, caplog: pytest.LogCaptureFixture
) -> None:
    fail_open(demo, f"redis://127.0.0.1:{silent_listener}/0", caplog, bound=1.0)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[int, Any]]:
    """A Redis server of this test's own (so stopping it stops no one else's), and a
    function that starts it again on the same port."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is needed: apt-get install redis-server")
    port = free_port()
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        process = subprocess.Popen(
            [server, "--port", str(port), "--save", "", "--appendonly", "no"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
        )
        processes.append(process)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    start()
    try:
        yield port, start
    finally:
        for process in processes:
            process.kill()
            process.wait(10)


def test_redis_stopped_mid_run_fails_open_then_counts_again(
    demo: Demo, own_redis: tuple[int, Any], caplog: pytest.LogCaptureFixture
) -> None:
    port, start = own_redis
    caplog.set_level(logging.INFO, logger="coursebook")
    settings = Settings(
        database_url=demo.url, rate_limit=3, redis_url=f"redis://127.0.0.1:{port}/0"
    )
    token = demo.manifest["tokens"]["admin"]
    with in_process(settings) as api:

        def statuses(count: int) -> list[int]:
            return [api.get(session_path(demo), token).status_code for _ in range(count)]

        assert statuses(4) == [200, 200, 200, 429]
        subprocess.run(
            ["redis-cli", "-p", str(port), "shutdown", "nosave"], check=False, capture_output=True
        )
        assert statuses(5) == [200] * 5
        start()  # empty: the budget is whole again
        time.sleep(RETRY_SECONDS + 0.2)
        assert statuses(4) == [200, 200, 200, 429]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Rate-limit store unreachable" in m for m in messages) == 1
    assert sum("Rate-limit store answers again" in m for m in messages) == 1
