"""This tree against an earlier revision, on SQLite, in the same run.

``make bench`` gives each scenario as a ratio to a ceiling measured around it; a
ratio from a run on another day is not comparable, because this kind of machine's
speed drifts by tens of percent within minutes, and not evenly for every kind of work.
So whether a change made a scenario slower is measured here: the revision is checked
out into a temporary worktree, and each tree serves the small demo dataset it makes
itself (1 worker, the same settings); each scenario requests the sessions ``make
bench`` does (``bench.run.scenario_ids``).

By default the two trees are driven side by side: in each round both at once, each
server (every thread) and its own wrk on a core of its own, the cores swapped every
round. Both see the same drift, and a round's ratio compares work done in the same
seconds; the answer is the geometric mean of the rounds' ratios, with their range, and
each tree's worker CPU time per request. ``--in-turn`` drives them one after another
on the whole machine instead, with the ceiling between rounds.

    python -m bench.against REVISION [--scenario R1 R2] [--rounds 8] [--seconds 5]
        [--variant "COURSEBOOK_ACCESS_LOG=0 COURSEBOOK_METRICS=0"] [--in-turn]
        [--output FILE]

``--variant`` serves this tree once more with those settings (side by side: in rounds
of its own against the revision).

The revision's dependencies must be installed in this virtualenv (an earlier revision
of this project needs a subset of this one's).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from bench.run import (
    BIN,
    CONNECTIONS,
    ROOT,
    SCENARIOS,
    UNLIMITED,
    ceiling_command,
    ensure_wrk,
    free_port,
    log,
    machine,
    run_wrk,
    scenario_ids,
    scenario_paths,
    serving,
    worker_pids,
    wrk_command,
    wrk_result,
)


@contextmanager
def worktree(revision: str) -> Iterator[Path]:
    """``revision`` checked out into a temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="coursebook-against-") as parent:
        tree = Path(parent) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), revision],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            yield tree
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False
            )


class Served(NamedTuple):
    """A tree being served: where, as whom the scenarios ask, and for what."""

    port: int
    token: str
    ids: list[int]
    #: The server's process (uvicorn's supervisor, or the worker itself).
    pid: int


