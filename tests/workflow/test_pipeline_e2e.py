"""One small end-to-end run of the real workflow (tiny config: 2 seeds, 1 epoch, 4 layers).

The run itself is shared with the other workflow tests (``workflow_runs.reference_run``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from repmatch.backbone.activations import ActivationCache
from workflow_runs import TINY_CONFIG, dry_run_jobs, reference_run, run_snakemake


def _snakemake_run_logs(folder: str, names: list[str]) -> list[str]:
    """``shutil.copytree`` ignore: the ``.snakemake/log`` folder (run logs, not workflow state)."""
    return ["log"] if Path(folder).name == ".snakemake" and "log" in names else []


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    return reference_run(tmp_path_factory)


def test_pipeline_writes_every_stage(finished_run):
    res = finished_run / "results"
    split = json.loads((res / "data" / "split.json").read_text())
    assert split["n_probe"] == 200
    for seed in (0, 1):
        model = f"smallcnn_seed{seed}"
        metrics = json.loads((res / "models" / model / "metrics.json").read_text())
        assert metrics["test_accuracy"] > 0.1
        cache = ActivationCache(res / "activations" / model, expected_ids=split["probe_ids"])
        assert cache.layers == ["conv1", "conv3", "conv5", "fc1"]
        assert cache.load("conv1").shape == (200, 16, 28, 28)
    assert (res / "figures" / "training" / "accuracy.png").stat().st_size > 1000
    for table in ("similarity/similarity.parquet", "stitching/stitching.parquet", "subspace/subspace.parquet"):
        assert len(pd.read_parquet(res / table)) > 0, table
    assert not [p for p in res.rglob("*") if p.name.endswith(".tmp")]  # no temp files left behind


def test_similarity_tables_and_heatmaps(finished_run):
    res = finished_run / "results"
    table = pd.read_parquet(res / "similarity" / "similarity.parquet")
    assert {"model_a", "layer_a", "index_a", "model_b", "layer_b", "index_b", "method", "value"} <= set(table.columns)
    cka = table[(table.method == "linear_cka") & (table.model_a == table.model_b) & (table.layer_a == table.layer_b)]
    assert len(cka) == 8  # 2 models x 4 layers
    np.testing.assert_allclose(cka.value, 1.0, atol=1e-6)  # a layer against itself
    for family in ("similarity", "stitching", "subspace"):
        assert list((res / "figures" / family).rglob("*.png")), family
        assert list((res / "figures" / family).rglob("*.pdf")), family


def test_rerun_has_nothing_to_do(finished_run):
    proc = run_snakemake(finished_run, "-n", "--cores", "2", "--configfile", TINY_CONFIG)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_deleting_a_checkpoint_reruns_only_that_models_downstream(finished_run, tmp_path):
    workdir = tmp_path / "copy"
    # copy2 keeps modification times. Snakemake's run logs stay behind: another xdist worker may be
    # running --report in the shared reference, writing its log while this copies it.
    shutil.copytree(finished_run, workdir, symlinks=True, ignore=_snakemake_run_logs)
    (workdir / "results" / "models" / "smallcnn_seed1" / "checkpoint.pt").unlink()
    jobs = dry_run_jobs(workdir, "--cores", "2", "--configfile", TINY_CONFIG)
    rules = [j["rule"] for j in jobs]
    assert rules.count("train") == 1 and rules.count("activations") == 1, rules
    assert "data_split" not in rules
    with_wildcards = [j["wildcards"] for j in jobs if j["wildcards"]]
    assert all("seed1" in w for w in with_wildcards), with_wildcards
    # Every pairwise family reruns exactly the pairs that involve seed 1.
    assert {"similarity_pair", "stitching_pair", "subspace_pair"} <= set(rules)
