"""The cross-network sensitivity test: DM and TLM from A's rank-r layer into B's layer
(the authors' ``--front-stitch-rank``).

For an ordered network pair (A, B) (A = B included), each layer l and rank r: A's layer-l output
is replaced by its rank-r representation (A's own principal directions, fitted once on the
training split, :mod:`.lowrank`) and stitched into B's layer l (full). Both stitchers of the
seed paper are run from that front:

* **DM**: the closed-form least-squares affine map, fitted on the training split from the
  float64 moments of :class:`repmatch.stitching.direct.NormalEquations` (one pass gives A's
  basis and every rank's map, :func:`fit_moments`; the map is fitted in principal coordinates,
  :mod:`.lowrank_dm` says why).
* **TLM**: a randomly initialised stitch per (layer, rank) trained on the task with
  :func:`repmatch.stitching.task.train_stitches` (one stacked run for all of them).

Every stitch is scored by :func:`repmatch.stitching.scores.evaluate_stitches` (stitched test
accuracy and the structural score ``repr_diff`` = ||s - h_B||^2 / ||h_B||^2), and every
similarity measure compares A's rank-r layer with B's full layer on the probe set. The front
network is :class:`LowRankFront`: A seen through its rank-r layers, named ``"<layer>@r<r>"``,
with the :class:`repmatch.networks.stitchable.StitchableNet` interface the stitching code uses. Each row's
value becomes a distance and a dissimilarity by :func:`repmatch.sensitivity.dissimilarity.pair_distance`.

Within one network (A = B) DM from rank r returns the rank-r representation itself (the
principal coefficients are uncorrelated on the training rows; see :mod:`.within_network`), so its
accuracy is the network's own at rank r; TLM and every cross-network stitch are not tied so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ..networks.stitchable import layer_index

from .batches import input_batches
from .dissimilarity import pair_distance
from .lowrank import LowRankBasis, channel_rows, from_channel_rows
from .lowrank_dm import basis_from_equations, dm_from_equations

SEPARATOR = "@r"
STITCH_METHODS = ("dm", "tlm")


def front_name(layer: str, rank: int) -> str:
    """The virtual layer name of ``layer`` at ``rank`` in a :class:`LowRankFront`."""
    return f"{layer}{SEPARATOR}{int(rank)}"


def parse_front_name(name: str) -> tuple[str, int]:
    """(layer, rank) of a :func:`front_name`."""
    layer, sep, rank = name.rpartition(SEPARATOR)
    if not sep or not rank.isdigit():
        raise KeyError(f"{name!r} is not a low-rank front layer (expected '<layer>{SEPARATOR}<rank>')")
    return layer, int(rank)


class LowRankFront(nn.Module):
    """Network A seen through rank-r layers: the front half the stitching code trains and scores.

    ``layer_names`` are ``"<layer>@r<rank>"`` for every configured (layer, rank), in network
    order then decreasing rank; :meth:`features` runs A once and returns each requested layer's
    rank-r representation (float64 projection, cast back to the activations' dtype). Only the
    front half exists: there is no ``forward_from`` (A is never a back half here).
    """

    def __init__(self, net: Any, bases: Mapping[str, LowRankBasis], ranks: Mapping[str, Sequence[int]]) -> None:
        super().__init__()
        self.net = net
        self.bases = dict(bases)
        missing = [layer for layer in ranks if layer not in self.bases]
        if missing:
            raise KeyError(f"no low-rank basis for layers {missing}")
        for layer, rs in ranks.items():
            for r in rs:
                if not 1 <= int(r) <= self.bases[layer].full_rank:
                    raise ValueError(f"rank {r} of layer {layer!r} is outside [1, {self.bases[layer].full_rank}]")
        order = [layer for layer in net.layer_names if layer in ranks]
        self.layer_names: list[str] = [front_name(layer, r) for layer in order for r in sorted(ranks[layer], reverse=True)]

    def index(self, name: str) -> int:
        return layer_index(self.layer_names, name)

    def features(self, x: torch.Tensor, names: Iterable[str]) -> dict[str, torch.Tensor]:
        """Rank-r representations of the requested virtual layers, from one forward pass of A."""
        wanted = {n: parse_front_name(n) for n in names}
        for n in wanted:
            self.index(n)
        feats = self.net.features(x, {layer for layer, _ in wanted.values()})
        out: dict[str, torch.Tensor] = {}
        for layer in {layer for layer, _ in wanted.values()}:
            h = feats[layer]
            basis = self.bases[layer]
            rows = channel_rows(h).to(torch.float64)
            mu, v = basis.mean.to(rows.device), basis.directions.to(rows.device)
            z = (rows - mu) @ v  # all principal coefficients once, then each rank's truncation
            for n, (lay, r) in wanted.items():
                if lay == layer:
                    out[n] = from_channel_rows(mu + z[:, :r] @ v[:, :r].T, h).to(h.dtype)
        return out

    def forward_until(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return self.features(x, [name])[name]


@torch.no_grad()
def fit_moments(net_a: Any, net_b: Any, layers: Sequence[str], x: np.ndarray | torch.Tensor, batch_size: int,
                device: torch.device, need_dm: bool = True) -> dict[str, Any]:
    """One pass over the training inputs: per layer, the float64 normal equations of B's rows on A's rows.

    Why one pass serves both: A's principal directions come from the input moments (mean and
    covariance of A's rows) and the DM map from any rank-r front is a function of the same
    moments and of the cross moments with B's rows (z = V_r^T (x - mu) is linear in x), so
    neither the basis nor each rank needs a pass of its own. Returns
    {layer: :class:`repmatch.stitching.direct.NormalEquations`} (target ``"y"`` when ``need_dm``).
    """
    from ..stitching.direct import NormalEquations

    ne = {layer: NormalEquations() for layer in layers}
    for xb in input_batches(x, batch_size, device):
        fa = net_a.features(xb, layers)
        fb = fa if net_b is net_a else net_b.features(xb, layers) if need_dm else {}
        for layer in layers:
            if need_dm and fa[layer].shape[2:] != fb[layer].shape[2:]:
                raise ValueError(f"layer {layer!r} has spatial shape {tuple(fa[layer].shape[2:])} in A but "
                                 f"{tuple(fb[layer].shape[2:])} in B; the rank-r front needs one shape")
            ne[layer].update(channel_rows(fa[layer]), {"y": channel_rows(fb[layer])} if need_dm else {})
    return ne


def pair_sensitivity(
    net_a: Any,
    net_b: Any,
    layers: Sequence[str],
    *,
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    probe_x: np.ndarray,
    ranks: Callable[[int], Sequence[int]],
    measures: Sequence[str],
    methods: Sequence[str],
    tlm: Any,
    tlm_n_train: int | None,
    dm_ridge: float,
    batch_size: int,
    max_stack: int | None,
    device: torch.device,
    similarity_kwargs: Mapping[str, Any] | None = None,
    log: logging.Logger | None = None,
) -> tuple[list[dict[str, Any]], float]:
    """Every (layer, rank, method) value of the rank-r front of A into B's full layer.

    ``tlm`` is a :class:`repmatch.stitching.task.TLMConfig` (its ``epochs``, ``seed``, ...);
    ``tlm_n_train`` trains TLM on a seeded subset of the training split. Returns rows
    ``{layer, rank, full_rank, variance_kept, method, value}`` with methods ``dm_accuracy``,
    ``dm_repr_diff``, ``tlm_accuracy``, ``tlm_repr_diff`` (those of ``methods``) and every
    measure (value(B's full layer, A's rank-r layer)), and model B's own test accuracy.
    """
    from ..similarity.grid import similarity_grids
    from ..stitching.layer import Stitch
    from ..stitching.network import Cell, freeze, layer_shapes
    from ..stitching.scores import evaluate_stitches
    from ..stitching.task import train_stitches

    unknown = sorted(set(methods) - set(STITCH_METHODS))
    if unknown:
        raise ValueError(f"unknown stitch methods {unknown}; choose from {list(STITCH_METHODS)}")
    log = log or logging.getLogger("repmatch.sensitivity")
    freeze(net_a).to(device), freeze(net_b).to(device)
    layers = list(layers)
    moments = fit_moments(net_a, net_b, layers, train_x, batch_size, device, need_dm="dm" in methods)
    bases = {layer: basis_from_equations(moments[layer]) for layer in layers}
    rank_map = {layer: [int(r) for r in ranks(bases[layer].full_rank)] for layer in layers}
    front = LowRankFront(net_a, bases, rank_map)
    input_shape = tuple(np.shape(train_x)[1:])
    shapes_a, shapes_b = layer_shapes(front, input_shape, device), layer_shapes(net_b, input_shape, device)
    cells = [(layer, r) for layer in layers for r in rank_map[layer]]
    stitches: dict[Any, Stitch] = {}
    if "dm" in methods:
        for layer, r in cells:
            name = front_name(layer, r)
            dm = dm_from_equations(moments[layer], bases[layer], r, dm_ridge)
            stitches[Cell("dm", name, layer)] = Stitch(shapes_a[name], shapes_b[layer]).set_affine(*dm)
    if "tlm" in methods:
        gen = torch.Generator().manual_seed(tlm.seed)
        trained = {Cell("tlm", front_name(layer, r), layer): Stitch(shapes_a[front_name(layer, r)], shapes_b[layer], gen)
                   for layer, r in cells}
        tx, ty = train_x, train_y
        if tlm_n_train is not None and tlm_n_train < len(train_x):
            pick = np.sort(np.random.default_rng(tlm.seed).permutation(len(train_x))[:tlm_n_train])
            tx, ty = train_x[pick], train_y[pick]
        if tlm.epochs > 0:
            train_stitches(front, net_b, trained, tx, ty, replace(tlm, max_stack=max_stack), device, stacked=True, log=log)
        stitches.update(trained)
    rows: list[dict[str, Any]] = []
    base_accuracy = float("nan")
    if stitches:
        scores, base = evaluate_stitches(front, net_b, stitches, test_x, test_y, device, batch_size, max_stack=max_stack)
        base_accuracy = float(base["accuracy"])
        for cell, s in scores.items():
            layer, r = parse_front_name(cell.layer_a)
            rows += [{"layer": layer, "rank": r, "method": f"{cell.method}_accuracy", "value": s["accuracy"]},
                     {"layer": layer, "rank": r, "method": f"{cell.method}_repr_diff", "value": s["repr_diff"]}]
    if measures:
        with torch.no_grad():
            fa = {layer: [] for layer in layers}
            fb = {layer: [] for layer in layers}
            for xb in input_batches(probe_x, batch_size, device):
                a, b = net_a.features(xb, layers), net_b.features(xb, layers)
                for layer in layers:
                    fa[layer].append(a[layer].cpu())
                    fb[layer].append(b[layer].cpu())
        for layer in layers:
            full_a, full_b = torch.cat(fa[layer]), torch.cat(fb[layer])
            low = {f"rank{r}": bases[layer].apply(full_a, r) for r in rank_map[layer]}
            grids, _ = similarity_grids({layer: full_b}, low, list(measures), device=device, same_model=False,
                                        **dict(similarity_kwargs or {}))
            for m in measures:
                rows += [{"layer": layer, "rank": r, "method": m, "value": float(grids[m][0, k])}
                         for k, r in enumerate(rank_map[layer])]
    for row in rows:
        basis = bases[row["layer"]]
        row["full_rank"] = basis.full_rank
        row["variance_kept"] = basis.variance_kept(row["rank"])
    return rows, base_accuracy


def tidy_pair_rows(model_a: str, model_b: str, index: Mapping[str, int], rows: Sequence[Mapping[str, Any]],
                   b_accuracy: float) -> list[dict[str, Any]]:
    """Key columns, ``distance`` (:func:`pair_distance`) and ``dissimilarity`` = distance at rank r minus
    the same method's distance at full rank (for stitched accuracy: the drop from the full-rank
    stitch), i.e. how much further from B the front moves by losing rank."""
    out = []
    full = {(r["layer"], r["method"]): pair_distance(r["method"], r["value"], b_accuracy) for r in rows if r["rank"] == r["full_rank"]}
    for r in rows:
        d = pair_distance(r["method"], r["value"], b_accuracy)
        out.append({"model_a": model_a, "model_b": model_b, "layer": r["layer"], "index": int(index[r["layer"]]),
                    "rank": int(r["rank"]), "full_rank": int(r["full_rank"]), "variance_kept": r["variance_kept"],
                    "method": r["method"], "value": float(r["value"]), "distance": d,
                    "dissimilarity": d - full[(r["layer"], r["method"])], "b_accuracy": b_accuracy})
    return out
