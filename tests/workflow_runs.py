"""Helpers for tests that run the real workflow in a scratch copy (test_slurm, test_resume,
test_report): copy the workflow, run snakemake, and compare two result trees."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = "tests/data/tiny_config.yaml"

# What a scratch copy of the workflow needs (results and caches stay behind).
_COPY_IGNORE = shutil.ignore_patterns(
    "results", ".snakemake", ".git", "__pycache__", "*.egg-info", ".pytest_cache", "report.html", "*.pyc"
)
_WORKFLOW_PARTS = ["Snakefile", "rules", "scripts", "src", "config.yaml", "config", "envs", "profiles", "report", "tests"]

# Values that legitimately differ between two runs of the same experiment (wall times, dates,
# hosts): left out of the comparison of JSON files and table columns.
VOLATILE = re.compile(r"(seconds|time|duration|date|host|hostname|elapsed|started|finished)", re.I)


# Tables from the pairwise stages agree between runs only up to the last bits (multithreaded
# BLAS reductions; e.g. subspace values differed by 1.5e-14); checkpoints and activation
# caches, where training determinism shows, are compared bit for bit.
TABLE_RTOL = 1e-9
TABLE_ATOL = 1e-12

_REFERENCE: dict[str, Path] = {}


def reference_run(tmp_path_factory) -> Path:
    """A workflow copy with the tiny experiment run locally to completion, once per test command
    (shared by test_pipeline_e2e, test_resume, test_report and test_slurm). Do not modify its results.

    Under pytest-xdist every worker is its own pytest session: the first worker to ask runs the
    experiment in the folder the workers share, under a file lock, and the others wait for it and
    read the same results, so the tiny experiment is trained once per test command, not once per
    worker. A failed run is recorded and reported to every later caller instead of being retried."""
    from filelock import FileLock

    if "tiny" not in _REFERENCE:
        base = tmp_path_factory.getbasetemp()
        shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
        wd = shared / "reference_tiny"
        done, failed = shared / "reference_tiny.done", shared / "reference_tiny.failed"
        with FileLock(str(shared / "reference_tiny.lock")):
            if failed.exists():
                raise AssertionError(f"the shared reference run of the tiny workflow failed earlier in this test command:\n{failed.read_text()}")
            if not done.exists():
                try:
                    copy_workflow(wd)
                    run_snakemake(wd, "--cores", "2", "--configfile", TINY_CONFIG)
                except BaseException as e:
                    failed.write_text(str(e)[-12000:] or repr(e))
                    raise
                done.touch()
        _REFERENCE["tiny"] = wd
    return _REFERENCE["tiny"]


def copy_workflow(dest: Path, source: Path = REPO) -> Path:
    """Copy the workflow sources (not results) of ``source`` into ``dest``; return ``dest``.

    Tests that compare two runs copy the second from the first copy (``source=``), so both
    run the same code even while the repository changes underneath."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in _WORKFLOW_PARTS:
        src = Path(source) / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=_COPY_IGNORE)
        elif src.exists():
            shutil.copy2(src, dest / part)
    return dest


def snakemake_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", *args]


def _snakemake_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SNAKEMAKE_PROFILE", None)  # only the profiles a test names
    return env


