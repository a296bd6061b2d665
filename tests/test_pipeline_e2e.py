"""One small end-to-end run of the real workflow (tiny config: 2 seeds, 1 epoch, 4 layers)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from pipeline_helpers import REPO, job_counts, planned_wildcards, snakemake
from repmatch.activations import ActivationCache


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("e2e")
    proc = snakemake(workdir, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-5000:]
    return workdir


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
    # No temp files left behind anywhere.
    assert not [p for p in res.rglob("*") if p.name.endswith(".tmp")]


def test_similarity_tables_and_heatmaps(finished_run):
    res = finished_run / "results"
    table = pd.read_parquet(res / "similarity" / "similarity.parquet")
    assert {"model_a", "layer_a", "index_a", "model_b", "layer_b", "index_b", "method", "value"} <= set(table.columns)
    cka = table[(table.method == "linear_cka") & (table.model_a == table.model_b) & (table.layer_a == table.layer_b)]
    np.testing.assert_allclose(cka.value, 1.0, atol=1e-6)  # a layer against itself
    assert len(list((res / "figures" / "similarity").rglob("*.png"))) >= 2
    assert len(list((res / "figures" / "similarity").rglob("*.pdf"))) >= 2


def test_rerun_has_nothing_to_do(finished_run):
    proc = snakemake(finished_run, "-n", "--cores", "2")
    assert proc.returncode == 0, proc.stderr
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_deleting_a_checkpoint_reruns_only_that_models_downstream(finished_run, tmp_path):
    workdir = tmp_path / "copy"
    shutil.copytree(finished_run, workdir, symlinks=True)
    (workdir / "results" / "models" / "smallcnn_seed1" / "checkpoint.pt").unlink()
    proc = snakemake(workdir, "-n", "--cores", "2")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    counts = job_counts(out)
    assert counts.get("train") == 1 and counts.get("activations") == 1, counts
    assert "data_split" not in counts
    wildcards = planned_wildcards(out)
    assert wildcards and all("seed1" in w for w in wildcards), wildcards
