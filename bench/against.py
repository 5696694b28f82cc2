"""This tree against an earlier revision, on SQLite, in the same run.

``make bench`` gives each scenario as a ratio to a ceiling measured around it; a
ratio from a run on another day is not comparable, because this kind of machine's
speed drifts by tens of percent within minutes, and not evenly for every kind of work.
So whether a change made a scenario slower is measured here: the revision is checked
out into a temporary worktree, each tree serves the small demo dataset it makes itself
(1 worker, the same settings), and wrk drives them in turn, round after round, with
the ceiling between rounds. Each scenario requests the sessions ``make bench`` does
(``bench.run.scenario_ids``). The answer is each tree's mean requests per second and its
ratio to the other's.

    python -m bench.against REVISION [--scenario R1 R2] [--rounds 4] [--seconds 5]
        [--variant "COURSEBOOK_ACCESS_LOG=0 COURSEBOOK_METRICS=0"] [--output FILE]

``--variant`` serves this tree once more with those settings, in the same rounds.

The revision's dependencies must be installed in this virtualenv (an earlier revision
of this project needs a subset of this one's).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

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


def serve(
    tree: Path, data: Path, stack: ExitStack, settings: dict[str, str]
) -> tuple[int, str, list[int]]:
    """Serve ``tree``'s code with ``settings`` on a small demo dataset it makes; its port,
    admin token and the session ids the scenarios request."""
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
    stack.enter_context(serving(command, env, port, cwd=tree))
    ids = scenario_ids(f"sqlite:///{database}", made["providers"]["main"])
    return port, made["tokens"]["admin"], ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revision", help="the git revision to measure this tree against")
    parser.add_argument("--scenario", nargs="+", default=["R1", "R2"], choices=["R1", "R2", "R3"])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--variant", help="settings (NAME=VALUE ...) for this tree once more")
    parser.add_argument("--output", type=Path, help="write the table here (Markdown)")
    args = parser.parse_args()
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
        body = data / "ceiling-body.json"
        body.write_bytes(b"{}")
        ceiling_port = free_port()
        ceiling_env = {**os.environ, "CEILING_BODY_FILE": str(body)}
        stack.enter_context(serving(ceiling_command(ceiling_port, 1), ceiling_env, ceiling_port))
        ceiling_paths = data / "paths-ceiling.txt"
        ceiling_paths.write_text("/\n")
        paths: dict[tuple[str, str], Path] = {}
        for name, (_port, _token, ids) in served.items():
            for scenario in args.scenario:
                path = paths[name, scenario] = data / f"paths-{len(paths)}.txt"
                path.write_text("\n".join(scenario_paths(scenario, ids, len(ids))) + "\n")
        ceiling_url = f"http://127.0.0.1:{ceiling_port}"
        ceilings: list[float] = []
        measured: dict[tuple[str, str], list[float]] = {key: [] for key in paths}
        for key, path in paths.items():  # warm-up
            port, token, _ = served[key[0]]
            run_wrk(wrk, f"http://127.0.0.1:{port}", path, token, 2)
        for number in range(args.rounds):
            ceilings.append(run_wrk(wrk, ceiling_url, ceiling_paths, None, args.seconds)["rps"])
            # Each round alternates which tree goes first.
            order = list(paths) if number % 2 == 0 else list(reversed(paths))
            for key in order:
                port, token, _ = served[key[0]]
                result = run_wrk(wrk, f"http://127.0.0.1:{port}", paths[key], token, args.seconds)
                if result["errors"]:
                    sys.exit(
                        f"bench.against: {key[0]} {key[1]} answered {result['errors']:.0f} errors"
                    )
                measured[key].append(result["rps"])
                log(f"round {number + 1} {key[0]} {key[1]}: {result['rps']:.0f} req/s")
        ceilings.append(run_wrk(wrk, ceiling_url, ceiling_paths, None, args.seconds)["rps"])
    ceiling = sum(ceilings) / len(ceilings)
    lines = [
        f"`python -m bench.{Path(__file__).stem} {' '.join(sys.argv[1:])}` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        f"{machine()}; wrk, {CONNECTIONS} connections, 1 worker, the small dataset, "
        f"{args.rounds} rounds of {args.seconds} s; ceiling {ceiling:,.0f} req/s (mean of "
        f"{len(ceilings)} runs, between the rounds).",
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
    print("\n" + "\n".join(lines))
    if args.output:
        args.output.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