def serve(tree: Path, data: Path, stack: ExitStack, settings: dict[str, str]) -> Served:
    """Serve ``tree``'s code with ``settings`` on a small demo dataset it makes."""
    name = f"{tree.name}-{len(list(data.glob('*.json')))}"
    database = data / f"{name}.sqlite3"
    manifest = data / f"{name}.json"
    run = [str(BIN / "python"), "-c", "from coursebook.cli import app; app()"]
    env = {
        **os.environ,
        **UNLIMITED,
        "PYTHONPATH": str(tree),
        "COURSEBOOK_DATABASE_URL": f"sqlite:///{database}",
        "COURSEBOOK_LOG_LEVEL": "warning",
        **settings,
    }
    subprocess.run(
        [*run, "demo", "--scale", "small", "--seed", "42", "--manifest", str(manifest)],
        env=env,
        cwd=tree,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    made = json.loads(manifest.read_text())
    port = free_port()
    command = [*run, "serve", "--port", str(port), "--workers", "1"]
    pid = stack.enter_context(serving(command, env, port, cwd=tree))
    ids = scenario_ids(f"sqlite:///{database}", made["providers"]["main"])
    return Served(port, made["tokens"]["admin"], ids, pid)


def processes(pid: int) -> list[int]:
    """``pid`` and its workers."""
    workers = worker_pids(pid)
    return [pid, *[worker for worker in workers if worker != pid]]


def pin(pid: int, core: int) -> None:
    """Keep every thread of ``pid`` and of its workers on ``core``."""
    for process in processes(pid):
        for thread in Path(f"/proc/{process}/task").iterdir():
            os.sched_setaffinity(int(thread.name), {core})


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) ``pid`` and its workers have used so far."""
    ticks = 0
    for process in processes(pid):
        fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def together(
    wrk: str,
    pair: tuple[Served, Served],
    paths: tuple[Path, Path],
    seconds: int,
    swapped: bool,
) -> list[tuple[float, float]]:
    """Drive both trees of ``pair`` at once, each server and its own wrk (one thread,
    half the connections) on a core of its own, the cores swapped when ``swapped``;
    each one's requests per second and worker CPU time per request."""
    runs = []
    for n, (served, path) in enumerate(zip(pair, paths, strict=True)):
        core = n ^ swapped
        pin(served.pid, core)
        command = wrk_command(
            wrk,
            f"http://127.0.0.1:{served.port}",
            path,
            served.token,
            seconds,
            connections=CONNECTIONS // 2,
            threads=1,
        )
        used = cpu_seconds(served.pid)
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=functools.partial(os.sched_setaffinity, 0, {core}),
        )
        runs.append((served, process, used))
    measured = []
    for served, process, used in runs:
        result = wrk_result(process.communicate()[0])
        if result["errors"]:
            sys.exit(f"bench.against: port {served.port} answered {result['errors']:.0f} errors")
        cpu = (cpu_seconds(served.pid) - used) / result["requests"]
        measured.append((result["rps"], cpu))
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revision", help="the git revision to measure this tree against")
    parser.add_argument("--scenario", nargs="+", default=["R1", "R2"], choices=["R1", "R2", "R3"])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--variant", help="settings (NAME=VALUE ...) for this tree once more")
    parser.add_argument(
        "--in-turn",
        action="store_true",
        help="drive the trees one after another on both cores, with the ceiling between",
    )
    parser.add_argument("--output", type=Path, help="write the table here (Markdown)")
    args = parser.parse_args()
    if not args.in_turn and (os.cpu_count() or 1) < 2:
        sys.exit("bench.against: side by side needs two cores; use --in-turn")
    variant = dict(item.split("=", 1) for item in (args.variant or "").split())
    wrk = ensure_wrk()
    with (
        tempfile.TemporaryDirectory(prefix="coursebook-against-data-") as scratch,
        ExitStack() as stack,
    ):
        data = Path(scratch)
        earlier = stack.enter_context(worktree(args.revision))
        trees: dict[str, tuple[Path, dict[str, str]]] = {
            "this tree": (ROOT, {}),
            args.revision: (earlier, {}),
        }
        if variant:
            trees[f"this tree, {args.variant}"] = (ROOT, variant)
        served = {name: serve(tree, data, stack, env) for name, (tree, env) in trees.items()}
        paths: dict[tuple[str, str], Path] = {}
        for name, tree_served in served.items():
            for scenario in args.scenario:
                path = paths[name, scenario] = data / f"paths-{len(paths)}.txt"
                ids = tree_served.ids
                path.write_text("\n".join(scenario_paths(scenario, ids, len(ids))) + "\n")
        for key, path in paths.items():  # warm-up
            run_wrk(wrk, f"http://127.0.0.1:{served[key[0]].port}", path, served[key[0]].token, 2)
        if args.in_turn:
            lines = in_turn(args, wrk, data, stack, served, paths)
        else:
            lines = side_by_side(args, wrk, served, paths)
    header = [
        f"`python -m bench.{Path(__file__).stem} {' '.join(sys.argv[1:])}` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
    ]
    print("\n" + "\n".join(header + lines))
    if args.output:
        args.output.write_text("\n".join(header + lines) + "\n")


