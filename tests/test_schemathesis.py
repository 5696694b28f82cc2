"""Schemathesis, pointed at the live server's own /openapi.json, finds no failure.

Every check is on. The run is bounded (examples per operation, a fixed seed) so the
suite stays minutes; set ``SCHEMATHESIS_SEED`` and ``SCHEMATHESIS_EXAMPLES`` for a
longer, different run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import Api, Demo


def test_schemathesis_finds_nothing(
    backend: str, live_api: Api, demo: Demo, tmp_path: Path
) -> None:
    if backend != "sqlite":
        pytest.skip("the schemathesis run is made against the SQLite server")
    token = demo.manifest["tokens"]["admin"]
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{live_api.base_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "all",
        "--max-examples",
        os.environ.get("SCHEMATHESIS_EXAMPLES", "150"),
        "--seed",
        os.environ.get("SCHEMATHESIS_SEED", "20261127"),
        "--workers",
        "2",
        "--phases",
        "examples,coverage,fuzzing",
        "--no-color",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "HOME": str(tmp_path)}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout
    assert token not in result.stdout
