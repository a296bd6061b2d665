"""The within-network sensitivity test: every layer, every rank, every functional score and index of one network.

For layer l with C channels and each rank r (decreasing, starting at r = C, the reference):

* functional scores — ``probe_accuracy`` (linear probe on globally pooled rank-r features, trained
  on the training split, scored on the test split) and ``network_accuracy`` (the network's own
  test accuracy with layer l's output replaced by its rank-r representation);
* indices — each similarity measure between the full and the rank-r representation on the probe
  set (via :func:`repmatch.similarity.grid.similarity_grids`, one 1 x R grid per layer), and DM
  from the rank-r front to the full layer: the closed-form affine map fitted on the training
  split, its stitched test accuracy (``dm_accuracy``) and its structural score ``dm_repr_diff``
  = ||s - h||^2 / ||h||^2 over the test set.

Why pooling commutes: global average pooling and the rank-r map are both affine per position,
so pool(rank_r(h)) = rank_r(pool(h)); the probes need only the pooled full features, computed in
one forward pass, not one pass per rank.

Note on DM here: on the training rows the principal components are exactly uncorrelated, so the
least-squares map from rank-r rows to full rows is the projector itself and its output is the
rank-r representation again (DM cannot restore what the projection removed). ``dm_accuracy``
therefore equals ``network_accuracy`` up to rounding, and ``dm_repr_diff`` is the fraction of the
test set's (uncentred) energy that the rank-r map drops. The test checks the first identity.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from .batches import device_batches
from .correlation import FUNCTIONAL
from .dissimilarity import rank_dissimilarity
from .lowrank import LowRankBasis, channel_rows, from_channel_rows
from .lowrank_dm import basis_from_equations, dm_from_equations
from .probe import pool_features, train_probe

DM_METHODS = ("dm_accuracy", "dm_repr_diff")


def _affine(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Apply ``w v + b`` to every per-position channel vector ``v`` of ``h`` (any layout)."""
    rows = channel_rows(h).to(torch.float64)
    return from_channel_rows(F.linear(rows, w.to(rows.device), b.to(rows.device)), h).to(h.dtype)


