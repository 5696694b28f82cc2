"""CPU time per request in process: uvicorn's protocol and the app, without sockets.

wrk's figures move with everything else on the machine; the CPU time one process
spends on a request moves much less, and a profile of it names the functions. This
feeds requests straight to the protocol ``coursebook serve`` runs (a transport that
only collects what is written), one after another on a uvloop loop, and reports the
best of five runs of ``--requests`` each; ``--profile FILE`` saves a cProfile of one
run instead. It leaves out the socket system calls, which ``strace -c -p`` counts on a
served worker.

    python -m bench.inprocess [--query "expand=venue"] [--requests 3000] [--profile F]
        [--protocol module:Class]

It serves the kept small dataset of ``make bench`` (made when missing); the access
log goes to standard error, as a served worker's does (``2>/dev/null``). Two trees are
compared by ``bench/against.py``, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import uvloop
from uvicorn.config import Config
from uvicorn.server import ServerState

from bench.run import UNLIMITED, dataset, scenario_ids

PROTOCOL = "coursebook.protocol:LimitedHttpToolsProtocol"
#: Timed runs after the warm one; the answer is the best of them.
RUNS = 5


class Collecting:
    """A transport that keeps count of what is written and wakes whoever waits for it."""

    def __init__(self) -> None:
        self.written = 0
        self.waiter: asyncio.Future[None] | None = None

    def write(self, data: bytes) -> None:
        self.written += len(data)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def writelines(self, data: Any) -> None:
        for chunk in data:
            self.write(chunk)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def is_closing(self) -> bool:
        return False

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--query", default="", help="the query string of every request")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--profile", type=Path, help="save a cProfile of one run here")
    parser.add_argument("--protocol", default=PROTOCOL, help="module:Class of the protocol")
    args = parser.parse_args()
    url, manifest = dataset("small")
    os.environ.update({**UNLIMITED, "COURSEBOOK_DATABASE_URL": url})
    os.environ.setdefault("COURSEBOOK_LOG_LEVEL", "warning")
    module, _, name = args.protocol.partition(":")
    protocol_class = getattr(importlib.import_module(module), name)
    from coursebook.app import create_app

    app = create_app()
    logging.getLogger().setLevel(logging.WARNING)
    token = manifest["tokens"]["admin"]
    suffix = f"?{args.query}" if args.query else ""
    requests = [
        f"GET /api/v2/course_sessions/{session}{suffix} HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
        for session in scenario_ids(url, manifest["providers"]["main"])
    ]

    async def measure() -> float:
        loop = asyncio.get_running_loop()
        config = Config(
            app, http=protocol_class, proxy_headers=True, access_log=False, log_level="warning"
        )
        config.load()
        protocol = protocol_class(
            config=config, server_state=ServerState(), app_state={}, _loop=loop
        )
        transport = Collecting()
        protocol.connection_made(transport)

        async def one(request: bytes) -> None:
            transport.waiter = loop.create_future()
            protocol.data_received(request)
            await transport.waiter
            while protocol.cycle is not None and not protocol.cycle.response_complete:
                await asyncio.sleep(0)
            await asyncio.sleep(0)

        async def run() -> None:
            for number in range(args.requests):
                await one(requests[number % len(requests)])

        await run()  # warm: the memo, compiled statements, the renderers
        if args.profile is not None:
            profiler = cProfile.Profile()
            profiler.enable()
            await run()
            profiler.disable()
            profiler.dump_stats(args.profile)
            return 0.0
        best = float("inf")
        for _ in range(RUNS):
            started = time.process_time()
            await run()
            best = min(best, (time.process_time() - started) / args.requests)
        return best

    seconds = uvloop.run(measure())
    if args.profile is not None:
        print(f"profile of {args.requests} requests saved to {args.profile}", file=sys.stderr)
    else:
        print(f"{seconds * 1e6:.1f} us of CPU a request (best of {RUNS} runs of {args.requests})")


if __name__ == "__main__":
    main()
