"""Export and import of a benchmark dataset, on SQLite and PostgreSQL.

``python -m bench.transfer`` (``--scale medium`` for a quick run) exports every
provider of the kept dataset (``bench.run.dataset``: large has over 1,000,000 course
sessions) with ``coursebook export``, imports the files into an empty SQLite file and
an empty PostgreSQL database (``COURSEBOOK_BENCH_POSTGRES_ADMIN_URL``) with ``coursebook
import``, and writes the wall time, records a second and peak memory of each command
to ``var/bench/transfer-<scale>.md``, with the machine it ran on. Every command runs
in a process of its own, so its peak resident memory is its own.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bench.run import BIN, DATA, POSTGRES_ADMIN_URL, dataset, log


@dataclass(frozen=True)
class Step:
    """One command: what it did, how long it took, its peak memory."""

    what: str
    seconds: float
    records: int
    peak_mib: float


def run(what: str, url: str, *args: str, records: int = 0) -> Step:
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
    step = Step(what, seconds, records, usage.ru_maxrss / 1024)
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
        steps.append(run(f"export provider {provider}", source, "export", "-q",
                         "--provider-id", str(provider), "--output", str(path)))  # fmt: skip
        files.append(path)
        steps[-1] = Step(steps[-1].what, steps[-1].seconds, lines_of(path), steps[-1].peak_mib)
    target = DATA / f"transfer-{scale}-import.sqlite3"
    for stale in DATA.glob(f"{target.name}*"):
        stale.unlink()
    postgres, name = scratch_postgres()
    exports = list(steps)
    try:
        for backend, url in (("SQLite", f"sqlite:///{target}"), ("PostgreSQL", postgres)):
            for path, step in zip(files, exports, strict=True):
                steps.append(run(f"import {path.name} into {backend}", url, "import", "-q",
                                 str(path), records=step.records))  # fmt: skip
    finally:
        drop_postgres(name)
        for stale in DATA.glob(f"{target.name}*"):
            stale.unlink()
    return steps


def report(scale: str, steps: list[Step]) -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        "unknown CPU",
    )  # fmt: skip
    lines = [
        f"# Export and import, {scale} dataset",
        "",
        f"`python -m bench.transfer --scale {scale}` on {os.cpu_count()} cores ({model}), "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}; "
        "PostgreSQL on the same machine. Each command is a process of its own.",
        "",
        "| step | records | seconds | records/s | peak memory |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for step in steps:
        rate = f"{step.records / step.seconds:,.0f}" if step.records else ""
        lines.append(
            f"| {step.what} | {step.records:,} | {step.seconds:.1f} | {rate} "
            f"| {step.peak_mib:.0f} MiB |"
        )
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
