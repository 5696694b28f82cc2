"""What the request-head limits cost and what they save: uvicorn's httptools protocol
against ``coursebook.protocol.LimitedHttpToolsProtocol``, on the small dataset, one
worker each, measured in the same run.

For each protocol: a worker's peak memory (VmHWM) before and after three concurrent
requests with a 100 MB header, and R1 (a plain retrieve) with wrk at 32 connections,
alternating the two protocols ``--rounds`` times so that a shared machine's drift hits
both alike.

    python -m bench.request_head [--seconds S] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import threading

from bench.run import (
    BIN,
    DATA,
    dataset,
    ensure_wrk,
    free_port,
    log,
    peak_rss_mb,
    run_wrk,
    scenario_ids,
    scenario_paths,
    serving,
    session_count,
)

PROTOCOLS = {
    "httptools": "httptools",
    "limited": "coursebook.protocol:LimitedHttpToolsProtocol",
}
HUGE = 100_000_000


def command(port: int, protocol: str) -> list[str]:
    """uvicorn as ``coursebook serve`` runs it, with ``protocol``."""
    return [
        str(BIN / "uvicorn"),
        "coursebook.app:create_app",
        "--factory",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        protocol,
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def send_huge_header(port: int) -> str:
    """Send a request with one 100 MB header; the status line of the answer, if any."""
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: "
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
            sock.sendall(head)
            chunk = b"a" * 1_000_000
            for _ in range(HUGE // len(chunk)):
                sock.sendall(chunk)
            sock.sendall(b"\r\nConnection: close\r\n\r\n")
            return sock.recv(64).split(b"\r\n")[0].decode()
    except OSError as error:
        return f"connection closed ({type(error).__name__})"


def huge_headers(port: int, pid: int) -> tuple[float, float, list[str]]:
    """Peak memory before and after three concurrent 100 MB headers, and the answers."""
    before = peak_rss_mb(pid)
    answers: list[str] = []
    threads = [
        threading.Thread(target=lambda: answers.append(send_huge_header(port))) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return before, peak_rss_mb(pid), answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    wrk = ensure_wrk()
    url, manifest = dataset("small")
    token = manifest["tokens"]["admin"]
    main_provider = manifest["providers"]["main"]
    paths = scenario_paths("R1", scenario_ids(url, main_provider), session_count(url))
    path_file = DATA / "request-head-r1.txt"
    path_file.write_text("\n".join(paths) + "\n")
    env = {**os.environ, "COURSEBOOK_DATABASE_URL": url, "COURSEBOOK_LOG_LEVEL": "warning"}
    rps: dict[str, list[float]] = {name: [] for name in PROTOCOLS}
    for name, protocol in PROTOCOLS.items():
        port = free_port()
        with serving(command(port, protocol), env, port) as pid:
            before, after, answers = huge_headers(port, pid)
            log(
                f"{name}: peak memory {before:.0f} MB -> {after:.0f} MB after three "
                f"concurrent 100 MB headers; answers: {answers}"
            )
    for round_number in range(options.rounds):
        for name, protocol in PROTOCOLS.items():
            port = free_port()
            with serving(command(port, protocol), env, port):
                base = f"http://127.0.0.1:{port}"
                run_wrk(wrk, base, path_file, token, 1)
                measured = run_wrk(wrk, base, path_file, token, options.seconds)
                rps[name].append(measured["rps"])
                log(f"round {round_number + 1}, {name}: R1 {measured['rps']:.0f} requests/s")
    plain, limited = (sum(rps[name]) / len(rps[name]) for name in PROTOCOLS)
    log(
        f"R1 mean: httptools {plain:.0f}/s, limited {limited:.0f}/s "
        f"({(limited - plain) / plain:+.1%}); {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    path_file.unlink()


if __name__ == "__main__":
    main()
