"""Request ids, the JSON access log and Prometheus ``/metrics``."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from coursebook import models as m
from coursebook.accesslog import ACCESS, JsonFormatter
from coursebook.settings import Settings
from coursebook.tokens import hash_token
from tests.support import Api, Demo, in_process, serve_process

RETRIEVE = "/api/v2/course_sessions/{id:id}"


def session_path(demo: Demo) -> str:
    return f"/api/v2/course_sessions/{demo.manifest['course_sessions']['main'][0]}"


def token_id(demo: Demo, secret: str) -> int:
    """The database id of the token ``secret``."""
    with demo.engine.connect() as conn:
        found = conn.scalar(
            select(m.api_tokens.c.id).where(m.api_tokens.c.token_hash == hash_token(secret))
        )
    assert found is not None
    return int(found)


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("abc-123_x.Y", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("has space", False),
        ("", False),
        ("../etc/passwd", False),
        ('{"json": 1}', False),
    ],
)
def test_a_well_formed_request_id_is_kept_and_any_other_replaced(
    api: Api, demo: Demo, sent: str, kept: bool
) -> None:
    headers = {"X-Request-ID": sent}
    for response in (
        api.get(session_path(demo), demo.manifest["tokens"]["admin"], headers=headers),
        api.get(session_path(demo), headers=headers),  # 401
        api.get("/nowhere", headers=headers),  # 404
    ):
        given = response.headers["x-request-id"]
        assert (given == sent) is kept
        assert len(given) <= 128


def test_every_answer_has_its_own_request_id(api: Api, demo: Demo) -> None:
    token = demo.manifest["tokens"]["admin"]
    first = api.get(session_path(demo), token)
    unchanged = api.get(session_path(demo), token, headers={"If-None-Match": first.headers["etag"]})
    asset = api.client.get("/docs/assets/swagger-ui.css")
    assert unchanged.status_code == 304
    assert asset.status_code == 200
    ids = [r.headers["x-request-id"] for r in (first, unchanged, asset, api.get("/healthz"))]
    assert len(set(ids)) == 4


@pytest.fixture
def access_lines() -> Iterator[list[str]]:
    """The access-log lines written while the test runs, as the service formats them."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(JsonFormatter().format(record))

    handler = Collect()
    ACCESS.addHandler(handler)
    try:
        yield lines
    finally:
        ACCESS.removeHandler(handler)


def test_one_json_access_line_per_request_and_never_a_secret(
    demo: Demo, access_lines: list[str]
) -> None:
    secret = demo.manifest["tokens"]["admin"]
    with in_process(Settings(database_url=demo.url, access_log=True)) as api:
        ok = api.get(session_path(demo), secret, params={"expand": "venue"})
        refused = api.get(session_path(demo), "cb_made-up-token")
        missing = api.get("/api/v2/nowhere/1", secret)
    entries = [json.loads(line) for line in access_lines]
    # (The client checking the contract fetches /openapi.json too.)
    entries = [entry for entry in entries if entry["route"] != "/openapi.json"]
    assert len(entries) == 3
    for entry, response in zip(entries, (ok, refused, missing), strict=True):
        assert entry["request_id"] == response.headers["x-request-id"]
        assert entry["status"] == response.status_code
        assert entry["method"] == "GET"
        assert isinstance(entry["duration_ms"], float) and entry["duration_ms"] > 0
        assert entry["time"].endswith("Z")
    assert entries[0]["route"] == RETRIEVE
    assert entries[0]["token_id"] == token_id(demo, secret)
    assert entries[0]["provider_id"] == demo.manifest["providers"]["main"]
    assert entries[1]["route"] == RETRIEVE
    assert entries[1]["token_id"] is None and entries[1]["provider_id"] is None
    assert entries[2]["route"] == "unmatched"
    text = "\n".join(access_lines)
    assert secret not in text and "made-up" not in text
    assert session_path(demo) not in text  # the route's template, not the path sent


def test_no_access_line_when_it_is_off(api: Api, demo: Demo, access_lines: list[str]) -> None:
    assert api.get(session_path(demo)).status_code == 401
    assert access_lines == []


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_the_requests_of_every_worker(demo: Demo, tmp_path: Path) -> None:
    """Two workers, each answering some of 40 requests on fresh connections: one scrape
    counts all of them, their latencies, the statements they ran and the memo's work,
    and each has one access-log line on standard error."""
    token = demo.manifest["tokens"]["admin"]
    with serve_process(demo.url, {"access_log": "true"}, workers=2, directory=tmp_path) as server:
        url = server.base_url + session_path(demo)
        for _ in range(40):
            answer = httpx.get(
                url, headers={"Authorization": f"Bearer {token}", "Connection": "close"}
            )
            assert answer.status_code == 200
        time.sleep(1.5)  # every worker publishes its tallies once a second
        scrape = httpx.get(server.base_url + "/metrics")
        assert scrape.status_code == 200
        assert scrape.headers["content-type"].startswith("text/plain")
        found = samples(scrape.text)
        log = server.log.read_text()
    route = (("route", RETRIEVE),)
    assert found[("coursebook_requests_total", (*route, ("status", "200")))] == 40
    assert found[("coursebook_request_duration_seconds_count", route)] == 40
    assert found[("coursebook_request_duration_seconds_bucket", (("le", "+Inf"), *route))] == 40
    assert found[("coursebook_database_statements_total", ())] >= 40
    pool = found[("coursebook_database_pool_connections", (("state", "size"),))]
    assert pool > 0
    assert found[("coursebook_memo_lookups_total", (("result", "hit"),))] > 0
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    answered = [line for line in lines if line["route"] == RETRIEVE]
    assert len(answered) == 40
    assert {line["token_id"] for line in answered} == {token_id(demo, token)}
    assert token not in log


def test_metrics_can_be_turned_off(demo: Demo) -> None:
    with in_process(Settings(database_url=demo.url, metrics=False)) as api:
        assert api.get("/metrics").status_code == 404


def test_access_lines_still_waiting_are_written_when_the_server_stops(
    demo: Demo, tmp_path: Path
) -> None:
    """The lines a worker buffers reach standard error by the time it has stopped (the
    timer has had no time to write them: the server is stopped at once)."""
    token = demo.manifest["tokens"]["admin"]
    settings = {"access_log": "true", "drain_seconds": "0"}
    with serve_process(demo.url, settings, directory=tmp_path) as server:
        with httpx.Client(base_url=server.base_url) as client:
            ids = [
                client.get(
                    session_path(demo), headers={"Authorization": f"Bearer {token}"}
                ).headers["x-request-id"]
                for _ in range(300)  # past one buffer's worth (256 lines): written at once
            ]
        server.process.terminate()  # uvicorn's graceful shutdown, then the signal's exit
        server.process.wait(30)
        log = server.log.read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert [line["request_id"] for line in lines if line["route"] == RETRIEVE] == ids
    assert all(line["status"] == 200 for line in lines if line["route"] == RETRIEVE)
