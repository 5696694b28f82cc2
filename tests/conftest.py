"""Fixtures: a migrated demo database per backend, a live server on it, and its client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from coursebook.db import create_db_engine
from coursebook.demo import generate
from coursebook.migrate import upgrade
from coursebook.settings import Settings
from tests.support import BACKENDS, Api, Demo, LiveServer, empty_database, live_server


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
def server(demo: Demo) -> Iterator[LiveServer]:
    with live_server(Settings(database_url=demo.url)) as live:
        yield live


@pytest.fixture(scope="session")
def api(server: LiveServer) -> Iterator[Api]:
    with Api(server) as client:
        yield client
