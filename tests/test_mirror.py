"""``coursebook mirror`` against a live demo server, on SQLite and PostgreSQL: the mirror
answers as its source does; a source that throttles, fails and cuts connections, and a
mirror killed halfway, still end in the same data; a source that never answers is one
clear error and writes nothing."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import Engine

from coursebook.db import create_db_engine
from coursebook.migrate import upgrade
from coursebook.mirror import Mirrored, MirrorError, mirror
from coursebook.settings import Settings
from coursebook.source import Retry, Source, SourceError
from coursebook.tokens import create_token
from tests.support import Api, Demo, empty_database, free_port, in_process
from tests.test_transfer import answers, counts, every_path, exported, imported, ndjson, records

MAIN = 1
ROLES = ("admin", "instructor", "customer")
#: What the mirror cannot read from the API, taken from the source's export instead.
ACCOUNTS = ("provider", "user", "staff", "customer")
QUICK = Retry(attempts=30, base=0.005, cap=0.05)


@pytest.fixture
def empty(backend: str, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty database of the backend."""
    with empty_database(backend, tmp_path) as url:
        upgrade(url)
        engine = create_db_engine(url)
        yield engine
        engine.dispose()


@pytest.fixture(scope="module")
def reference(
    backend: str, live_api: Api, shared_demo: Demo, tmp_path_factory: pytest.TempPathFactory
) -> bytes:
    """The export of a mirror of the demo's main provider into an empty database, made
    straight from the source with no fault: what every other mirror must end as."""
    with empty_database(backend, tmp_path_factory.mktemp("reference")) as url:
        upgrade(url)
        engine = create_db_engine(url)
        try:
            with source_of(live_api.base_url, shared_demo) as source:
                done = mirror(engine, source, tmp_path_factory.mktemp("state") / "state.ndjson")
            assert done.written and done.counts["course_session"] > 100
            return exported(engine, MAIN)
        finally:
            engine.dispose()


def source_of(base_url: str, demo: Demo, **options: Any) -> Source:
    return Source(base_url, demo.manifest["tokens"]["admin"], MAIN, retry=QUICK, **options)


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


# -- a source that misbehaves: a proxy in front of the live one --------------------------------


