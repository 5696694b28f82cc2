"""The machine's PostgreSQL cluster stopped, started or restarted for real, with
Debian's ``pg_ctlcluster``: for ``make soak`` and the fault tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

CONFIGURATIONS = Path("/etc/postgresql")


def available() -> bool:
    """Whether this machine's cluster can be controlled (Debian's packaging)."""
    return shutil.which("pg_ctlcluster") is not None and CONFIGURATIONS.is_dir()


def version() -> str:
    """The version of the machine's cluster (the first, if there are several)."""
    return sorted(os.listdir(CONFIGURATIONS))[0]


def control(action: str) -> None:
    """``pg_ctlcluster`` ``action`` (stop, start, restart); after a start or a restart,
    return once the server accepts connections again."""
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version(), "main", action],
        check=True,
        capture_output=True,
    )
    if action != "stop":
        wait_until_ready()


def wait_until_ready(seconds: float = 30) -> None:
    """Until PostgreSQL accepts connections; RuntimeError after ``seconds``."""
    deadline = time.monotonic() + seconds
    while subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"]).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError("PostgreSQL did not come back")
        time.sleep(0.05)
