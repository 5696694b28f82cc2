"""Hostile request heads against ``coursebook serve`` itself: limits on the request
line, the number and the size of header fields, enforced before a worker buffers
them, each answered in TeamUp's error body; repeated credential headers and foreign
hosts refused."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support import Demo, Served, serve_process

LIMITS = {"max_request_line": "4096", "max_header_count": "50", "max_header_bytes": "16384"}


@pytest.fixture(scope="module")
def served(shared_demo: Demo) -> Iterator[Served]:
    with serve_process(shared_demo.url, LIMITS) as server:
        yield server


def exchange(served: Served, head: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` on a new connection as fast as the socket takes it, and read the
    answer: status, headers and body."""
    address = urlsplit(served.base_url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        try:
            sock.sendall(head)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before all was sent: the answer is already waiting
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    status_line, _, rest = received.partition(b"\r\n")
    header_block, _, body = rest.partition(b"\r\n\r\n")
    headers = {}
    for line in header_block.split(b"\r\n"):
        name, _, value = line.partition(b":")
        headers[name.decode().lower()] = value.decode().strip()
    return int(status_line.split()[1]), headers, body


def request(target: str = "/healthz", *headers: str, host: str = "127.0.0.1") -> bytes:
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}", *headers, "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def error_body(body: bytes) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(body)
    assert set(parsed) == {"code", "field_errors", "message", "type"}
    assert "Traceback" not in parsed["message"]
    return parsed


def test_a_head_within_every_limit_is_served(served: Served) -> None:
    fields = [f"X-Filler-{n}: {'a' * 200}" for n in range(45)]
    status, _, body = exchange(served, request("/healthz?" + "q" * 3000, *fields))
    assert status == 200, body
    assert json.loads(body) == {"status": "ok"}


def test_a_head_larger_than_the_limit_is_431(served: Served) -> None:
    status, headers, body = exchange(served, request("/healthz", f"X-Big: {'a' * 20_000}"))
    assert status == 431
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    parsed = error_body(body)
    assert parsed["code"] == "request_header_fields_too_large"
    assert parsed["message"] == "The request's headers exceed the limit of 16384 bytes."
    assert parsed["type"] == "invalid_request_error"


def test_too_many_header_fields_are_431(served: Served) -> None:
    fields = [f"X-Field-{n}: 1" for n in range(60)]
    status, _, body = exchange(served, request("/healthz", *fields))
    assert status == 431
    assert error_body(body)["message"] == "The request exceed the limit of 50 header fields."


def test_a_long_request_target_is_414(served: Served) -> None:
    status, _, body = exchange(served, request("/healthz?" + "q" * 5000))
    assert status == 414
    parsed = error_body(body)
    assert parsed["code"] == "uri_too_long"
    assert parsed["message"] == "The request target is longer than 4096 bytes."


def test_a_malformed_request_is_400_in_the_error_body(served: Served) -> None:
    status, _, body = exchange(served, b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n")
    assert status == 400
    assert error_body(body)["code"] == "parse_error"


def peak_memory_kib(pid: int) -> int:
    """The process's peak resident set (``VmHWM``), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


def test_huge_headers_never_reach_the_workers_memory(served: Served) -> None:
    """Three concurrent 20 MB headers: each refused once its head passes the limit, the
    rest dropped as it arrives, so the worker's peak memory barely moves."""
    before = peak_memory_kib(served.process.pid)
    answers: list[int] = []
    huge = request("/healthz", f"X-Huge: {'a' * 20_000_000}")

    def send() -> None:
        answers.append(exchange(served, huge)[0])

    threads = [threading.Thread(target=send) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert answers == [431, 431, 431]
    grown = peak_memory_kib(served.process.pid) - before
    assert grown < 8 * 1024, f"the worker's peak memory grew by {grown} KiB"
    assert httpx.get(f"{served.base_url}/healthz").status_code == 200


@pytest.mark.parametrize(
    "name", ["Authorization", "TeamUp-Provider-ID", "Teamup-Request-Mode", "authorization"]
)
def test_a_credential_header_given_twice_is_400(served: Served, demo: Demo, name: str) -> None:
    token = demo.manifest["tokens"]["admin"]
    values = {
        "authorization": f"Bearer {token}",
        "teamup-provider-id": str(demo.manifest["providers"]["main"]),
        "teamup-request-mode": "provider",
    }
    first = values[name.lower()]
    headers = [(name, first), (name.upper(), first)]
    if name.lower() != "authorization":
        headers.append(("Authorization", f"Bearer {token}"))
    session_id = demo.manifest["course_sessions"]["main"][0]
    response = httpx.get(f"{served.base_url}/api/v2/course_sessions/{session_id}", headers=headers)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "parameter_invalid"
    shown = {"authorization": "Authorization"}.get(name, name)
    message = f"The {shown} header was sent more than once; send it once."
    assert body["field_errors"] == {shown: [message]}


def test_a_foreign_host_is_400_and_builds_no_link(served: Served, demo: Demo) -> None:
    token = demo.manifest["tokens"]["admin"]
    response = httpx.get(
        f"{served.base_url}/api/v2/course_sessions",
        headers={"Authorization": f"Bearer {token}", "Host": "evil.example.com"},
    )
    assert response.status_code == 400
    assert "evil" not in response.headers.get("location", "")
    assert response.json()["field_errors"] == {
        "Host": ["'evil.example.com' is not a host this server answers for."]
    }
    # Probes answer whatever the host: load balancers send an address.
    probe = httpx.get(f"{served.base_url}/healthz", headers={"Host": "10.0.0.7:8000"})
    assert probe.status_code == 200


def responses(received: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Every response in ``received``, in order: status, headers and body (by its
    ``Content-Length``)."""
    answers = []
    while received:
        head, _, received = received.partition(b"\r\n\r\n")
        status_line, *lines = head.split(b"\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.decode().lower()] = value.decode().strip()
        length = int(headers["content-length"])
        answers.append((int(status_line.split()[1]), headers, received[:length]))
        received = received[length:]
    return answers


def test_pipelined_requests_are_answered_in_order_each_whole(served: Served, demo: Demo) -> None:
    """Requests sent back to back on one connection, before any answer: each answered
    once, whole, in the order asked (a response's head and body leave together, and
    the next response after them)."""
    token = demo.manifest["tokens"]["admin"]
    first, second = demo.manifest["course_sessions"]["main"][:2]
    targets = [
        f"/api/v2/course_sessions/{first}",
        f"/api/v2/course_sessions/{second}?expand=venue",
        "/api/v2/course_sessions/0",
        f"/api/v2/course_sessions/{first}",
    ]
    address = urlsplit(served.base_url)
    heads = [
        f"GET {target} HTTP/1.1\r\nHost: {address.netloc}\r\n"
        f"Authorization: Bearer {token}\r\n"
        + ("Connection: close\r\n" if number == len(targets) - 1 else "")
        + "\r\n"
        for number, target in enumerate(targets)
    ]
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall("".join(heads).encode("latin-1"))
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    answers = responses(received)
    assert [status for status, _, _ in answers] == [200, 200, 404, 200]
    headers = {"Authorization": f"Bearer {token}"}
    for target, (_, answer_headers, body) in zip(targets, answers, strict=True):
        alone = httpx.get(f"{served.base_url}{target}", headers=headers)
        assert body == alone.content
        assert answer_headers["content-type"] == alone.headers["content-type"]
    assert isinstance(json.loads(answers[1][2])["venue"], dict)  # its own query, expanded
    assert len({answer[1]["x-request-id"] for answer in answers}) == 4
