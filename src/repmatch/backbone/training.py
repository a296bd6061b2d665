"""Deterministic training of one (architecture, seed) network.

Why so strict: the whole study compares networks that differ *only* in their initialisation
(and the data order drawn from the same seed). Rerunning a seed must give bitwise-identical
weights on CPU, so every source of randomness is drawn from generators seeded here, the data
loader is a plain in-memory permutation, and torch runs in deterministic mode.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data import ArrayDataset, Splits
from ..networks.checkpoints import load_torch, save_torch
from ..networks.stitchable import StitchableNet
from ..networks.zoo import build_model
from ..optim import SGD, Adam, AdamW, Optimizer, cosine_lr

if TYPE_CHECKING:
    from ..settings import TrainSettings


def set_determinism(seed: int, threads: int | None = None) -> None:
    """Seed every RNG and switch torch to deterministic kernels."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    # torch.use_deterministic_algorithms also sets torch._inductor's flag, and importing torch._inductor
    # costs ~1.9 s per training job; repmatch never compiles, so only the kernel switch is needed (the
    # same call the public function makes). Fall back to the public function if torch renames it.
    switch = getattr(torch._C, "_set_deterministic_algorithms", None)
    if switch is None:
        torch.use_deterministic_algorithms(True, warn_only=False)
    else:
        switch(True, warn_only=False)
    torch.backends.cudnn.benchmark = False


