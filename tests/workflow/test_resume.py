"""kill -9 of a running pipeline, then a rerun: the rerun completes, and nothing a killed job
was writing is ever taken as finished (every output that exists verifies: activation caches
against their checksums, tables and JSON read back, checkpoints load), and the final results
equal those of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import torch

from repmatch.backbone.activations import ActivationCache
from workflow_runs import (
    TINY_CONFIG,
    compare_results,
    copy_workflow,
    reference_run,
    result_files,
    run_snakemake,
    snakemake_cmd,
)


TARGETS = [
    "results/models/training_summary.csv",
    "results/activations/smallcnn_seed0",
    "results/activations/smallcnn_seed1",
]


def _processes_under(workdir: Path) -> list[int]:
    """Pids of processes (started by this test) whose command line or cwd is in ``workdir``."""
    pids = []
    needle = str(workdir)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if needle in cmd or cwd.startswith(needle):
            pids.append(int(entry.name))
    return pids


def _verify_outputs(results: Path) -> list[str]:
    """Every final-named output must be complete and readable."""
    checked = []
    for path in sorted(results.rglob("*")):
        if not path.is_file() or "logs" in path.relative_to(results).parts or path.name.startswith("."):
            continue
        if path.suffix == ".parquet":
            pd.read_parquet(path)
        elif path.suffix == ".csv":
            pd.read_csv(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".pt":
            torch.load(path, map_location="cpu", weights_only=False)
        checked.append(path.relative_to(results).as_posix())
    for manifest in results.glob("activations/*/manifest.json"):
        cache = ActivationCache(manifest.parent)
        for layer in cache.layers:
            cache.load(layer, mmap=False)  # verifies sha256 and shape, refuses NaN/Inf
    # An activation folder without its manifest would be a half-written cache.
    for d in results.glob("activations/*"):
        if d.is_dir() and not d.name.startswith("."):
            assert (d / "manifest.json").exists(), f"{d} exists without manifest.json (half-written cache)"
    return checked


def test_kill_9_then_rerun_completes_with_no_half_written_output(tmp_path, tmp_path_factory):
    reference = reference_run(tmp_path_factory)  # uninterrupted run; the killed one runs the same code
    killed = copy_workflow(tmp_path / "killed", source=reference)

    # Start the pipeline in its own process group and kill -9 the whole group mid-run, while
    # the training jobs are busy (their logs exist, their checkpoints do not).
    proc = subprocess.Popen(
        snakemake_cmd("--cores", "2", "--configfile", TINY_CONFIG),
        cwd=killed,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    results = killed / "results"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if list(results.glob("logs/train/*.log")) and not list(results.glob("models/*/checkpoint.pt")):
                time.sleep(1.0)  # well inside training (~10 s per epoch here)
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the pipeline finished before it could be killed (tiny config too small?)"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    # Job processes that left the group (if any) die too: kill -9 is meant to stop everything.
    for pid in _processes_under(killed):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.5)
    assert not _processes_under(killed), "processes of the killed run survive"
    assert not (results / "models" / "training_summary.csv").exists(), "killed too late: the run had finished"

    # Whatever the killed run left under a final name is complete.
    _verify_outputs(results)

    # Rerun. kill -9 leaves Snakemake's lock behind: the plain rerun must refuse and name
    # --unlock; after unlocking, a rerun (with --rerun-incomplete if Snakemake asks for it,
    # as the profiles already set) completes.
    # The rerun targets the backbone (split, training, activation caches, training summary):
    # the kill hit training, and the pairwise stages would only add minutes.
    args = [*TARGETS, "--cores", "2", "--configfile", TINY_CONFIG]  # targets first: --configfile takes a list
    locked = run_snakemake(killed, "--cores", "2", "--configfile", TINY_CONFIG, check=False)
    assert locked.returncode != 0 and "--unlock" in locked.stderr, locked.stderr[-3000:]
    run_snakemake(killed, *args, "--unlock")
    rerun = run_snakemake(killed, *args, check=False)
    if rerun.returncode != 0:
        assert "--rerun-incomplete" in rerun.stdout + rerun.stderr, rerun.stderr[-4000:]
        run_snakemake(killed, *args, "--rerun-incomplete")
    checked = _verify_outputs(results)
    assert "models/training_summary.csv" in checked
    # Nothing is left to do, and no stray temp files were taken for outputs.
    dry = run_snakemake(killed, "--dry-run", *args)
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-2000:]

    diffs = compare_results(reference / "results", results, b_subset=True)
    assert {"models/smallcnn_seed0/checkpoint.pt", "activations/smallcnn_seed1/fc1.npy"} <= result_files(results)
    assert not diffs, "results after kill -9 + rerun differ from an uninterrupted run:\n" + "\n".join(diffs)


# Config change of one method -> (family prefix of the rules that may rerun, a changed section).
METHOD_CHANGES = {
    "similarity": ("similarity", {"measures": ["linear_cka"]}),
    "subspace_match": ("subspace", {"seed": 1}),
    "stitching": ("stitching", None),  # the first key changed (see below)
}


def test_artifacts_regenerate_without_retraining(tmp_path_factory):
    """On a finished run: --forcerun of the figure rules plans only figure jobs, and changing
    one method's config section plans only that method's jobs (never training/activations)."""
    import yaml

    from workflow_runs import dry_run_jobs, workflow_rules

    wd = reference_run(tmp_path_factory)
    base = ["--cores", "2", "--configfile", TINY_CONFIG]
    done = run_snakemake(wd, "--dry-run", *base)
    assert "Nothing to be done" in done.stdout + done.stderr, "reference run is not complete"
    rules = workflow_rules(wd)
    figure_rules = sorted(  # (sensitivity_network also draws figures, but it is off in the tiny config)
        r.name for r in rules
        if any(str(o).startswith("results/figures/") for o in r.output) and r.name != "sensitivity_network"
    )
    assert figure_rules, "no rule writes results/figures/"
    planned = {j["rule"] for j in dry_run_jobs(wd, *base, "--forcerun", *figure_rules)}
    assert planned - {"all"} == set(figure_rules), planned

    cfg = yaml.safe_load((wd / TINY_CONFIG).read_text())
    merged = yaml.safe_load((wd / "config.yaml").read_text())
    merged.update(cfg)
    checked = []
    for section, (family, change) in METHOD_CHANGES.items():
        if section not in merged:
            continue
        current = dict(merged[section])
        if change is None:  # flip a numeric or boolean knob of the section
            key = next((k for k, v in current.items() if isinstance(v, (bool, int, float))), None)
            if key is None:
                continue
            value = current[key]
            change = {key: (not value) if isinstance(value, bool) else value + 1}
        current.update(change)
        override = tmp_path_factory.mktemp("override") / f"{section}.yaml"
        override.write_text(yaml.safe_dump({section: current}))
        planned = {j["rule"] for j in dry_run_jobs(wd, *base, str(override))}
        assert planned - {"all"}, f"changing {section} {change} reran nothing"
        # sanity reads every family's aggregate; benchmark_summary every rerun job's benchmark file
        stray = {r for r in planned - {"all", "sanity", "benchmark_summary"} if not r.startswith(family)}
        assert not stray, f"changing {section} {change} also reruns {sorted(stray)}"
        checked.append(section)
    assert checked, "no method config section found"
