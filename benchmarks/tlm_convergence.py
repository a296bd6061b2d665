"""TLM convergence on the default networks: train random-init (or DM-init) stitches of the diagonal or the whole
grid with a given schedule and print the diagonal gap to model B (pp) -- the measurements of docs/design/stitching-convergence-and-ood.md.

Needs a run directory with results/data/split.json and results/models/smallcnn_seed{0,1}/checkpoint.pt, e.g.
``snakemake --cores 1 results/models/smallcnn_seed0/checkpoint.pt results/models/smallcnn_seed1/checkpoint.pt``.

    OMP_NUM_THREADS=1 python benchmarks/tlm_convergence.py --root RUN_DIR --pair 0-1 --epochs 8
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from repmatch.data import load_recorded_split
from repmatch.networks import load_checkpoint
from repmatch.stitching import (
    Cell,
    Stitch,
    TLMConfig,
    evaluate_stitches,
    layer_shapes,
    train_stitches,
)
from repmatch.settings import load_settings
from repmatch.stitching.network import fold_batchnorm

torch.set_num_threads(1)

p = argparse.ArgumentParser()
p.add_argument("--root", default=".", help="run directory (config.yaml, results/)")
p.add_argument("--pair", default="0-0")
p.add_argument("--epochs", type=int, default=10)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--lr", type=float, default=1e-2)
p.add_argument("--schedule", default="cosine")
p.add_argument("--warmup", type=float, default=0.0)
p.add_argument("--wd", type=float, default=0.0)
p.add_argument("--n_train", type=int, default=0)
p.add_argument("--fold", type=int, default=1)
p.add_argument("--cells", default="diag")  # diag | all
p.add_argument("--method", default="tlm")
p.add_argument("--out", default=None)
a = p.parse_args()
R = a.root
splits = load_recorded_split(load_settings(f"{R}/config.yaml").data, f"{R}/results/data/split.json")
sa, sb = a.pair.split("-")
na = load_checkpoint(f"{R}/results/models/smallcnn_seed{sa}/checkpoint.pt")
nb = load_checkpoint(f"{R}/results/models/smallcnn_seed{sb}/checkpoint.pt")
if a.fold:
    na, nb = fold_batchnorm(na), fold_batchnorm(nb)
shapes = layer_shapes(na, (1, 28, 28))
L = na.layer_names
pairs = [(l, l) for l in L] if a.cells == "diag" else [(x, y) for x in L for y in L]
g = torch.Generator().manual_seed(0)
st = {Cell(a.method, x, y): Stitch(shapes[x], shapes[y], generator=g) for x, y in pairs}
if a.method == "dm_tlm":
    from repmatch.settings import section_settings
    from repmatch.stitching.grid import fit_direct

    maps, _ = fit_direct(na, nb, pairs, shapes, shapes, splits.train.x, section_settings("stitching"), torch.device("cpu"))
    for c, s_ in st.items():
        s_.set_affine(*maps[(c.layer_a, c.layer_b)])
tr = splits.train
if a.n_train:
    tr = tr.subset(np.sort(np.random.default_rng(0).permutation(len(tr))[: a.n_train]))
cfg = TLMConfig.make(epochs=a.epochs, batch_size=a.batch, lr=a.lr, schedule=a.schedule, warmup_epochs=a.warmup, weight_decay=a.wd)
t0 = time.perf_counter()
hist = train_stitches(na, nb, st, tr.x, tr.y, cfg)
t_train = time.perf_counter() - t0
sc, base = evaluate_stitches(na, nb, st, splits.test.x, splits.test.y)
res = {"args": vars(a), "t_train": t_train, "base": base["accuracy"],
       "cells": {f"{c.layer_a}->{c.layer_b}": {"acc": v["accuracy"], "loss": hist[c][-1], "curve": hist[c]} for c, v in sc.items()}}
diag = [(base["accuracy"] - v["accuracy"]) * 100 for c, v in sc.items() if c.layer_a == c.layer_b]
res["diag_gap_mean"], res["diag_gap_max"] = float(np.mean(diag)), float(np.max(diag))
print(json.dumps({k: res[k] for k in ("t_train", "base", "diag_gap_mean", "diag_gap_max")}), " ".join(f"{x:.1f}" for x in diag), vars(a))
if a.out:
    Path(a.out).write_text(json.dumps(res))
