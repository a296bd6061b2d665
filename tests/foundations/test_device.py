"""Device choice: one GPU per job on a multi-GPU workstation (fake GPUs, no CUDA needed), MPS."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from workflow_runs import REPO

from repmatch import device as dev

# A job process: two fake GPUs, resolve `auto`, print the device, hold it until stdin closes.
JOB = textwrap.dedent(
    """
    import os, sys, torch
    torch.cuda.is_available = lambda: True
    torch.cuda.device_count = lambda: 2
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    from repmatch.device import resolve_device
    print(resolve_device("auto"), flush=True)
    sys.stdin.read()
    """
)


def _start_job(lock_dir):
    env = {"PYTHONPATH": str(REPO / "src"), "REPMATCH_GPU_LOCK_DIR": str(lock_dir), "PATH": "/usr/bin:/bin"}
    p = subprocess.Popen([sys.executable, "-c", JOB], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    return p, p.stdout.readline().strip()


def test_two_jobs_on_two_gpus_each_see_their_own_device(tmp_path):
    first, dev_first = _start_job(tmp_path)
    second, dev_second = _start_job(tmp_path)
    try:
        assert {dev_first, dev_second} == {"cuda:0", "cuda:1"}, (dev_first, dev_second)
    finally:
        first.communicate("")
    # the first job ended (its lock went with it): the next job gets its GPU back
    third, dev_third = _start_job(tmp_path)
    try:
        assert dev_third == dev_first
    finally:
        second.communicate("")
        third.communicate("")


def test_a_chosen_device_is_kept(monkeypatch, tmp_path):
    """SLURM (or the user) sets CUDA_VISIBLE_DEVICES: no slot is claimed; cuda:N is taken as given."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("REPMATCH_GPU_LOCK_DIR", str(tmp_path))
    assert dev.resolve_device("auto", env={"CUDA_VISIBLE_DEVICES": "3,5"}) == torch.device("cuda")
    assert dev.resolve_device("cuda:1", env={}) == torch.device("cuda:1")
    assert not list(tmp_path.iterdir())


def test_mps_is_accepted_where_available(monkeypatch):
    from repmatch.settings import load_settings

    cfg = {"seeds": [0], "device": "mps", "data": {"name": "mnist5k"}, "model": {"arch": "smallcnn"}, "train": {"epochs": 1}}
    assert load_settings(cfg).device == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "mps_available", lambda: True)
    assert dev.resolve_device("auto") == torch.device("mps")
    assert dev.resolve_device("mps") == torch.device("mps")
    monkeypatch.setattr(dev, "mps_available", lambda: False)
    assert dev.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="mps"):
        dev.resolve_device("mps")