class Proxy:
    """An HTTP proxy in front of ``upstream`` that, for a ``faulty`` share of requests,
    answers 429 (``Retry-After`` 0 or 1), answers 503, or cuts the connection; and that,
    with ``hold_after``, stops answering after that many pages until ``release``."""

    def __init__(self, upstream: str, *, faulty: float = 0.0, seed: int = 7) -> None:
        self.upstream = upstream
        self.faulty = faulty
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.faults: dict[str, int] = {"429": 0, "503": 0, "cut": 0}
        #: The query strings of the pages answered, in order.
        self.pages: list[str] = []
        self.hold_after: int | None = None
        #: Answers given first, in order, before any random fault: (status, Retry-After).
        self.script: list[tuple[int, str | None]] = []
        self.released = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                proxy.answer(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Proxy:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        with self.lock:
            roll = self.random.random()
            fault: str | None = None
            retry_after: str | None = None
            if self.script:
                status, retry_after = self.script.pop(0)
                fault = str(status)
            elif roll < self.faulty:
                fault = ("429", "503", "cut")[int(roll / self.faulty * 3)]
                self.faults[fault] += 1
                if fault == "429":
                    retry_after = self.random.choice(("0", "0", "1"))
            held = self.hold_after is not None and len(self.pages) >= self.hold_after
        if held:  # until its client is gone: never answered
            self.released.wait(60)
            fault = "cut"
        try:
            self.reply(handler, fault, retry_after)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (killed)

    def reply(
        self, handler: BaseHTTPRequestHandler, fault: str | None, retry_after: str | None
    ) -> None:
        if fault == "cut":
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault is not None:
            body = orjson.dumps({"code": "x", "field_errors": {}, "message": fault, "type": "x"})
            handler.send_response(int(fault))
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            if retry_after is not None:
                handler.send_header("Retry-After", retry_after)
            handler.end_headers()
            handler.wfile.write(body)
            return
        headers = {
            k: v
            for k, v in handler.headers.items()
            if k.lower() in ("authorization", "teamup-provider-id", "accept")
        }
        response = httpx.get(self.upstream + handler.path, headers=headers, timeout=30)
        with self.lock:
            if response.status_code == 200:
                self.pages.append(handler.path)
        handler.send_response(response.status_code)
        handler.send_header("Content-Type", response.headers.get("content-type", ""))
        handler.send_header("Content-Length", str(len(response.content)))
        handler.end_headers()
        handler.wfile.write(response.content)


# -- the mirror answers as its source ----------------------------------------------------------


@pytest.mark.slow
def test_a_mirror_answers_as_its_source_for_the_same_accounts(
    shared_demo: Demo, live_api: Api, empty: Engine, tmp_path: Path
) -> None:
    """Accounts (users, staff and customer profiles) are not served by the API: they are
    imported from the source's export first, as docs/data.md says, and the customer's
    memberships after the mirror; then the same users get tokens of the same secrets."""
    source_records = records(exported(shared_demo.engine, MAIN))
    imported(empty, ndjson(*(r for r in source_records if r["object"] in ACCOUNTS)))
    with source_of(live_api.base_url, shared_demo) as source:
        mirror(empty, source, tmp_path / "state.ndjson")
    held = [r for r in source_records if r["object"] == "customer_membership"]
    imported(empty, ndjson(*held), provider_id=MAIN)

    manifest = shared_demo.manifest
    tokens = {role: manifest["tokens"][role] for role in ROLES}
    with empty.begin() as conn:
        for role in ROLES:
            user = manifest["users"][role]["id"]
            create_token(conn, created_at=datetime.now(UTC), user_id=user, secret=tokens[role])
    paths = every_path(shared_demo.engine)
    paths += [
        "/api/v2/instructors?page_size=100&expand=availability_schedules,icalendar_links",
        "/api/v2/venue_rooms?page_size=100&expand=venue",
    ]
    with in_process(Settings(database_url=shared_demo.url)) as original:
        before = answers(original, tokens, paths)
    with in_process(Settings(database_url=url_of(empty))) as copy:
        after = answers(copy, tokens, paths)
    for role in ROLES:
        assert sum(1 for (r, _), v in before.items() if r == role and v[0] == 200) > 100, role
    differ = [key for key in before if before[key] != after[key]]
    assert not differ, f"{len(differ)} of {len(before)} answers differ, first {differ[:3]}"


def test_a_mirror_into_an_empty_database_names_what_it_could_not_read(
    reference: bytes, shared_demo: Demo
) -> None:
    mirrored = {(r["object"], r["id"]): r for r in records(reference)}
    original = {(r["object"], r["id"]): r for r in records(exported(shared_demo.engine, MAIN))}
    provider = mirrored[("provider", MAIN)]
    assert provider["slug"] == original[("provider", MAIN)]["slug"]
    assert provider["timezone"] == original[("provider", MAIN)]["timezone"]
    assert provider["currency_code"] == original[("provider", MAIN)]["currency_code"]
    kinds = {kind for kind, _ in mirrored}
    assert not kinds & {"customer", "customer_membership", "attendance"}
    # An instructor's staff profile carries the served permissions, on a stand-in user.
    staff = [r for r in mirrored.values() if r["object"] == "staff"]
    assert staff and all(
        r["permissions"] == original[("staff", r["id"])]["permissions"] for r in staff
    )
    users = [r for r in mirrored.values() if r["object"] == "user"]
    assert len(users) == len(staff) and all(u["email"].endswith("@mirror.invalid") for u in users)
    sessions = [r for r in original.values() if r["object"] == "course_session"]
    for session in sessions:
        copy = mirrored[("course_session", session["id"])]
        assert copy["attending_count"] == session["attending_count"]
        assert copy["instructors"] == session["instructors"]


# -- faults -----------------------------------------------------------------------------------


def test_a_source_answering_429_503_and_cutting_connections_still_ends_identical(
    shared_demo: Demo, live_api: Api, empty: Engine, tmp_path: Path, reference: bytes
) -> None:
    with Proxy(live_api.base_url, faulty=0.4) as proxy, source_of(proxy.url, shared_demo) as source:
        mirror(empty, source, tmp_path / "state.ndjson")
    assert all(n > 0 for n in proxy.faults.values()), proxy.faults
    assert source.requests == len(proxy.pages) + sum(proxy.faults.values())
    assert exported(empty, MAIN) == reference


def test_retry_after_is_waited_as_asked_in_seconds_or_as_a_date(
    shared_demo: Demo, live_api: Api
) -> None:
    in_20_seconds = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    waits: list[float] = []
    retry = Retry(attempts=5, base=0.01, cap=60)
    with Proxy(live_api.base_url) as proxy:
        proxy.script = [(429, "7"), (503, None), (429, in_20_seconds), (503, "2")]
        token = shared_demo.manifest["tokens"]["admin"]
        with Source(proxy.url, token, MAIN, retry=retry, sleep=waits.append) as source:
            assert source.get("/api/v2/venue_rooms", {})["count"] > 0
    assert waits[0] == 7 and waits[1] <= 0.02 and 15 < waits[2] <= 20 and waits[3] == 2
    with Proxy(live_api.base_url) as proxy:
        proxy.script = [(503, None)] * 5
        with (
            Source(proxy.url, "t", MAIN, retry=retry, sleep=waits.append) as source,
            pytest.raises(SourceError, match="after 5 tries .*503 Service Unavailable: 503"),
        ):
            source.get("/api/v2/venue_rooms", {})


def run_mirror(
    base_url: str, demo: Demo, engine: Engine, state: Path, *options: str
) -> subprocess.Popen[bytes]:
    command = [str(Path(sys.executable).with_name("coursebook")), "mirror", "--quiet"]
    command += ["--from", base_url, "--provider-id", str(MAIN), "--state", str(state), *options]
    env = {
        **os.environ,
        "COURSEBOOK_DATABASE_URL": url_of(engine),
        "COURSEBOOK_MIRROR_TOKEN": demo.manifest["tokens"]["admin"],
    }
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_mirror_killed_halfway_goes_on_where_it_stopped_and_ends_identical(
    shared_demo: Demo, live_api: Api, empty: Engine, tmp_path: Path, reference: bytes
) -> None:
    state = tmp_path / "state.ndjson"
    before = counts(empty)
    with Proxy(live_api.base_url) as proxy:
        proxy.hold_after = 4
        first = run_mirror(proxy.url, shared_demo, empty, state)
        deadline = time.monotonic() + 60
        # The header, then one line a page: the fourth page is kept once it has 5 lines.
        while not state.exists() or len(state.read_bytes().splitlines()) < 5:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the mirror kept no pages"
            time.sleep(0.05)
        first.kill()
        first.communicate()
        assert counts(empty) == before, "a killed mirror wrote something"
        fetched = list(proxy.pages)
        assert len(fetched) == 4
        proxy.hold_after = None
        proxy.released.set()
        second = run_mirror(proxy.url, shared_demo, empty, state)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, err.decode()
        again = proxy.pages[len(fetched) :]
    assert again and not set(again) & set(fetched), "pages were fetched again"
    assert not state.exists(), "the state goes once the mirror is written"
    assert exported(empty, MAIN) == reference


def test_a_source_that_never_answers_is_a_clear_error_and_writes_nothing(
    shared_demo: Demo, empty: Engine, tmp_path: Path
) -> None:
    before = counts(empty)
    nothing = f"http://127.0.0.1:{free_port()}"
    with (
        source_of(nothing, shared_demo) as source,
        pytest.raises(SourceError, match="did not answer after 30 tries .*Connect"),
    ):
        mirror(empty, source, tmp_path / "state.ndjson")
    assert source.requests == QUICK.attempts

    silent = socket.create_server(("127.0.0.1", 0))
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        quick = httpx.Timeout(0.3)
        with (
            Source(url, "secret", MAIN, retry=Retry(attempts=2, base=0.01), timeout=quick) as src,
            pytest.raises(SourceError, match="did not answer after 2 tries .*ReadTimeout"),
        ):
            mirror(empty, src, tmp_path / "silent.ndjson")
    finally:
        silent.close()
    assert counts(empty) == before

    process = run_mirror(nothing, shared_demo, empty, tmp_path / "cli.ndjson", "--retries", "2")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    message = " ".join(err.decode().split())
    assert "did not answer after 2 tries" in message and "Traceback" not in message
    assert shared_demo.manifest["tokens"]["admin"] not in message + out.decode()
    assert counts(empty) == before


def test_a_refused_token_is_not_tried_again_and_never_shown(
    shared_demo: Demo, live_api: Api, empty: Engine, tmp_path: Path
) -> None:
    with (
        Source(live_api.base_url, "cb_wrong_token", MAIN, retry=QUICK) as source,
        pytest.raises(SourceError, match="refused the request: 401") as refused,
    ):
        mirror(empty, source, tmp_path / "state.ndjson")
    assert source.requests == 1
    assert "cb_wrong_token" not in str(refused.value)


# -- the state file and a dry run ---------------------------------------------------------------


def test_the_state_file_never_holds_the_token_and_belongs_to_one_mirror(
    shared_demo: Demo, live_api: Api, empty: Engine, tmp_path: Path
) -> None:
    state = tmp_path / "state.ndjson"
    with source_of(live_api.base_url, shared_demo) as source:
        done = mirror(empty, source, state, dry_run=True)
    data = state.read_bytes()
    assert data and shared_demo.manifest["tokens"]["admin"].encode() not in data
    assert oct(state.stat().st_mode & 0o777) == "0o600"
    # A dry run keeps what it fetched: the same mirror goes on from it, fetching nothing.
    with source_of(live_api.base_url, shared_demo) as source:
        again = mirror(empty, source, state, dry_run=True)
    assert source.requests == 0 and again.counts == done.counts
    # A last line cut short (a kill while writing) is dropped; the pages before it stay.
    lines = data.splitlines(keepends=True)
    state.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    with source_of(live_api.base_url, shared_demo) as source:
        cut = mirror(empty, source, state, dry_run=True)
    assert source.requests == 1 and cut.counts == done.counts
    # A file that is no state is refused and left as it is, --restart or not.
    other_file = tmp_path / "notes.txt"
    other_file.write_bytes(b"my notes\n")
    for restart in (False, True):
        with (
            source_of(live_api.base_url, shared_demo) as source,
            pytest.raises(MirrorError, match="not a mirror's state file"),
        ):
            mirror(empty, source, other_file, restart=restart)
    assert other_file.read_bytes() == b"my notes\n"
    # Another source's state is refused, not mixed in.
    with (
        Source(live_api.base_url + "/", "t", 2) as other,
        pytest.raises(MirrorError, match="state of another mirror"),
    ):
        mirror(empty, other, state)


def test_a_dry_run_says_what_would_change_and_writes_nothing(
    shared_demo: Demo, live_api: Api, empty: Engine, tmp_path: Path
) -> None:
    before = counts(empty)
    with source_of(live_api.base_url, shared_demo) as source:
        done: Mirrored = mirror(empty, source, tmp_path / "state.ndjson", dry_run=True)
    assert not done.written and counts(empty) == before
    assert done.new == done.counts and done.counts["course_session"] > 100

    with source_of(live_api.base_url, shared_demo) as source:
        mirror(empty, source, tmp_path / "state.ndjson", restart=True)
    with source_of(live_api.base_url, shared_demo) as source:
        again = mirror(empty, source, tmp_path / "state.ndjson", dry_run=True)
    # The provider and the stand-ins for instructors' users are there now: not written again.
    assert again.new == {}
    assert again.counts == {k: n for k, n in done.counts.items() if k not in ("provider", "user")}
