"""Code style is checked like a test: ruff (pyflakes + pycodestyle errors, pyproject.toml) on the
Python code and snakefmt on the Snakefiles, both with the versions the lock file pins."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from workflow_runs import REPO


@pytest.mark.parametrize("tool, args", [
    ("ruff", ["check", "src", "tests", "scripts", "benchmarks", "tools"]),
    ("snakefmt", ["--check", "Snakefile", "rules"]),
])  # fmt: skip
def test_style_is_clean(tool, args):
    exe = shutil.which(tool)
    assert exe, f"{tool} is not installed: pip install -c requirements-lock.txt -e '.[test]'"
    proc = subprocess.run([exe, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{tool} {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
