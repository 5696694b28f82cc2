"""Export and import of a benchmark dataset, on SQLite and PostgreSQL.

``python -m bench.transfer`` (``--scale medium`` for a quick run) exports every
provider of the kept dataset (``bench.run.dataset``: large has over 1,000,000 course
sessions) with ``coursebook export``, imports the files into an empty SQLite file and
an empty PostgreSQL database (on ``COURSEBOOK_BENCH_POSTGRES_URL``'s server) with
``coursebook import``, and writes the wall time, records a second and peak memory of
each command to ``var/bench/transfer-<scale>.md``, with the machine it ran on. Every
command runs in a process of its own, so its peak resident memory is its own.
``make bench`` runs it on the large dataset and puts its tables in
``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bench.run import BIN, DATA, POSTGRES_ADMIN_URL, dataset, log, machine

#: What the issue asks of the large dataset: each whole step under three minutes.
TARGET_SECONDS = 180


@dataclass(frozen=True)
class Step:
    """One command: what it did, how long it took, its peak memory."""

    what: str
    seconds: float
    records: int
    peak_mib: float
    #: The step it is part of: the export, or the import into one backend.
    part: str = ""


def run(what: str, part: str, url: str, *args: str, records: int = 0) -> Step:
    """Run ``coursebook args`` on ``url``; its time and peak resident memory."""
    started = time.monotonic()
    process = subprocess.Popen(
        [str(BIN / "coursebook"), *args],
        env={**os.environ, "COURSEBOOK_DATABASE_URL": url},
        stdout=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    if status != 0:
        raise SystemExit(f"bench: coursebook {' '.join(args)} failed ({status})")
    step = Step(what, seconds, records, usage.ru_maxrss / 1024, part)
    log(f"{what}: {seconds:.1f} s, peak {step.peak_mib:.0f} MiB")
    return step


def lines_of(path: Path) -> int:
    with path.open("rb") as file:
        return sum(1 for _ in file)


def scratch_postgres() -> tuple[str, str]:
    """An empty PostgreSQL database on the bench server: (its URL, its name)."""
    name = f"coursebook_bench_import_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(
        hide_password=False
    ), name


def drop_postgres(name: str) -> None:
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def measure(scale: str) -> list[Step]:
    source, manifest = dataset(scale)
    providers = sorted(manifest["providers"].values())
    steps: list[Step] = []
    files: list[Path] = []
    for provider in providers:
        path = DATA / f"transfer-{scale}-{provider}.ndjson"
        done = run(f"export provider {provider}", "export", source, "export", "-q",
                   "--provider-id", str(provider), "--output", str(path))  # fmt: skip
        files.append(path)
        steps.append(replace(done, records=lines_of(path)))
    target = DATA / f"transfer-{scale}-import.sqlite3"
    for stale in DATA.glob(f"{target.name}*"):
        stale.unlink()
    postgres, name = scratch_postgres()
    exports = list(steps)
    try:
        for backend, url in (("SQLite", f"sqlite:///{target}"), ("PostgreSQL", postgres)):
            for path, step in zip(files, exports, strict=True):
                steps.append(run(f"import {path.name} into {backend}", f"import into {backend}",
                                 url, "import", "-q", str(path), records=step.records))  # fmt: skip
    finally:
        drop_postgres(name)
        for stale in DATA.glob(f"{target.name}*"):
            stale.unlink()
    return steps


def totals(steps: list[Step]) -> list[Step]:
    """Each part (the export, each backend's import) as one step: the sum of its
    commands' time and records, the most memory any of them held."""
    parts: dict[str, list[Step]] = {}
    for step in steps:
        parts.setdefault(step.part, []).append(step)
    return [
        Step(
            f"{part} (all providers)",
            sum(s.seconds for s in found),
            sum(s.records for s in found),
            max(s.peak_mib for s in found),
            part,
        )
        for part, found in parts.items()
    ]


def section(scale: str, steps: list[Step]) -> list[str]:
    """The measurements as Markdown: each part, then each command."""
    lines = [
        "| step | records | seconds | records/s | peak memory |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for step in [*totals(steps), *steps]:
        rate = f"{step.records / step.seconds:,.0f}" if step.records else ""
        lines.append(
            f"| {step.what} | {step.records:,} | {step.seconds:.1f} | {rate} "
            f"| {step.peak_mib:.0f} MiB |"
        )
    return [
        f"`python -m bench.transfer --scale {scale}`: the {scale} dataset's providers "
        "exported with `coursebook export`, each file imported with `coursebook import` "
        "into an empty SQLite file and an empty PostgreSQL database on the same machine. "
        "Each command is a process of its own; peak memory is its maximum resident set.",
        "",
        *lines,
    ]


def targets(scale: str, steps: list[Step]) -> list[tuple[str, bool, str]]:
    """Each part of the transfer under ``TARGET_SECONDS``."""
    return [
        (f"{scale}: {part.part} < {TARGET_SECONDS} s", part.seconds < TARGET_SECONDS,
         f"{part.seconds:.0f} s, {part.records / part.seconds:,.0f} records/s, "
         f"peak {part.peak_mib:.0f} MiB")
        for part in totals(steps)
    ]  # fmt: skip


def report(scale: str, steps: list[Step]) -> str:
    lines = [
        f"# Export and import, {scale} dataset",
        "",
        f"Machine: {machine()}.",
        "",
        *section(scale, steps),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="large", choices=("small", "medium", "large"))
    scale = parser.parse_args().scale
    steps = measure(scale)
    out = DATA / f"transfer-{scale}.md"
    out.write_text(report(scale, steps))
    log(f"written to {out}")


if __name__ == "__main__":
    main()
