"""Bring your own: one tiny workflow run with the user's image folder as the dataset, a user
similarity measure and an external network's activations; a factory dataset through the split rule;
external activations on other samples fail the dry run before any job."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from byo_factories import write_imagefolder
from workflow_runs import copy_workflow, run_snakemake

from repmatch.backbone.activations import ActivationCache

TESTS = Path(__file__).resolve().parents[1]  # tests/: byo_factories.py
CKA_PROPS = {"symmetric": True, "larger_is_similar": True, "identity_value": 1.0,
             "invariances": ["orthogonal", "isotropic_scaling", "translation"]}  # fmt: skip
N_TRAIN, N_TEST = 3 * 8, 3 * 6  # three classes


def _config(root: Path, external: Path) -> dict:
    return {
        "seeds": [0], "device": "cpu",
        "data": {"name": "imagefolder", "data_root": str(root / "imgs"), "image_size": 16, "n_probe": 12},
        "model": {"arch": "smallcnn", "layers": ["conv1", "conv3", "fc1"]},
        "train": {"epochs": 1, "batch_size": 8},
        "similarity": {"measures": ["linear_cka", "user_cka"],
                       "user_measures": [{"name": "user_cka", "function": "byo_factories:linear_cka", "properties": CKA_PROPS}]},
        "uncertainty": {"bootstrap": 5},
        "subspace_match": {"eps": [0.5], "n_coords": 200, "repeats": 1, "chance_permutations": 0},
        "stitching": {"pairs": {"within": "first", "cross": "none"}, "methods": ["dm"], "layers": ["conv3", "fc1"],
                      "dm": {"k": 10}},
        "external_activations": {"networks": {"ext": str(external)}},
        "sensitivity": {"enabled": False},
    }  # fmt: skip


def _external(folder: Path, ids: np.ndarray) -> Path:
    """Activations 'made elsewhere' on the whole test split: a conv map named like a trained layer and a flat layer."""
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True)
    np.save(folder / "ids.npy", ids)
    np.save(folder / "conv3.npy", np.maximum(rng.standard_normal((len(ids), 6, 8, 8)), 0).astype(np.float32))
    np.save(folder / "pixels.npy", rng.standard_normal((len(ids), 12)).astype(np.float32))
    return folder


@pytest.fixture()
def workflow(tmp_path, monkeypatch):
    """A workflow copy whose jobs can import the test's user code (byo_factories)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    wd = copy_workflow(tmp_path / "wf")
    write_imagefolder(wd / "imgs", n_train=8, n_test=6, size=16)
    return wd


def test_own_data_own_measure_and_own_activations_run_through_the_pipeline(workflow):
    ext = _external(workflow / "ext_acts", np.arange(N_TRAIN, N_TRAIN + N_TEST)[::-1].copy())
    (workflow / "byo.yaml").write_text(yaml.safe_dump(_config(workflow, ext)))
    run_snakemake(workflow, "--cores", "2", "--configfile", "byo.yaml")
    res = workflow / "results"
    split = json.loads((res / "data" / "split.json").read_text())
    assert split["dataset"] == "imagefolder" and split["input_shape"] == [3, 16, 16] and split["n_test"] == N_TEST
    assert not (res / "models" / "ext").exists()  # an external network is never trained
    cache = ActivationCache(res / "activations" / "ext", expected_ids=split["probe_ids"])
    assert cache.layers == ["conv3", "pixels"] and cache.meta["external"] == str(ext)
    raw = np.load(ext / "pixels.npy")
    np.testing.assert_array_equal(cache.load("pixels"), raw[[N_TRAIN + N_TEST - 1 - i for i in split["probe_ids"]]])

    sim = pd.read_parquet(res / "similarity" / "similarity.parquet")
    assert set(sim["method"]) == {"linear_cka", "user_cka"}
    pairs = set(zip(sim["model_a"], sim["model_b"]))
    assert pairs == {("smallcnn_seed0", "smallcnn_seed0"), ("smallcnn_seed0", "ext"), ("ext", "ext")}
    keys = ["model_a", "layer_a", "model_b", "layer_b"]
    both = sim[sim.method == "linear_cka"].merge(sim[sim.method == "user_cka"], on=keys, suffixes=("", "_user"))
    assert len(both) == (sim.method == "linear_cka").sum() > 0
    np.testing.assert_allclose(both["value_user"], both["value"], rtol=1e-9, atol=1e-12)  # the user's CKA is CKA
    assert both["ci_low_user"].notna().any()  # bootstrapped like the built-in measures

    sub = pd.read_parquet(res / "subspace" / "subspace.parquet")
    ext_rows = sub[(sub.model_a == "ext") | (sub.model_b == "ext")]
    assert len(ext_rows) == len(sub) > 0 and set(ext_rows["layer_a"]) == {"conv3"}  # the layer both networks have
    stitch = pd.read_parquet(res / "stitching" / "stitching.parquet")
    assert "ext" not in set(stitch["model_a"]) | set(stitch["model_b"])  # no weights, no stitching
    assert (res / "figures" / "similarity" / "user_cka_pairs.png").stat().st_size > 1000
    assert (res / "sanity" / "specificity.csv").exists()


def test_factory_dataset_goes_through_the_split_rule(workflow):
    config = _config(workflow, workflow) | {"data": {"name": "factory", "factory": "byo_factories:blobs", "n_probe": 20,
                                                      "factory_kwargs": {"n_train": 30, "n_test": 24, "size": 12}}}  # fmt: skip
    del config["external_activations"]
    (workflow / "factory.yaml").write_text(yaml.safe_dump(config))
    run_snakemake(workflow, "results/data/split.json", "--cores", "1", "--configfile", "factory.yaml")
    split = json.loads((workflow / "results" / "data" / "split.json").read_text())
    assert split["dataset"] == "factory" and split["input_shape"] == [1, 12, 12]
    assert split["n_train"] == 30 and split["test_ids"] == list(range(30, 54)) and split["num_classes"] == 2


def test_external_activations_on_other_samples_fail_before_any_job(workflow):
    ids = np.arange(N_TRAIN, N_TRAIN + N_TEST)
    ext = _external(workflow / "ext_acts", np.delete(ids, 3))  # one test image missing
    (workflow / "bad.yaml").write_text(yaml.safe_dump(_config(workflow, ext)))
    proc = run_snakemake(workflow, "-n", "--cores", "1", "--configfile", "bad.yaml", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"external activation folder {ext} ('ext') lacks" in out and "first sample id" in out, out[-2000:]
    assert not (workflow / "results").exists()
