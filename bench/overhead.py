"""What the production features cost R1: metrics and the access log, and the rate limit
counted in the local file or in Redis.

Four servers of the small dataset, one worker each, are up at once: every feature off
(the baseline), metrics and access log on (the defaults, limit off), and both of those
with the rate limit counted in the local file or in Redis (a limit no request reaches,
so that every request pays for its count and none is refused). wrk drives R1 against
each in turn, round after round, and each figure is the mean of its rounds: a shared
machine drifts within minutes, and interleaving spreads the drift over all four. The
access log goes to ``/dev/null``: what is measured is making and writing the line.

Two figures per configuration: requests a second, and the worker's CPU time per
request (``/proc/<pid>/schedstat``, nanoseconds on a CPU, over wrk's request count).
On a machine shared with other work the first moves with whatever else runs; the
second counts only the worker's own work, so its ratio is the steadier measure of
what a feature costs. Redis' own CPU is not the worker's: the Redis row's CPU figure
leaves out the server's side of each round trip.

    python -m bench.overhead [--seconds S] [--rounds N] [--redis URL] [--output FILE]
"""

from __future__ import annotations

import argparse
import os
import time
from contextlib import ExitStack
from datetime import UTC, datetime
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
    worker_pids,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
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


#: The configurations whose cost has a target, and the target (a fraction of R1).
TARGETS = {"metrics + access log": 0.05}


class Measured:
    """One configuration's runs: requests a second, and worker CPU per request."""

    def __init__(self) -> None:
        self.rps: list[float] = []
        self.cpu_us: list[float] = []

    def mean_rps(self) -> float:
        return sum(self.rps) / len(self.rps)

    def mean_cpu_us(self) -> float:
        return sum(self.cpu_us) / len(self.cpu_us)


def cpu_ns(pids: list[int]) -> int:
    """Nanoseconds the processes have run on a CPU (the first field of schedstat)."""
    return sum(int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) for pid in pids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="Length of each wrk run.")
    parser.add_argument("--rounds", type=int, default=3, help="Runs of each configuration.")
    parser.add_argument("--redis", default=REDIS_URL, help="Redis URL.")
    parser.add_argument("--output", type=Path, help="Also write the report (markdown) here.")
    args = parser.parse_args()
    text = measure(args.seconds, args.rounds, args.redis)
    print(text)
    if args.output:
        command = f"python -m bench.overhead --seconds {args.seconds} --rounds {args.rounds}"
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(
            "# What metrics, the access log and the rate limit cost\n\n"
            f"Written by `{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; do not edit "
            "by hand. docs/operations.md says how it measures.\n\n" + text
        )


def measure(seconds: int, rounds: int, redis_url: str) -> str:
    """Serve every configuration, drive R1 against each, round after round; the report."""
    wrk = ensure_wrk()
    database, manifest = dataset("small")
    token = manifest["tokens"]["admin"]
    paths = DATA / "paths-overhead.txt"
    ids = scenario_ids(database, manifest["providers"]["main"])
    paths.write_text("\n".join(scenario_paths("R1", ids, 0)) + "\n")
    prefix = f"bench-{os.getpid()}-{int(time.time())}"
    runs = {name: Measured() for name in CONFIGS}
    with ExitStack() as stack:
        served = _serve_all(stack, database, redis_url, prefix)
        for base, _ in served.values():
            run_wrk(wrk, base, paths, token, 2)  # warm-up
        for round_ in range(rounds):
            for name, (base, pid) in served.items():
                workers = worker_pids(pid)
                before = cpu_ns(workers)
                measured = run_wrk(wrk, base, paths, token, seconds)
                used = cpu_ns(workers) - before
                assert measured["errors"] == 0, f"{name}: {measured['errors']:.0f} errors"
                runs[name].rps.append(measured["rps"])
                runs[name].cpu_us.append(used / 1000 / measured["requests"])
                log(
                    f"round {round_ + 1} {name}: {measured['rps']:,.0f} req/s, "
                    f"{runs[name].cpu_us[-1]:.1f} us CPU a request"
                )
    return report(runs, seconds, rounds)


def report(runs: dict[str, Measured], seconds: int, rounds: int) -> str:
    """The table: each configuration against everything off, by both measures."""
    base = runs["everything off"]
    lines = [
        f"R1, small dataset, 1 worker, SQLite, wrk at 32 connections, {rounds} rounds of "
        f"{seconds} s per configuration, interleaved.",
        "",
        f"Machine: {machine()}; load average at the end: {_load()}.",
        "",
        "| configuration | req/s | of everything off | worker CPU per request | "
        "cost (CPU) | target |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, measured in runs.items():
        cost = measured.mean_cpu_us() / base.mean_cpu_us() - 1
        target = TARGETS.get(name)
        verdict = (
            "" if target is None else f"under {target:.0%}: {'met' if cost < target else 'not met'}"
        )
        lines.append(
            f"| {name} | {measured.mean_rps():,.0f} | {measured.mean_rps() / base.mean_rps():.1%} "
            f"| {measured.mean_cpu_us():.1f} us | {cost:+.1%} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _remove(limit_file: Path) -> None:
    """Delete a rate-limit file and its companions (WAL, lock)."""
    for path in limit_file.parent.glob(f"{limit_file.name}*"):
        path.unlink()


def _serve_all(
    stack: ExitStack, database: str, redis_url: str, prefix: str
) -> dict[str, tuple[str, int]]:
    """Serve every configuration until ``stack`` closes; the base URL and process of
    each."""
    bases: dict[str, tuple[str, int]] = {}
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
        pid = stack.enter_context(serving(command, env, port))
        bases[name] = (f"http://127.0.0.1:{port}", pid)
    return bases


if __name__ == "__main__":
    main()
