"""Only what changes results triggers a rerun: after a finished run on a torchvision dataset read
from a local folder, moving that folder (same files), or changing thread counts or the device,
leaves `snakemake -n` with nothing to do."""

from __future__ import annotations

import shutil
import struct

import numpy as np
import yaml

from workflow_runs import copy_workflow, run_snakemake


def write_fake_mnist(root, n_train: int = 300, n_test: int = 100, seed: int = 0) -> None:
    """torchvision's raw MNIST files (idx format) holding random digits: a local data_root."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + labels.tobytes())


def test_moving_data_root_reruns_nothing(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    write_fake_mnist(tmp_path / "data_a")
    cfg = {
        "seeds": [0], "device": "cpu",
        "data": {"name": "mnist", "data_root": str(tmp_path / "data_a"), "n_probe": 50},
        "model": {"arch": "smallcnn", "layers": ["conv1", "fc1"]},
        "train": {"epochs": 1, "batch_size": 64},
        "similarity": {"measures": ["linear_cka"]},
        "stitching": {"pairs": {"within": "none", "cross": "none"}},
        "sensitivity": {"enabled": False},
    }  # fmt: skip
    (wd / "fake.yaml").write_text(yaml.safe_dump(cfg))
    run_snakemake(wd, "--cores", "2", "--configfile", "fake.yaml")
    assert (wd / "results" / "models" / "smallcnn_seed0" / "checkpoint.pt").exists()

    shutil.move(tmp_path / "data_a", tmp_path / "data_b")
    cfg["data"]["data_root"] = str(tmp_path / "data_b")
    (wd / "moved.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(wd, "-n", "--cores", "2", "--configfile", "moved.yaml")
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-3000:]
    # neither do thread counts or the device
    cfg["train"]["threads"], cfg["similarity"]["threads"], cfg["device"] = 2, 2, "auto"
    (wd / "threads.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(wd, "-n", "--cores", "2", "--configfile", "threads.yaml")
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-3000:]
    # a change that does alter the numbers still reruns (the trigger is alive)
    cfg["data"]["split_seed"] = 1
    (wd / "reseeded.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(wd, "-n", "--cores", "2", "--configfile", "reseeded.yaml")
    assert "data_split" in proc.stdout, proc.stdout[-3000:]
