"""Every benchmark script still starts (imports resolve, arguments parse): `--help` runs each one
in a subprocess, so a renamed library function cannot silently break a benchmark."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from workflow_runs import REPO

SCRIPTS = sorted(p for p in (REPO / "benchmarks").glob("*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_script_starts(script):
    proc = subprocess.run([sys.executable, str(script), "--help"], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "usage" in proc.stdout.lower(), proc.stdout[-1000:]
