"""Round trips to PostgreSQL, counted on the wire by a proxy between the service and the
server (``bench/proxy.py``): a warm plain retrieve takes one (the session, beside the
write count that says the remembered token is current; no transaction control), an
expansion one more per level of relations (each level one statement, which reads the
write count too: no BEGIN or ROLLBACK, ``coursebook.memo``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from bench.proxy import Proxy, running
from coursebook.demo import FULL_EXPANSION
from coursebook.settings import Settings
from tests.support import Api, Demo, in_process

pytestmark = pytest.mark.postgresql


@pytest.fixture
def proxied(demo: Demo) -> Iterator[tuple[Api, Proxy]]:
    url = make_url(demo.url)
    with running(url.host or "127.0.0.1", url.port or 5432) as proxy:
        through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        with in_process(Settings(database_url=through)) as client:
            yield client, proxy


def count(client: Api, proxy: Proxy, demo: Demo, **params: str) -> tuple[int, int]:
    """Round trips and SQL statements of one request, made once before (a warm pool,
    prepared statements)."""
    path = f"/api/v2/course_sessions/{demo.manifest['course_sessions']['main'][0]}"
    token = demo.manifest["tokens"]["admin"]
    assert client.get(path, token, params=params).status_code == 200
    trips, statements = proxy.round_trips, client.counter.count
    assert client.get(path, token, params=params).status_code == 200
    return proxy.round_trips - trips, client.counter.count - statements


def test_a_plain_retrieve_takes_one_round_trip(proxied: tuple[Api, Proxy], demo: Demo) -> None:
    client, proxy = proxied
    assert count(client, proxy, demo) == (1, 1)


@pytest.mark.parametrize(
    ("expand", "levels"), [("venue", 1), ("venue,instructors", 1), (FULL_EXPANSION, 4)]
)
def test_an_expansion_takes_a_round_trip_per_level(
    proxied: tuple[Api, Proxy], demo: Demo, expand: str, levels: int
) -> None:
    client, proxy = proxied
    assert count(client, proxy, demo, expand=expand) == (1 + levels, 1 + levels)
