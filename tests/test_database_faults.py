"""PostgreSQL misbehaving, for real: a port where nothing listens, a server that accepts
and never answers, a statement that cannot finish, a backend killed mid-request, the
server stopped and started again, and restarted. The service answers 503 within its
bounds meanwhile, keeps answering /healthz, and reads again once the database is back."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
from sqlalchemy import Connection, create_engine, text

from bench import cluster
from coursebook.settings import Settings
from tests.support import Api, Demo, free_port, in_process, live_server

#: Bounds small enough to keep the suite quick; every assertion on time allows seconds
#: more, since a loaded machine is slow (these check that waits end, not how fast).
CONNECT = 0.5
STATEMENT = 1.0
SLACK = 4.0


class SilentServer:
    """A TCP listener that accepts connections and never says a word."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def unreachable_settings(port: int) -> Settings:
    return Settings(
        database_url=f"postgresql+psycopg://nobody@127.0.0.1:{port}/none",
        database_connect_timeout=CONNECT,
        database_statement_timeout=STATEMENT,
        database_pool_timeout=CONNECT,
    )


def refused_port() -> int:
    port = free_port()  # bound and released: nothing listens there now
    return port


def answers_unavailable(client: Api, session: str, token: str, port: str) -> None:
    """With the database away: ``session``, a list and ``/readyz`` are 503
    ``service_unavailable`` within the connect bound, naming neither the database's port
    nor the driver; ``/healthz`` answers 200 at once."""
    for path in (session, "/api/v2/course_sessions", "/readyz"):
        started = time.monotonic()
        response = client.get(path, token)
        assert time.monotonic() - started < CONNECT + SLACK, path
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "service_unavailable"
        assert port not in response.text and "asyncpg" not in response.text
    started = time.monotonic()
    assert client.get("/healthz").status_code == 200
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_a_database_that_is_not_there_is_503_within_the_bound(
    kind: str, silent: SilentServer
) -> None:
    port = refused_port() if kind == "refused" else silent.port
    with in_process(unreachable_settings(port)) as client:
        answers_unavailable(client, "/api/v2/course_sessions/1", "cb_whatever", str(port))
    if kind == "silent":
        assert silent.accepted, "the service never reached the silent server"


@pytest.mark.wire
def test_healthz_answers_while_requests_wait_for_a_silent_database(silent: SilentServer) -> None:
    settings = unreachable_settings(silent.port).model_copy(
        update={"database_connect_timeout": 3.0, "database_pool_timeout": 3.0}
    )
    with live_server(settings) as client, ThreadPoolExecutor(4) as pool:
        waiting = [
            pool.submit(client.get, "/api/v2/course_sessions/1", "cb_whatever") for _ in range(4)
        ]
        time.sleep(0.3)  # the four are now waiting on the silent server
        for _ in range(5):
            started = time.monotonic()
            assert client.get("/healthz").status_code == 200
            assert time.monotonic() - started < 1.0
            assert not all(future.done() for future in waiting)
        assert [future.result().status_code for future in waiting] == [503] * 4


def test_sigterm_stops_a_worker_within_the_bound(silent: SilentServer, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "COURSEBOOK_DATABASE_URL": f"postgresql+psycopg://nobody@127.0.0.1:{silent.port}/none",
        "COURSEBOOK_DATABASE_CONNECT_TIMEOUT": "2",
        "COURSEBOOK_DATABASE_POOL_TIMEOUT": "2",
        "COURSEBOOK_LOG_LEVEL": "warning",
    }
    command = [str(Path(sys.executable).with_name("coursebook")), "serve", "--port", str(port)]
    server = subprocess.Popen(command, env=env, cwd=tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(
                httpx.get,
                f"{base}/api/v2/course_sessions/1",
                timeout=30,
                headers={"Authorization": "Bearer cb_whatever"},
            )
            time.sleep(0.3)
            started = time.monotonic()
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=2 + SLACK)
            assert time.monotonic() - started < 2 + SLACK
            assert waiting.result().status_code == 503
    finally:
        server.kill()
        server.wait()