def run_snakemake(workdir: Path, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
    """Run snakemake in ``workdir``; on failure the assertion shows the end of its output."""
    proc = subprocess.run(
        snakemake_cmd(*args), cwd=workdir, env=_snakemake_env(), capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert proc.returncode == 0, (
            f"snakemake {' '.join(args)} failed (rc={proc.returncode}) in {workdir}:\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
        )
    return proc


def start_snakemake(workdir: Path, *args: str, log: Path) -> subprocess.Popen:
    """Start snakemake in ``workdir`` in the background, stdout and stderr into ``log`` (a file, so
    that a long run never blocks on a full pipe); the caller waits for it."""
    with open(log, "w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(snakemake_cmd(*args), cwd=workdir, env=_snakemake_env(), stdout=out, stderr=subprocess.STDOUT)


def dry_run_jobs(workdir: Path, *args: str) -> list[dict]:
    """The jobs a dry run would execute: ``[{rule, local, wildcards, resources}]``.

    Parsed from snakemake's job listing (``rule NAME:`` / ``localrule NAME:`` blocks)."""
    proc = run_snakemake(workdir, "--dry-run", *args, timeout=300)
    text = proc.stdout + "\n" + proc.stderr
    jobs: list[dict] = []
    current: dict | None = None
    for line in text.splitlines():
        m = re.match(r"^(local)?rule (\w+):\s*$", line)
        if m:
            current = {"rule": m.group(2), "local": bool(m.group(1)), "wildcards": "", "resources": {}}
            jobs.append(current)
            continue
        if current is None:
            continue
        m = re.match(r"^\s+wildcards: (.*)$", line)
        if m:
            current["wildcards"] = m.group(1).strip()
        m = re.match(r"^\s+resources: (.*)$", line)
        if m:
            for item in m.group(1).split(", "):
                key, _, value = item.partition("=")
                current["resources"][key.strip()] = value.strip()
    assert jobs, f"no jobs found in the dry-run output:\n{text[-3000:]}"
    return jobs


def workflow_rules(workdir: Path = REPO, configfile: str = TINY_CONFIG):
    """The workflow's rule objects (Snakemake API; ``_workflow`` is internal to the pinned 9.27)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings

    with SnakemakeApi(OutputSettings()) as api:
        wf = api.workflow(
            resource_settings=ResourceSettings(),
            config_settings=ConfigSettings(configfiles=[Path(workdir) / configfile]),
            storage_settings=StorageSettings(),
            snakefile=Path(workdir) / "Snakefile",
            workdir=Path(workdir),
        )
        return list(wf._workflow.rules)  # noqa: SLF001


def _strip_volatile(obj):
    if isinstance(obj, dict):
        return {k: _strip_volatile(v) for k, v in obj.items() if not VOLATILE.search(str(k))}
    if isinstance(obj, list):
        return [_strip_volatile(v) for v in obj]
    return obj


def _read_any_table(path: Path) -> pd.DataFrame:
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    return df[[c for c in df.columns if not VOLATILE.search(str(c))]]


def result_files(results: Path) -> set[str]:
    """Result files that carry data (logs, figures and Snakemake markers excluded)."""
    out = set()
    for p in results.rglob("*"):
        rel = p.relative_to(results).as_posix()
        # logs and benchmarks (wall times, memory) differ from run to run by nature
        if not p.is_file() or rel.startswith(("logs/", "benchmarks/")) or p.name.startswith(".snakemake"):
            continue
        if p.suffix in {".png", ".pdf", ".svg", ".html"}:
            continue
        out.add(rel)
    return out


def compare_results(a: Path, b: Path, b_subset: bool = False) -> list[str]:
    """Differences between two result trees (empty = identical up to wall times).

    Tables (parquet/csv) must agree to TABLE_RTOL, arrays (npy) exactly; JSON equal once wall-time
    fields are dropped; checkpoints equal tensor by tensor; other files byte-identical.
    ``b_subset``: ``b`` holds the results of some targets only; its files must all be in ``a``."""
    import torch

    diffs: list[str] = []
    fa, fb = result_files(a), result_files(b)
    if b_subset and fb <= fa:  # ``b`` ran only some targets: compare those
        fa = fb
    if fa != fb:
        diffs.append(f"different files: only in {a}: {sorted(fa - fb)}; only in {b}: {sorted(fb - fa)}")
    for rel in sorted(fa & fb):
        pa, pb = a / rel, b / rel
        try:
            if pa.suffix in {".parquet", ".csv"}:
                pd.testing.assert_frame_equal(
                    _read_any_table(pa), _read_any_table(pb), check_exact=False, rtol=TABLE_RTOL, atol=TABLE_ATOL
                )
            elif pa.suffix == ".npy":
                xa, xb = np.load(pa), np.load(pb)
                if xa.dtype != xb.dtype or xa.shape != xb.shape or not np.array_equal(xa, xb):
                    diffs.append(f"{rel}: arrays differ")
            elif pa.suffix == ".json":
                if _strip_volatile(json.loads(pa.read_text())) != _strip_volatile(json.loads(pb.read_text())):
                    diffs.append(f"{rel}: JSON content differs")
            elif pa.suffix == ".pt":
                sa = torch.load(pa, map_location="cpu", weights_only=False)
                sb = torch.load(pb, map_location="cpu", weights_only=False)
                diffs.extend(f"{rel}: {d}" for d in _compare_nested(sa, sb))
            elif pa.read_bytes() != pb.read_bytes():
                diffs.append(f"{rel}: bytes differ")
        except AssertionError as e:
            diffs.append(f"{rel}: {' '.join(str(e).split())[:300] if str(e) else 'tables differ'}")
    return diffs


def _compare_nested(x, y, where: str = "") -> list[str]:
    import torch

    if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
        if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)) or not torch.equal(x, y):
            return [f"tensor {where or '<root>'} differs"]
        return []
    if isinstance(x, dict) and isinstance(y, dict):
        keys_x = {k for k in x if not VOLATILE.search(str(k))}
        keys_y = {k for k in y if not VOLATILE.search(str(k))}
        if keys_x != keys_y:
            return [f"keys of {where or '<root>'} differ: {sorted(map(str, keys_x ^ keys_y))}"]
        return [d for k in sorted(keys_x, key=str) for d in _compare_nested(x[k], y[k], f"{where}.{k}")]
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        if len(x) != len(y):
            return [f"length of {where} differs"]
        return [d for i, (u, v) in enumerate(zip(x, y)) for d in _compare_nested(u, v, f"{where}[{i}]")]
    if x != y:
        return [f"value {where or '<root>'} differs: {x!r} != {y!r}"]
    return []
