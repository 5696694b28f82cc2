"""What the production features cost R1: metrics and the access log, and the rate limit
counted in the local file or in Redis.

Four servers of the small dataset, one worker each, are up at once: every feature off
(the baseline), metrics and access log on (the defaults, limit off), and both of those
with the rate limit counted in the local file or in Redis (a limit no request reaches,
so that every request pays for its count and none is refused). wrk drives R1 against
each in turn, round after round, and each figure is the mean of its rounds: a shared
machine drifts within minutes, and interleaving spreads the drift over all four. The
access log goes to ``/dev/null``: what is measured is making and writing the line.

    python -m bench.overhead [--seconds S] [--rounds N] [--redis URL]
"""

from __future__ import annotations

import argparse
import os
import time
from contextlib import ExitStack
from pathlib import Path

from bench.run import (
    BIN,
    DATA,
    dataset,
    ensure_wrk,
    free_port,
    log,
    machine,
    run_wrk,
    scenario_ids,
    scenario_paths,
    serving,
)

#: A limit no run reaches: every request is counted, none refused.
NEVER_REACHED = str(10**9)

CONFIGS: dict[str, dict[str, str]] = {
    "everything off": {
        "COURSEBOOK_RATE_LIMIT": "0",
        "COURSEBOOK_METRICS": "false",
        "COURSEBOOK_ACCESS_LOG": "false",
    },
    "metrics + access log": {"COURSEBOOK_RATE_LIMIT": "0"},
    "metrics + access log + rate limit (local file)": {"COURSEBOOK_RATE_LIMIT": NEVER_REACHED},
    "metrics + access log + rate limit (Redis)": {"COURSEBOOK_RATE_LIMIT": NEVER_REACHED},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="Length of each wrk run.")
    parser.add_argument("--rounds", type=int, default=3, help="Runs of each configuration.")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL.")
    args = parser.parse_args()
    wrk = ensure_wrk()
    database, manifest = dataset("small")
    token = manifest["tokens"]["admin"]
    paths = DATA / "paths-overhead.txt"
    ids = scenario_ids(database, manifest["providers"]["main"])
    paths.write_text("\n".join(scenario_paths("R1", ids, 0)) + "\n")
    prefix = f"bench-{os.getpid()}-{int(time.time())}"
    rps: dict[str, list[float]] = {name: [] for name in CONFIGS}
    with ExitStack() as stack:
        bases = _serve_all(stack, database, args.redis, prefix)
        for base in bases.values():
            run_wrk(wrk, base, paths, token, 2)  # warm-up
        for round_ in range(args.rounds):
            for name, base in bases.items():
                measured = run_wrk(wrk, base, paths, token, args.seconds)
                assert measured["errors"] == 0, f"{name}: {measured['errors']:.0f} errors"
                rps[name].append(measured["rps"])
                log(f"round {round_ + 1} {name}: {measured['rps']:,.0f} req/s")
    baseline = sum(rps["everything off"]) / args.rounds
    print(f"\nR1, small dataset, 1 worker, SQLite, {args.rounds} x {args.seconds} s each")
    print(f"Machine: {machine()}\n")
    print("| configuration | req/s | of everything off |")
    print("| --- | ---: | ---: |")
    for name, runs in rps.items():
        mean = sum(runs) / len(runs)
        print(f"| {name} | {mean:,.0f} | {mean / baseline:.1%} |")


def _remove(limit_file: Path) -> None:
    """Delete a rate-limit file and its companions (WAL, lock)."""
    for path in limit_file.parent.glob(f"{limit_file.name}*"):
        path.unlink()


def _serve_all(stack: ExitStack, database: str, redis_url: str, prefix: str) -> dict[str, str]:
    """Serve every configuration until ``stack`` closes; the base URL of each."""
    bases: dict[str, str] = {}
    for index, (name, config) in enumerate(CONFIGS.items()):
        port = free_port()
        limit_file = DATA / f"overhead-limit-{index}.sqlite3"
        stack.callback(_remove, limit_file)
        env = {
            **os.environ,
            "COURSEBOOK_DATABASE_URL": database,
            "COURSEBOOK_LOG_LEVEL": "warning",
            "COURSEBOOK_RATE_LIMIT_FILE": str(limit_file),
            **config,
        }
        if "Redis" in name:
            env["COURSEBOOK_REDIS_URL"] = redis_url
            env["COURSEBOOK_RATE_LIMIT_PREFIX"] = prefix
        command = [str(BIN / "coursebook"), "serve", "--port", str(port), "--workers", "1"]
        stack.enter_context(serving(command, env, port))
        bases[name] = f"http://127.0.0.1:{port}"
    return bases


if __name__ == "__main__":
    main()