# -- against the real PostgreSQL --------------------------------------------------------


@pytest.fixture
def pg(demo: Demo) -> Demo:
    assert demo.url.startswith("postgresql"), "mark the test postgresql"
    return demo


def others(url: str, select: str, condition: str = "true") -> str:
    """``SELECT select`` over the other sessions of ``url``'s database meeting ``condition``."""
    name = url.rsplit("/", 1)[1]
    return (
        f"SELECT {select} FROM pg_stat_activity "
        f"WHERE datname = '{name}' AND pid <> pg_backend_pid() AND {condition}"
    )


def admin_session(demo: Demo) -> str:
    return f"/api/v2/course_sessions/{demo.manifest['course_sessions']['main'][0]}"


@pytest.mark.postgresql
@pytest.mark.writes
def test_a_killed_backend_costs_no_failed_request(pg: Demo) -> None:
    token = pg.manifest["tokens"]["admin"]
    with in_process(Settings(database_url=pg.url)) as client:
        assert client.get(admin_session(pg), token).status_code == 200
        killer = create_engine(pg.url, isolation_level="AUTOCOMMIT")
        with killer.connect() as conn:
            killed = conn.execute(
                text(others(pg.url, "count(pg_terminate_backend(pid))"))
            ).scalar_one()
        killer.dispose()
        assert killed >= 1
        assert client.get(admin_session(pg), token).status_code == 200


@pytest.mark.postgresql
@pytest.mark.writes
def test_a_statement_that_cannot_finish_is_503_then_the_next_one_reads(pg: Demo) -> None:
    token = pg.manifest["tokens"]["admin"]
    settings = Settings(database_url=pg.url, database_statement_timeout=STATEMENT)
    with in_process(settings) as client:
        assert client.get(admin_session(pg), token).status_code == 200
        locker = create_engine(pg.url)
        with locker.connect() as conn:
            conn.execute(text("LOCK TABLE course_sessions IN ACCESS EXCLUSIVE MODE"))
            started = time.monotonic()
            response = client.get(admin_session(pg), token)
            assert time.monotonic() - started < STATEMENT + SLACK
            assert response.status_code == 503
            conn.rollback()
        locker.dispose()
        assert client.get(admin_session(pg), token).status_code == 200


class Held(NamedTuple):
    """A request of the service waiting on a lock another connection holds."""

    lock: Connection
    admin: Connection
    request: Future[httpx.Response]


@contextmanager
def a_request_held_on_a_lock(
    pg: Demo, client: Api, token: str, pool: ThreadPoolExecutor
) -> Iterator[Held]:
    """Lock the sessions table, send a request that must wait for it, and yield once the
    request's backend waits on the lock (within 5 s); ``lock.rollback()`` lets it go."""
    admin_engine = create_engine(pg.url, isolation_level="AUTOCOMMIT")
    locker = create_engine(pg.url)
    try:
        with locker.connect() as lock, admin_engine.connect() as admin:
            lock.execute(text("LOCK TABLE course_sessions IN ACCESS EXCLUSIVE MODE"))
            request = pool.submit(client.get, admin_session(pg), token)
            deadline = time.monotonic() + 5
            while not admin.execute(
                text(others(pg.url, "count(*)", "wait_event_type = 'Lock'"))
            ).scalar_one():
                assert time.monotonic() < deadline, "the request never waited on the lock"
                time.sleep(0.05)
            yield Held(lock, admin, request)
    finally:
        locker.dispose()
        admin_engine.dispose()