def augment_batch(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop (zero padding ``pad``) and horizontal flip, drawn from ``generator``."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    rows = (dy[:, None] + torch.arange(h)[None, :]).to(x.device)  # (n, h)
    cols = (dx[:, None] + torch.arange(w)[None, :]).to(x.device)  # (n, w)
    cols = torch.where(flip.to(x.device)[:, None], cols.flip(1), cols)
    idx_n = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]]  # (n, h, w, c)
    return out.permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def evaluate(model: StitchableNet, dataset: ArrayDataset, device: torch.device | str, batch_size: int = 500) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` (in eval mode) on ``dataset``."""
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    for start in range(0, len(dataset), batch_size):
        x = torch.from_numpy(dataset.x[start : start + batch_size]).to(device)
        y = torch.from_numpy(dataset.y[start : start + batch_size]).to(device)
        logits = model(x)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    model.train(was_training)
    return {"accuracy": correct / len(dataset), "loss": loss_sum / len(dataset)}


def _optimizer(model: torch.nn.Module, train: TrainSettings) -> Optimizer:
    """torch.optim's arithmetic without its torch._dynamo import (repmatch.optim: bitwise the same weights)."""
    lr, wd = train.lr, train.weight_decay
    if train.optimizer == "adam":
        return Adam(model.parameters(), lr=lr, weight_decay=wd)
    if train.optimizer == "adamw":  # decoupled weight decay, what ViTs are trained with
        return AdamW(model.parameters(), lr=lr, weight_decay=wd)
    return SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=wd)


def _rng_states(gen: torch.Generator) -> dict[str, Any]:
    states = {"data_order": gen.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(gen: torch.Generator, states: dict[str, Any]) -> None:
    gen.set_state(states["data_order"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _run_key(model: StitchableNet, splits: Splits, train: TrainSettings, seed: int) -> dict[str, Any]:
    """What must match for a saved state to be resumed: the same settings, seed, network and data."""
    key = {k: v for k, v in dataclasses.asdict(train).items() if k != "threads"}
    return {"train": repr(sorted(key.items())), "seed": seed, "model": type(model).__name__,
            "n_train": len(splits.train), "fingerprint": str(getattr(splits, "fingerprint", ""))}  # fmt: skip


def train_model(
    model: StitchableNet,
    splits: Splits,
    train: TrainSettings,
    seed: int,
    device: torch.device | str = "cpu",
    progress: bool | None = None,
    *,
    log: logging.Logger | None = None,
    state_path: str | os.PathLike[str] | None = None,
    after_epoch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place (SGD/Adam, cosine learning-rate decay); return its metrics.

    The data order and augmentation are drawn from a generator seeded with ``seed``.

    Resumable: with ``state_path``, the model, optimizer, scheduler and every RNG state are
    saved there atomically after each epoch, and a later call with the same settings resumes
    after the last saved epoch (logged), giving weights bitwise-identical to an uninterrupted run
    on CPU. Why: a cluster job killed at its time limit is retried (with more time) and must not
    start 160 epochs over. A state from other settings is ignored (logged) and overwritten.
    ``log`` gets one line per epoch (loss, accuracy, seconds); the progress bar shows only when
    ``progress`` is true, by default when stderr is a terminal (not in a job's log file).
    ``after_epoch(epoch)`` runs after each epoch's state is saved (tests interrupt training there).
    """
    log = log or logging.getLogger(__name__)
    if progress is None:
        progress = sys.stderr.isatty()
    epochs, batch_size, augment = train.epochs, train.batch_size, train.augment
    model.to(device).train()
    opt = _optimizer(model, train)
    steps_per_epoch = math.ceil(len(splits.train) / batch_size)
    step = 0  # optimizer steps taken, the schedule's position: saved as {"scheduler": {"last_epoch": step}},
    # the key torch's LambdaLR used, so a state saved before repmatch.optim resumes too
    gen = torch.Generator().manual_seed(seed)
    x_all, y_all = torch.from_numpy(splits.train.x), torch.from_numpy(splits.train.y)
    history: list[dict[str, float]] = []
    done, elapsed_before = 0, 0.0
    key = _run_key(model, splits, train, seed)
    if state_path is not None and Path(state_path).exists():
        state = load_torch(state_path, map_location="cpu")
        if state.get("key") == key:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            step = int(state["scheduler"]["last_epoch"])
            _set_rng_states(gen, state["rng"])
            history, done, elapsed_before = list(state["history"]), int(state["epoch"]), float(state["seconds"])
            log.info("resumed from %s after epoch %d/%d", state_path, done, epochs)
        else:
            log.warning("ignoring %s: saved by a run with other settings; training from scratch", state_path)
    start_time = time.perf_counter()
    bar = tqdm(range(done, epochs), desc=f"train seed {seed}", disable=not progress, mininterval=1.0,
               initial=done, total=epochs)  # fmt: skip
    for epoch in bar:
        epoch_start = time.perf_counter()
        order = torch.randperm(len(splits.train), generator=gen)
        loss_sum, correct = 0.0, 0
        for s in range(steps_per_epoch):
            idx = order[s * batch_size : (s + 1) * batch_size]
            x, y = x_all[idx], y_all[idx]
            if augment:
                x = augment_batch(x, gen)
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {float(loss)} at epoch {epoch}, step {s}: lower train.lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for group in opt.param_groups:
                group["lr"] = cosine_lr(train.lr, step, epochs * steps_per_epoch)
            opt.step()
            step += 1
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / len(splits.train), "train_accuracy": correct / len(splits.train)})
        bar.set_postfix(loss=f"{history[-1]['train_loss']:.3f}", acc=f"{history[-1]['train_accuracy']:.3f}")
        log.info("epoch %d/%d: loss %.4f, accuracy %.4f, %.1f s", epoch + 1, epochs, history[-1]["train_loss"],
                 history[-1]["train_accuracy"], time.perf_counter() - epoch_start)  # fmt: skip
        if state_path is not None and epoch + 1 < epochs:
            save_torch({"key": key, "epoch": epoch + 1, "history": history, "model": model.state_dict(),
                        "optimizer": opt.state_dict(), "scheduler": {"last_epoch": step}, "rng": _rng_states(gen),
                        "seconds": elapsed_before + time.perf_counter() - start_time}, state_path)  # fmt: skip
        if after_epoch is not None:
            after_epoch(epoch + 1)
    train_seconds = elapsed_before + time.perf_counter() - start_time
    test = evaluate(model, splits.test, device)
    model.eval()
    return {
        "seed": seed,
        "epochs": epochs,
        "train_seconds": train_seconds,
        "train_accuracy": history[-1]["train_accuracy"],
        "train_loss": history[-1]["train_loss"],
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "history": history,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
    }


def train_new_model(
    arch: str, splits: Splits, train: TrainSettings, seed: int, device: torch.device | str = "cpu",
    progress: bool | None = None, *, log: logging.Logger | None = None, state_path: str | os.PathLike[str] | None = None,
    after_epoch: Callable[[int], None] | None = None,
) -> tuple[StitchableNet, dict[str, Any]]:  # fmt: skip
    """Seed everything, build ``arch`` (initialisation drawn from ``seed``) and train it
    (resuming from ``state_path`` when it holds a state of this run: :func:`train_model`)."""
    set_determinism(seed, train.threads)
    model = build_model(arch, splits.num_classes, splits.in_channels, splits.image_size)
    metrics = train_model(model, splits, train, seed, device, progress, log=log, state_path=state_path, after_epoch=after_epoch)
    return model, metrics