def side_by_side(
    args: argparse.Namespace,
    wrk: str,
    served: dict[str, Served],
    paths: dict[tuple[str, str], Path],
) -> list[str]:
    """Each tree of this revision's against the revision, driven at the same time."""
    others = [name for name in served if name != args.revision]
    measured: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for number in range(args.rounds):
        for name in others:
            for scenario in args.scenario:
                pair = (served[name], served[args.revision])
                (ours, cpu), (theirs, their_cpu) = together(
                    wrk,
                    pair,
                    (paths[name, scenario], paths[args.revision, scenario]),
                    args.seconds,
                    swapped=number % 2 == 1,
                )
                measured.setdefault((name, scenario), []).append((ours, cpu, ours / theirs))
                measured.setdefault((args.revision, scenario), []).append((theirs, their_cpu, 1))
                log(
                    f"round {number + 1} {scenario}: {name} {ours:.0f} req/s, "
                    f"{args.revision} {theirs:.0f} req/s"
                )
    lines = [
        f"{machine()}; the small dataset, 1 worker; {args.rounds} rounds of {args.seconds} s. "
        "In each round this tree and the revision are driven at the same time, each server "
        f"and its own wrk (1 thread, {CONNECTIONS // 2} connections) on a core of its own, the "
        "cores swapped every round: the machine's drift, which moves a run minutes later by "
        "tens of percent, is the same for both, and so is a difference between the cores. "
        f"The ratio to {args.revision} is the geometric mean of the rounds' ratios; beside "
        "it, their range, then the mean within two standard errors (an interval that holds "
        "100% is no measured difference). CPU is the worker's, user and system, per request.",
        "",
        f"| scenario | tree | req/s | CPU per request | to {args.revision} | rounds; interval |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for scenario in args.scenario:
        for name in served:
            runs = measured[name, scenario]
            rps = sum(run[0] for run in runs) / len(runs)
            cpu = sum(run[1] for run in runs) / len(runs)
            logs = [math.log(run[2]) for run in runs]
            ratio = math.exp(statistics.fmean(logs))
            # Two standard errors of the mean of the rounds' log ratios, either side.
            error = 2 * statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else 0
            spread = (
                ""
                if name == args.revision
                else f"{math.exp(min(logs)):.0%} to {math.exp(max(logs)):.0%}; "
                f"{ratio * math.exp(-error):.0%} to {ratio * math.exp(error):.0%}"
            )
            lines.append(
                f"| {scenario} {SCENARIOS[scenario][0]} | {name} | {rps:,.0f} | "
                f"{cpu * 1e6:,.0f} us | {ratio:.1%} | {spread} |"
            )
    return lines


def in_turn(
    args: argparse.Namespace,
    wrk: str,
    data: Path,
    stack: ExitStack,
    served: dict[str, Served],
    paths: dict[tuple[str, str], Path],
) -> list[str]:
    """Every tree driven in turn on the whole machine, round after round, with the
    ceiling measured between rounds."""
    body = data / "ceiling-body.json"
    body.write_bytes(b"{}")
    ceiling_port = free_port()
    ceiling_env = {**os.environ, "CEILING_BODY_FILE": str(body)}
    stack.enter_context(serving(ceiling_command(ceiling_port, 1), ceiling_env, ceiling_port))
    ceiling_paths = data / "paths-ceiling.txt"
    ceiling_paths.write_text("/\n")
    ceiling_url = f"http://127.0.0.1:{ceiling_port}"
    ceilings: list[float] = []
    measured: dict[tuple[str, str], list[float]] = {key: [] for key in paths}
    for number in range(args.rounds):
        ceilings.append(run_wrk(wrk, ceiling_url, ceiling_paths, None, args.seconds)["rps"])
        # Each round alternates which tree goes first.
        order = list(paths) if number % 2 == 0 else list(reversed(paths))
        for key in order:
            tree = served[key[0]]
            result = run_wrk(
                wrk, f"http://127.0.0.1:{tree.port}", paths[key], tree.token, args.seconds
            )
            if result["errors"]:
                sys.exit(f"bench.against: {key[0]} {key[1]} answered {result['errors']:.0f} errors")
            measured[key].append(result["rps"])
            log(f"round {number + 1} {key[0]} {key[1]}: {result['rps']:.0f} req/s")
    ceilings.append(run_wrk(wrk, ceiling_url, ceiling_paths, None, args.seconds)["rps"])
    ceiling = sum(ceilings) / len(ceilings)
    lines = [
        f"{machine()}; wrk, {CONNECTIONS} connections, 1 worker, the small dataset, "
        f"{args.rounds} rounds of {args.seconds} s, one tree after another; ceiling "
        f"{ceiling:,.0f} req/s (mean of {len(ceilings)} runs, between the rounds).",
        "",
        f"| scenario | tree | req/s | ratio to ceiling | to {args.revision} |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for scenario in args.scenario:
        base = sum(measured[args.revision, scenario]) / args.rounds
        for name in served:
            mean = sum(measured[name, scenario]) / args.rounds
            lines.append(
                f"| {scenario} {SCENARIOS[scenario][0]} | {name} | {mean:,.0f} | "
                f"{mean / ceiling:.1%} | {mean / base:.0%} |"
            )
    return lines


if __name__ == "__main__":
    main()
