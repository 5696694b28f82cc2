"""Fixtures: demo databases per backend and clients of an app serving them.

Every test that takes a backend runs on SQLite, and on PostgreSQL when
``COURSEBOOK_TEST_DATABASE_URL`` names a server; without it, the PostgreSQL half is
deselected at collection and the summary says so in one line.

``demo`` is the demo database tests share, read-only; a test marked ``writes`` gets a
copy of its own instead. ``api`` calls an app serving that database in process; a test
marked ``wire`` gets a client of a real uvicorn on a loopback port instead: HEAD, raw
header bytes and raw request targets are only what they are on the wire.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from coursebook.settings import Settings
from tests.support import (
    BACKENDS,
    POSTGRES_URL,
    Api,
    Demo,
    DemoTemplate,
    build_demo_template,
    demo_copy,
    in_process,
    live_server,
)

# The suite makes thousands of requests with a handful of tokens, and reads no access log
# on standard error: tests of the rate limit and the log set their own (Settings reads
# these variables).
os.environ.setdefault("COURSEBOOK_RATE_LIMIT", "0")
os.environ.setdefault("COURSEBOOK_ACCESS_LOG", "false")

NO_POSTGRES = "PostgreSQL tests not run: set COURSEBOOK_TEST_DATABASE_URL to a server to run them"


def pytest_report_header() -> str:
    return "backends: sqlite, postgresql" if POSTGRES_URL else NO_POSTGRES


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect, rather than skip, what cannot run: a test marked ``postgresql`` on
    SQLite, and without a PostgreSQL server the PostgreSQL half."""

    def runs(item: pytest.Item) -> bool:
        backend = _backend_of(item)
        if backend == "sqlite" and item.get_closest_marker("postgresql") is not None:
            return False
        return bool(POSTGRES_URL) or backend != "postgresql"

    deselected = [item for item in items if not runs(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if runs(item)]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not POSTGRES_URL:
        terminalreporter.write_line(NO_POSTGRES)


def _backend_of(item: pytest.Item) -> object:
    callspec = getattr(item, "callspec", None)
    return None if callspec is None else callspec.params.get("backend")


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def demo_template(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoTemplate]:
    """The migrated demo (seed 42), built once per backend; every demo is a copy."""
    with build_demo_template(backend, tmp_path_factory.mktemp(f"{backend}-template")) as built:
        yield built


@pytest.fixture(scope="session")
def shared_demo(
    backend: str, demo_template: DemoTemplate, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Demo]:
    """The demo that tests which do not write share; its engine refuses writes."""
    with demo_copy(demo_template, tmp_path_factory.mktemp(backend), read_only=True) as shared:
        yield shared


@pytest.fixture
def demo(
    request: pytest.FixtureRequest,
    demo_template: DemoTemplate,
    shared_demo: Demo,
    tmp_path: Path,
) -> Iterator[Demo]:
    """The shared demo, or for a test marked ``writes`` a fresh copy of its own."""
    if request.node.get_closest_marker("writes") is None:
        yield shared_demo
        return
    with demo_copy(demo_template, tmp_path) as own:
        yield own


@pytest.fixture(scope="session")
def shared_api(shared_demo: Demo) -> Iterator[Api]:
    """An in-process client of the app serving the shared demo."""
    with in_process(Settings(database_url=shared_demo.url)) as client:
        yield client


@pytest.fixture(scope="session")
def live_api(shared_demo: Demo) -> Iterator[Api]:
    """A client of uvicorn serving the shared demo on a loopback port."""
    with live_server(Settings(database_url=shared_demo.url)) as client:
        yield client


@pytest.fixture
def api(request: pytest.FixtureRequest, demo: Demo, shared_demo: Demo) -> Iterator[Api]:
    """A client of an app serving ``demo``: in process, or over the wire when marked
    ``wire``."""
    wire = request.node.get_closest_marker("wire") is not None
    if demo is shared_demo:
        client: Api = request.getfixturevalue("live_api" if wire else "shared_api")
        yield client
        return
    with (live_server if wire else in_process)(Settings(database_url=demo.url)) as own:
        yield own
