"""Device selection: use the GPU when there is one, unless the config says otherwise.

One GPU per job on a multi-GPU workstation: Snakemake's local executor counts GPUs
(`--resources gpu=N`, each GPU rule holding `gpu=1` from profiles/local) but does not say which
one a job should use, so every job would land on `cuda:0`. When a job sees several GPUs and
nobody chose for it (no CUDA_VISIBLE_DEVICES: SLURM and users who set it keep their choice),
:func:`claim_gpu_slot` takes the first free GPU by holding an exclusive lock on a per-GPU file
for the life of the process; the OS drops the lock when the job ends, even when it is killed.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch

_HELD: dict[str, object] = {}  # the open lock file of this process's slot (kept alive)


def default_lock_dir() -> Path:
    """Where GPU slot locks live: ``$REPMATCH_GPU_LOCK_DIR``, else one folder per user in the
    system temp dir (per machine, which is what GPUs are)."""
    return Path(os.environ.get("REPMATCH_GPU_LOCK_DIR") or Path(tempfile.gettempdir()) / f"repmatch-gpu-slots-{os.getuid()}")


def claim_gpu_slot(n_gpus: int, lock_dir: str | os.PathLike[str] | None = None) -> int:
    """Index of a GPU no other running job holds, locked until this process exits.

    Tries each of ``n_gpus`` slots without waiting; if all are held (more GPU jobs than GPUs:
    `--resources gpu=` larger than the machine has), waits for the slot ``pid % n_gpus``.
    """
    if "slot" in _HELD:
        return int(_HELD["slot"])  # one job, one GPU: later calls in the same job agree
    lock_dir = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    lock_dir.mkdir(parents=True, exist_ok=True)
    tries = [(slot, fcntl.LOCK_NB) for slot in range(n_gpus)] + [(os.getpid() % n_gpus, 0)]
    for slot, nonblocking in tries:
        f = open(lock_dir / f"gpu{slot}.lock", "a")  # noqa: SIM115 (held for the process's life)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | nonblocking)
        except BlockingIOError:
            f.close()
            continue
        f.truncate(0)
        f.write(f"{os.getpid()}\n")
        f.flush()
        _HELD.update(slot=slot, file=f)
        return slot
    raise AssertionError("unreachable: the last try waits until its slot is free")


def _auto_cuda(env: Mapping[str, str]) -> torch.device:
    n = torch.cuda.device_count()
    if n > 1 and "CUDA_VISIBLE_DEVICES" not in env:
        return torch.device(f"cuda:{claim_gpu_slot(n)}")
    return torch.device("cuda")


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(spec: str | None = "auto", env: Mapping[str, str] | None = None) -> torch.device:
    """``auto`` -> CUDA when available (one free GPU per job when several are visible), else
    Apple's MPS, else CPU. ``cuda``/``mps`` without that device is an error, not a fallback;
    ``cuda:N`` is taken as given."""
    env = os.environ if env is None else env
    spec = (spec or "auto").lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return _auto_cuda(env)
        return torch.device("mps" if mps_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} requested in config but CUDA is not available on this machine")
    if spec == "mps" and not mps_available():
        raise RuntimeError("device 'mps' requested in config but Apple's MPS backend is not available on this machine")
    if spec == "cuda":
        return _auto_cuda(env)
    return torch.device(spec)