@pytest.mark.postgresql
@pytest.mark.writes
def test_a_backend_killed_mid_request_is_read_again(pg: Demo) -> None:
    """The request's statement waits on a lock; its backend is killed while it waits; it
    is read again on a new connection, which finds the lock gone."""
    token = pg.manifest["tokens"]["admin"]
    settings = Settings(database_url=pg.url, database_statement_timeout=10)
    with in_process(settings) as client, ThreadPoolExecutor(1) as pool:
        assert client.get(admin_session(pg), token).status_code == 200
        with a_request_held_on_a_lock(pg, client, token, pool) as held:
            held.admin.execute(
                text(others(pg.url, "pg_terminate_backend(pid)", "wait_event_type = 'Lock'"))
            )
            held.lock.rollback()
            assert held.request.result().status_code == 200


needs_cluster = pytest.mark.skipif(not cluster.available(), reason="no pg_ctlcluster here")


@pytest.mark.postgresql
@pytest.mark.writes
@needs_cluster
def test_a_restarted_server_costs_no_failed_request(pg: Demo) -> None:
    token = pg.manifest["tokens"]["admin"]
    with in_process(Settings(database_url=pg.url)) as client:
        for _ in range(3):  # several pooled connections, all lost in the restart
            assert client.get(admin_session(pg), token).status_code == 200
        cluster.control("restart")
        assert client.get(admin_session(pg), token).status_code == 200
        assert client.get("/readyz").status_code == 200


@pytest.mark.postgresql
@pytest.mark.writes
@needs_cluster
def test_a_stopped_server_is_503_while_down_and_the_first_request_back_reads(pg: Demo) -> None:
    token = pg.manifest["tokens"]["admin"]
    settings = Settings(
        database_url=pg.url,
        database_connect_timeout=CONNECT,
        database_statement_timeout=STATEMENT,
        database_pool_timeout=CONNECT,
    )
    with in_process(settings) as client:
        assert client.get(admin_session(pg), token).status_code == 200
        cluster.control("stop")
        try:
            answers_unavailable(client, admin_session(pg), token, "5432")
        finally:
            cluster.control("start")
        assert client.get(admin_session(pg), token).status_code == 200
        assert client.get("/readyz").status_code == 200


@pytest.mark.postgresql
@pytest.mark.writes
def test_a_request_finding_every_connection_busy_is_503_within_the_pool_wait(pg: Demo) -> None:
    """A worker's connections are bounded: with its one connection held by a request
    waiting on a lock, the next request waits at most the pool wait, and is a 503; the
    first then completes, and the connection serves the next."""
    token = pg.manifest["tokens"]["admin"]
    settings = Settings(
        database_url=pg.url,
        database_pool_size=1,
        database_pool_timeout=CONNECT,
        database_statement_timeout=10,
    )
    with in_process(settings) as client, ThreadPoolExecutor(1) as pool:
        assert client.get(admin_session(pg), token).status_code == 200
        with a_request_held_on_a_lock(pg, client, token, pool) as held:
            started = time.monotonic()
            response = client.get(admin_session(pg), token)
            waited = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert response.json()["code"] == "service_unavailable"
            assert CONNECT - 0.1 <= waited < CONNECT + SLACK
            held.lock.rollback()
            assert held.request.result().status_code == 200
        assert client.get(admin_session(pg), token).status_code == 200


@pytest.mark.postgresql
@pytest.mark.writes
def test_a_request_waiting_for_a_connection_gets_the_one_returned(pg: Demo) -> None:
    """With one connection held by a request waiting on a lock, the next request waits
    for it (within the pool wait) and is answered on it once the first is done."""
    token = pg.manifest["tokens"]["admin"]
    settings = Settings(
        database_url=pg.url,
        database_pool_size=1,
        database_pool_timeout=10,
        database_statement_timeout=10,
    )
    with in_process(settings) as client, ThreadPoolExecutor(2) as pool:
        assert client.get(admin_session(pg), token).status_code == 200
        with a_request_held_on_a_lock(pg, client, token, pool) as held:
            waiting = pool.submit(client.get, admin_session(pg), token)
            time.sleep(0.3)
            assert not waiting.done()  # no connection for it yet
            held.lock.rollback()
            assert held.request.result().status_code == 200
            assert waiting.result().status_code == 200
