"""Instructions per request in process, counted by valgrind: a measure that does not drift.

This kind of machine's speed moves by tens of percent within minutes, so a change of a
few percent is hard to see in time, even side by side (``bench/against.py``).
Instructions executed are counted exactly, run after run: this runs
``bench.inprocess`` (uvicorn's protocol and the app, no sockets) under valgrind's
cachegrind at two request counts, and the difference, divided by the requests between
them, leaves out start-up. Instructions are not time (a cache miss costs more than an
addition; system calls are not counted), so a scenario's speed is still measured with
wrk; this says which of two versions of the code does less work, and by how much.

    python -m bench.instructions [--query "expand=venue"] [--requests 20 60]

It needs valgrind (Debian: ``apt-get install valgrind``); each count takes about a
minute (valgrind runs Python some fifty times slower), and the two run at once.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys

from bench.inprocess import RUNS
from bench.run import BIN, ROOT, dataset

_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def count(query: str, requests: int) -> subprocess.Popen[str]:
    """valgrind counting the instructions of ``bench.inprocess`` serving ``requests``."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        sys.exit("bench.instructions: valgrind is not installed (apt-get install valgrind)")
    command = [
        valgrind,
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        str(BIN / "python"),
        "-m",
        "bench.inprocess",
        "--query",
        query,
        "--requests",
        str(requests),
    ]
    # String hashes are salted per process, and a dict's or a set's layout, and with it
    # the work of a lookup, moves with the salt: one salt makes counts repeat.
    environment = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def instructions(process: subprocess.Popen[str]) -> int:
    """The instructions valgrind counted in ``process``, once it ends."""
    _, report = process.communicate()
    found = _REFS.search(report)
    if process.returncode != 0 or found is None:
        sys.exit(f"bench.instructions: valgrind failed:\n{report[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--query", default="", help="the query string of every request")
    parser.add_argument("--requests", type=int, nargs=2, default=[20, 60], metavar="N")
    args = parser.parse_args()
    fewer, more = sorted(args.requests)
    if fewer == more:
        sys.exit("bench.instructions: give two different request counts")
    dataset("small")  # made before either count starts, not by both at once
    processes = [count(args.query, fewer), count(args.query, more)]
    low, high = (instructions(process) for process in processes)
    # bench.inprocess serves its requests once to warm up, then RUNS times.
    per_request = (high - low) / ((RUNS + 1) * (more - fewer))
    query = f"?{args.query}" if args.query else ""
    print(f"{per_request:,.0f} instructions a request (GET /api/v2/course_sessions/ID{query})")


if __name__ == "__main__":
    main()