@torch.no_grad()
def layer_sensitivity(
    net: Any,
    layer: str,
    *,
    train_x: np.ndarray | torch.Tensor,
    train_y: np.ndarray | torch.Tensor,
    test_x: np.ndarray | torch.Tensor,
    test_y: np.ndarray | torch.Tensor,
    probe_x: np.ndarray | torch.Tensor,
    ranks: Callable[[int], Sequence[int]],
    measures: Sequence[str],
    n_classes: int,
    probe_epochs: int,
    probe_lr: float,
    probe_batch_size: int,
    probe_weight_decay: float,
    seed: int,
    dm_ridge: float,
    batch_size: int,
    device: torch.device,
    similarity_kwargs: Mapping[str, Any] | None = None,
) -> tuple[LowRankBasis, list[dict[str, Any]]]:
    """All scores of one layer of ``net`` (a :class:`repmatch.networks.stitchable.StitchableNet`, eval mode).

    Returns the fitted basis and rows ``{rank, method, value}`` (the caller adds the key columns).
    ``ranks(C)`` gives the ranks for a layer of C channels, starting at C.
    """
    from ..similarity.grid import similarity_grids
    from ..stitching.direct import NormalEquations

    net.eval()
    def front(xb):
        return net.forward_until(xb, layer)

    # 1. one pass over the training split: the moments (basis and every rank's DM map rank r -> full,
    #    :mod:`.lowrank_dm`) and the pooled features
    acc, pooled_train = NormalEquations(), []
    for xb, _ in device_batches(train_x, None, batch_size, device):
        h = front(xb)
        rows_h = channel_rows(h)
        acc.update(rows_h, {"y": rows_h})
        pooled_train.append(pool_features(h).double().cpu())
    basis = basis_from_equations(acc)
    rs = list(ranks(basis.full_rank))
    ptrain = torch.cat(pooled_train)
    ytr = torch.as_tensor(np.asarray(train_y)).long()
    # 2. DM rank r -> full from the same moments
    dm = {r: dm_from_equations(acc, basis, r, dm_ridge) for r in rs}
    # 3. one pass over the test split: pooled features, network and DM accuracy, repr_diff
    correct = dict.fromkeys(rs, 0)
    correct_dm = dict.fromkeys(rs, 0)
    sq_diff = dict.fromkeys(rs, 0.0)
    sq_real = 0.0
    pooled_test, total = [], 0
    for xb, yb in device_batches(test_x, test_y, batch_size, device):
        assert yb is not None
        h = front(xb)
        pooled_test.append(pool_features(h).double().cpu())
        sq_real += float(h.double().pow(2).sum())
        total += int(yb.numel())
        for r in rs:
            hr = basis.apply(h, r)
            correct[r] += int((net.forward_from(hr, layer, xb).argmax(1) == yb).sum())
            s = _affine(hr, *dm[r])
            correct_dm[r] += int((net.forward_from(s, layer, xb).argmax(1) == yb).sum())
            sq_diff[r] += float((s.double() - h.double()).pow(2).sum())
    ptest = torch.cat(pooled_test)
    yte = torch.as_tensor(np.asarray(test_y)).long()
    rows: list[dict[str, Any]] = []
    for r in rs:
        f_tr = _pooled_rank(basis, ptrain, r)
        f_te = _pooled_rank(basis, ptest, r)
        probe = train_probe(f_tr, ytr, n_classes=n_classes, epochs=probe_epochs, lr=probe_lr,
                            batch_size=probe_batch_size, weight_decay=probe_weight_decay, seed=seed)
        pa = probe.accuracy(f_te, yte)
        rows += [
            {"rank": r, "method": "probe_accuracy", "value": pa},
            {"rank": r, "method": "network_accuracy", "value": correct[r] / total},
            {"rank": r, "method": "dm_accuracy", "value": correct_dm[r] / total},
            {"rank": r, "method": "dm_repr_diff", "value": sq_diff[r] / sq_real if sq_real > 0 else float("nan")},
        ]
    # 4. every similarity measure between the full and the rank-r probe representations
    if measures:
        full = torch.cat([front(xb).cpu() for xb, _ in device_batches(probe_x, None, batch_size, device)])
        low = {f"rank{r}": basis.apply(full, r) for r in rs}
        grids, _ = similarity_grids({layer: full}, low, list(measures), device=device, same_model=False,
                                    **dict(similarity_kwargs or {}))
        for m in measures:
            for k, r in enumerate(rs):
                rows.append({"rank": r, "method": m, "value": float(grids[m][0, k])})
    for row in rows:
        row["full_rank"] = basis.full_rank
        row["variance_kept"] = basis.variance_kept(row["rank"])
    return basis, rows


def _pooled_rank(basis: LowRankBasis, pooled: torch.Tensor, r: int) -> torch.Tensor:
    """rank_r applied to already pooled (N, C) features (pooling commutes with the affine map)."""
    return basis.apply(pooled, r).float()


def tidy_rows(model: str, layer: str, index: int, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Key columns and the ``dissimilarity`` column (relative to the same method at full rank)."""
    full = {r["method"]: r["value"] for r in rows if r["rank"] == r["full_rank"]}
    return [{"model": model, "layer": layer, "index": int(index), **dict(r),
             "dissimilarity": rank_dissimilarity(r["method"], r["value"], full[r["method"]])} for r in rows]


def summary_table(table: Any, *, functional: Sequence[str] = FUNCTIONAL) -> Any:
    """Per functional score and index: Spearman / Kendall of the index's dissimilarity with the
    functional drop, within each (model, layer) over ranks and pooled over the model's layers.

    Columns: ``model, functional`` + :data:`repmatch.sensitivity.correlation.CORRELATION_COLUMNS`.
    Constant indices give NaN rows with a ConstantInputWarning.
    """
    import pandas as pd

    from .correlation import CORRELATION_COLUMNS, sensitivity_correlations

    out = []
    keys = ["model", "layer", "rank"]
    for fn in functional:
        drop = table[table.method == fn][keys + ["dissimilarity"]].rename(columns={"dissimilarity": "drop"})
        idx = table[~table.method.isin(list(FUNCTIONAL))]
        joined = idx.merge(drop, on=keys)
        for model, g in joined.groupby("model", sort=False):
            corr = sensitivity_correlations(g)
            corr.insert(0, "functional", fn)
            corr.insert(0, "model", model)
            out.append(corr)
    cols = ["model", "functional", *CORRELATION_COLUMNS]
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)
