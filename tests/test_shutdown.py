"""SIGTERM under load: ``coursebook serve`` (two workers) drains first, as a rolling
deploy needs: ``/readyz`` answers 503 while requests are still served, no request a
client sent fails, and the server exits once the drain is over."""

from __future__ import annotations

import signal
import threading
import time

import httpx

from coursebook.demo import FULL_EXPANSION
from tests.support import Demo, serve_process

DRAIN = 2.0
#: Past the drain, what stopping may take: uvicorn's graceful shutdown, two workers.
STOP_BOUND = 10.0


def test_sigterm_drains_then_exits_without_failing_a_request(demo: Demo) -> None:
    token = demo.manifest["tokens"]["admin"]
    sessions = demo.manifest["course_sessions"]["main"][:20]
    paths = [f"/api/v2/course_sessions/{n}?expand={FULL_EXPANSION}" for n in sessions]
    paths.append("/api/v2/course_sessions?expand=venue,instructors")
    with serve_process(demo.url, {"drain_seconds": str(DRAIN)}, workers=2) as served:
        stop = threading.Event()
        outcomes: list[tuple[float, str]] = []
        unready_at: list[float] = []

        def hammer() -> None:
            """A client of the pool behind the load balancer: it sends until the balancer
            takes the server out of rotation."""
            with httpx.Client(base_url=served.base_url, timeout=30) as client:
                turn = 0
                while not stop.is_set():
                    sent = time.monotonic()
                    try:
                        response = client.get(
                            paths[turn % len(paths)], headers={"Authorization": f"Bearer {token}"}
                        )
                        outcomes.append((sent, str(response.status_code)))
                    except httpx.HTTPError as error:
                        outcomes.append((sent, type(error).__name__))
                    turn += 1

        def balancer() -> None:
            """The load balancer's readiness probe, every 50 ms: a 503 takes the server
            out of rotation."""
            while True:
                try:
                    ready = httpx.get(f"{served.base_url}/readyz", timeout=5)
                except httpx.TransportError:
                    ready = None
                if ready is not None and ready.status_code == 503:
                    assert ready.json()["message"] == "The server is shutting down."
                    unready_at.append(time.monotonic())
                    stop.set()
                    return
                time.sleep(0.05)

        clients = [threading.Thread(target=hammer) for _ in range(4)]
        probe = threading.Thread(target=balancer)
        for thread in [*clients, probe]:
            thread.start()
        time.sleep(1.0)
        signalled = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        probe.join(DRAIN + STOP_BOUND)
        for thread in clients:
            thread.join(30)
        served.process.wait(DRAIN + STOP_BOUND)
        stopped = time.monotonic()

    assert unready_at, "/readyz never answered 503"
    assert unready_at[0] - signalled < DRAIN, "the drain began too late"
    assert stopped - signalled >= DRAIN, "the server stopped before the drain was over"
    assert stopped - signalled < DRAIN + STOP_BOUND
    failed = [outcome for _, outcome in outcomes if outcome != "200"]
    assert failed == []
    during_drain = [sent for sent, _ in outcomes if sent > signalled]
    assert during_drain, "no request was served after SIGTERM"
    assert served.process.returncode == 0
