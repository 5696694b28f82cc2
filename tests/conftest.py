"""Fixtures: a migrated demo database per backend and clients of an app serving it.

``api`` calls the app in process. A test marked ``wire`` gets a client of a real
uvicorn on a loopback port instead: HEAD, raw header bytes and raw request targets are
only what they are on the wire.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from coursebook.db import create_db_engine
from coursebook.demo import generate
from coursebook.migrate import upgrade
from coursebook.settings import Settings
from tests.support import BACKENDS, Api, Demo, empty_database, in_process, live_server


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def demo(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with empty_database(backend, tmp_path_factory.mktemp(backend)) as url:
        upgrade(url)
        engine = create_db_engine(url)
        manifest = generate(engine, seed=42, scale="small", progress=False)
        yield Demo(url, manifest, engine)
        engine.dispose()


@pytest.fixture(scope="session")
def shared_api(demo: Demo) -> Iterator[Api]:
    """An in-process client of the app serving the demo."""
    with in_process(Settings(database_url=demo.url)) as client:
        yield client


@pytest.fixture(scope="session")
def live_api(demo: Demo) -> Iterator[Api]:
    """A client of uvicorn serving the demo on a loopback port."""
    with live_server(Settings(database_url=demo.url)) as client:
        yield client


@pytest.fixture
def api(request: pytest.FixtureRequest, demo: Demo) -> Api:
    """The client of the demo this test needs: in process, or over the wire when marked
    ``wire``."""
    wire = request.node.get_closest_marker("wire") is not None
    client: Api = request.getfixturevalue("live_api" if wire else "shared_api")
    return client
