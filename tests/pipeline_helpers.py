"""Run the real Snakemake workflow in a temporary directory (used by the end-to-end tests)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "data" / "tiny_config.yaml"


def snakemake(workdir: Path, *args: str, configfile: Path = TINY_CONFIG, timeout: int = 900) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(configfile), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def job_counts(dry_run_output: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a dry run into {rule: count}."""
    counts: dict[str, int] = {}
    if "Job stats:" not in dry_run_output:
        return counts
    table = dry_run_output.split("Job stats:", 1)[1]
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if not m:
            break
        counts[m[1]] = int(m[2])
    counts.pop("total", None)
    return counts


def planned_wildcards(dry_run_output: str) -> list[str]:
    return re.findall(r"^\s*wildcards: (.+)$", dry_run_output, flags=re.M)
