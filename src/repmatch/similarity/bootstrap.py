"""Probe-sample bootstrap of every similarity grid of a model pair, and its table columns.

What is estimated: the sampling variability of each index over the probe set. Resample b draws
n probe rows with replacement (:func:`~repmatch.uncertainty.resample.bootstrap_indices`); its
replicate of cell (i, j) is *exactly* the value the grid engine gives on the resampled rows
``X_i[idx_b]``, ``Y_j[idx_b]`` (duplicated rows included, re-centred on the resample's own
mean). The same resamples serve every layer and every measure of the pair, so the replicates of
two cells are paired and a difference between cells has its own bootstrap distribution.

Two ways to a measure's replicates, chosen per measure:

* ``weighted``: the measure's resampled form (``Measure.resampled_ref``, declared in the
  measure's module next to its grid function) computes a chunk of resamples at once from the
  shared per-resample moments of :mod:`.resampled` (a resample is a vector of row multiplicities).
  Used for ``gap`` / ``flatten`` views of layers no wider than the probe set (the forms work with
  d x d covariances) and at least 4 rows;
* ``gather``: the generic form of every measure, the grid engine run on each resample's gathered
  activations: exact by definition, B times the point-estimate cost, any conv mode and width. A
  measure without a resampled form (a user measure, a new one) gets its intervals this way with
  no extra code; it is also the reference the resampled forms are tested against.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..uncertainty.intervals import percentile_interval
from ..uncertainty.resample import bootstrap_counts, bootstrap_indices
from ..uncertainty.significance import counterpart_pvalues
from .context import GridContext
from .errors import SimilarityInputError
from .grid import DTYPES, check_inputs, measure_params, similarity_grids, source_eps
from .preprocess import pair_views, to_matrix
from .registry import check_measures
from .resampled import ResampleChunk, ResampleSet, row_blocks

#: The resampled forms work with d x d covariances; wider layers go through the gather path.
MAX_WEIGHTED_WIDTH = 1024


@dataclass
class BootstrapGrids:
    """Bootstrap replicates of every grid of one model pair.

    ``replicates[m]``: (B, L_a, L_b) values of measure m on each resample (NaN where the
    resample is degenerate for that cell); ``backward[m]``: (B, L_b, L_a) for asymmetric measures
    when requested. ``indices``: the (B, n) resampled rows (shared by every cell and measure).
    ``path``: ``weighted``, ``gather`` or ``weighted+gather`` (how they were computed).
    """

    measures: list[str]
    replicates: dict[str, np.ndarray]
    backward: dict[str, np.ndarray] = field(default_factory=dict)
    indices: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    seed: int = 0
    path: str = "weighted"

    @property
    def n_boot(self) -> int:
        return int(self.indices.shape[0])

    def interval(self, measure: str, level: float = 0.95, backward: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Percentile interval per cell: (ci_low, ci_high, n_valid) grids."""
        reps = (self.backward if backward else self.replicates)[measure]
        return percentile_interval(reps, level=level)


def bootstrap_similarity_grids(
    acts_a: Mapping[str, Any],
    acts_b: Mapping[str, Any],
    measures: Sequence[str],
    *,
    n_boot: int,
    seed: int,
    conv_mode: str = "gap",
    params: Mapping[str, Any] | None = None,
    dtype: str = "float64",
    device: torch.device | str | None = None,
    same_model: bool | None = None,
    reverse: bool = False,
    path: str = "auto",
    chunk: int | None = None,
    token_mode: str | None = None,
) -> BootstrapGrids:
    """Bootstrap replicates of every measure on every layer pair, from ``n_boot`` shared resamples.

    Arguments mirror :func:`repmatch.similarity.similarity_grids` (same conv handling, parameters
    and orientation conventions). ``path``: ``auto`` (each measure with a resampled form takes the
    weighted path where the layers allow it, the others the gather path), ``weighted`` (every
    measure, or an error) or ``gather``. ``chunk``: resamples processed at once (memory bound).
    """
    n = check_inputs(acts_a, acts_b, conv_mode, "nan")
    resolved = check_measures(measures)
    names = [m.name for m in resolved]
    if dtype not in DTYPES:
        raise SimilarityInputError(f"precision must be one of {sorted(DTYPES)}, got {dtype!r}")
    if path not in ("auto", "weighted", "gather"):
        raise SimilarityInputError(f"path must be auto, weighted or gather, got {path!r}")
    same = (acts_a is acts_b) if same_model is None else same_model
    dev = torch.device(device) if device is not None else torch.device("cpu")
    idx = bootstrap_indices(n, n_boot, seed)
    asym = [m.name for m in resolved if reverse and not m.symmetric]

    shapes = [tuple(np.shape(v)) for v in list(acts_a.values()) + list(acts_b.values())]
    views = {pair_views(sa, sb, conv_mode, token_mode) for sa in shapes for sb in shapes}
    widths = [_width(s, next(iter(views))[0]) for s in shapes]
    layout_ok = conv_mode in ("gap", "flatten") and len(views) == 1 and max(widths) <= min(n, MAX_WEIGHTED_WIDTH) and n >= 4
    forms = {m.name: m.resampled for m in resolved} if path != "gather" and layout_ok else {}
    weighted = [m for m in names if forms.get(m) is not None]
    if path == "weighted" and len(weighted) < len(names):
        raise SimilarityInputError("the weighted bootstrap needs conv_mode gap/flatten, layers no wider than the probe set "
                                   f"(and <= {MAX_WEIGHTED_WIDTH}), n >= 4 and measures with a resampled form; "
                                   f"without one: {sorted(set(names) - set(weighted))}")  # fmt: skip
    gathered = [m for m in names if m not in weighted]
    fwd: dict[str, np.ndarray] = {}
    bwd: dict[str, np.ndarray] = {}
    if weighted:
        view = next(iter(views))[0]
        xa, raw_a, mean_a = zip(*[_centred(acts_a[k], view, dev, DTYPES[dtype]) for k in acts_a])
        xb, raw_b, mean_b = (xa, raw_a, mean_a) if same else zip(*[_centred(acts_b[k], view, dev, DTYPES[dtype]) for k in acts_b])
        eps_a = [source_eps(v) for v in acts_a.values()]
        eps_b = eps_a if same else [source_eps(v) for v in acts_b.values()]
        rs = ResampleSet(list(xa), list(xb), eps_a, eps_b, same, list(mean_a), list(mean_b))
        w_fwd, w_bwd = _weighted_path(rs, {m: forms[m] for m in weighted}, [m for m in asym if m in weighted], idx,
                                      measure_params(params), chunk)  # fmt: skip
        _mask_zero_variance(w_fwd, w_bwd, rs, list(raw_a), list(raw_b), idx)
        fwd.update(w_fwd)
        bwd.update(w_bwd)
    if gathered:
        g_fwd, g_bwd = _gather_path(acts_a, acts_b, gathered, idx, conv_mode, params, dtype, dev, same, reverse, token_mode)
        fwd.update(g_fwd)
        bwd.update({k: g_bwd[k] for k in asym if k in gathered})
    kind = "weighted+gather" if weighted and gathered else ("weighted" if weighted else "gather")
    return BootstrapGrids(names, {m: fwd[m] for m in names}, {m: bwd[m] for m in asym}, idx, seed, kind)


def _width(shape: tuple[int, ...], view: Any) -> int:
    """Features per sample of a layer under ``view``: channels (D for tokens), or all of them when flattened."""
    if len(shape) == 2:
        return int(shape[1])
    if view.kind == "flat":
        return int(np.prod(shape[1:]))
    return int(shape[2]) if len(shape) == 3 else int(shape[1])


def _centred(arr: Any, view: Any, dev: torch.device, dt: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The layer centred on the probe-set mean, its uncentred squared row norms (the zero-variance
    scale) and the (1, d) mean."""
    x = to_matrix(arr, view, dev, dt)
    mean = x.mean(dim=0, keepdim=True)
    return x - mean, x.square().sum(1), mean


def _mask_zero_variance(fwd: dict[str, np.ndarray], bwd: dict[str, np.ndarray], rs: ResampleSet, raw_a: list[torch.Tensor],
                        raw_b: list[torch.Tensor], idx: np.ndarray) -> None:  # fmt: skip
    """NaN for a layer with zero variance on a resample, by the engine's rule (centred norm at the
    rounding level of the stored data): every measure is undefined there."""
    n = rs.n
    w = torch.as_tensor(bootstrap_counts(idx, n), dtype=rs.dtype, device=rs.device)

    def bad(xs: list[torch.Tensor], raws: list[torch.Tensor], eps: list[float]) -> np.ndarray:
        cols = []
        for x, raw, e in zip(xs, raws, eps):
            m = (w @ x) / n
            tr = w @ x.square().sum(1) - n * m.square().sum(1)
            cols.append(tr.clamp_min(0).sqrt() <= 4 * e * (w @ raw).sqrt())
        return torch.stack(cols, 1).cpu().numpy()

    ba = bad(rs.xa, raw_a, rs.eps_a)
    bb = ba if rs.same else bad(rs.xb, raw_b, rs.eps_b)
    if not (ba.any() or bb.any()):
        return
    cell = ba[:, :, None] | bb[:, None, :]
    for grids, mask in ((fwd, cell), (bwd, cell.transpose(0, 2, 1))):
        for g in grids.values():
            g[mask] = np.nan


def _weighted_path(rs: ResampleSet, forms: Mapping[str, Any], asym: list[str], idx: np.ndarray, params: dict[str, Any],
                   chunk: int | None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:  # fmt: skip
    """Every resampled form on chunks of resamples; the chunk's shared moments are computed once per chunk."""
    n, b_total = rs.n, idx.shape[0]
    la, lb = len(rs.xa), len(rs.xb)
    fwd = {m: np.full((b_total, la, lb), np.nan) for m in forms}
    bwd = {m: np.full((b_total, lb, la), np.nan) for m in asym}
    # The cross-products are formed over the row blocks of the (first) block-wise measure, if any.
    block_params = [f.row_blocks for f in forms.values() if f.row_blocks is not None]
    blocks = row_blocks(n, int(params[block_params[0]])) if block_params else [slice(0, n)]
    counts_all = bootstrap_counts(idx, n)
    if chunk is None:
        da, db = rs.big_a.shape[1], rs.big_b.shape[1]
        per = 8 * n * (da + (0 if rs.same else db)) * 3 + 8 * da * db * 2
        chunk = max(1, min(b_total, int(256e6 // max(per, 1))))
    for start in range(0, b_total, chunk):
        sl = slice(start, min(start + chunk, b_total))
        rows = torch.as_tensor(idx[sl], device=rs.device)
        w = torch.as_tensor(counts_all[sl], device=rs.device, dtype=rs.dtype)
        ch = ResampleChunk(rs, rows, w, blocks)
        for m, form in forms.items():
            f, b = form(ch, GridContext(params), m in asym)
            fwd[m][sl] = f.cpu().numpy()
            if m in asym:
                assert b is not None, f"the resampled form of {m} gave no backward grid"
                bwd[m][sl] = b.cpu().numpy()
    return fwd, bwd


def _take(arr: Any, rows: np.ndarray) -> Any:
    if isinstance(arr, torch.Tensor):
        return arr[torch.as_tensor(rows, device=arr.device)]
    return np.asarray(arr)[rows]


def _gather_path(acts_a: Mapping[str, Any], acts_b: Mapping[str, Any], names: list[str], idx: np.ndarray, conv_mode: str,
                 params: Mapping[str, Any] | None, dtype: str, dev: torch.device, same: bool, reverse: bool,
                 token_mode: str | None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:  # fmt: skip
    """The generic form of every measure: the grid engine on each resample's gathered rows."""
    b = idx.shape[0]
    fwd = {m: np.full((b, len(acts_a), len(acts_b)), np.nan) for m in names}
    bwd = {m: np.full((b, len(acts_b), len(acts_a)), np.nan) for m in names}
    for k, rows in enumerate(idx):
        ga = {name: _take(v, rows) for name, v in acts_a.items()}
        gb = ga if same else {name: _take(v, rows) for name, v in acts_b.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f, r = similarity_grids(ga, gb, names, conv_mode, dev, params, "nan", dtype, same_model=same, reverse=reverse,
                                    token_mode=token_mode, sample_ids=rows)
        for m in names:
            fwd[m][k] = f[m]
            if m in r:
                bwd[m][k] = r[m]
    return fwd, bwd


# --- table columns ------------------------------------------------------------------------------------------------


def interval_table(res: BootstrapGrids, model_a: str, model_b: str, layers_a: Sequence[str], layers_b: Sequence[str],
                   *, level: float = 0.95, layer_index_a: Mapping[str, int] | None = None,
                   layer_index_b: Mapping[str, int] | None = None) -> Any:
    """Tidy rows ``model_a, layer_a, index_a, model_b, layer_b, index_b, method, ci_low, ci_high, n_boot``
    for every cell of ``res`` (backward grids as swapped rows, like ``similarity_table``), to merge
    on the key columns with the point-estimate table."""
    import pandas as pd

    idx_a = dict(layer_index_a) if layer_index_a is not None else {k: i for i, k in enumerate(layers_a)}
    idx_b = dict(layer_index_b) if layer_index_b is not None else {k: i for i, k in enumerate(layers_b)}

    def frame(reps: np.ndarray, ma: str, na: Sequence[str], ia: Mapping[str, int], mb: str, nb: Sequence[str],
              ib: Mapping[str, int], method: str) -> pd.DataFrame:
        lo, hi, nv = percentile_interval(reps, level=level)
        ga, gb = np.meshgrid(np.arange(len(na)), np.arange(len(nb)), indexing="ij")
        la = [na[k] for k in ga.ravel()]
        lb = [nb[k] for k in gb.ravel()]
        return pd.DataFrame({
            "model_a": ma, "layer_a": la, "index_a": np.array([ia[x] for x in la], dtype=np.int64),
            "model_b": mb, "layer_b": lb, "index_b": np.array([ib[x] for x in lb], dtype=np.int64),
            "method": method, "ci_low": lo.ravel(), "ci_high": hi.ravel(), "n_boot": nv.ravel().astype(np.int64),
        })

    frames = [frame(r, model_a, layers_a, idx_a, model_b, layers_b, idx_b, m) for m, r in res.replicates.items()]
    frames += [frame(r, model_b, layers_b, idx_b, model_a, layers_a, idx_a, m) for m, r in res.backward.items()]
    return pd.concat(frames, ignore_index=True)


def uncertainty_table(res: BootstrapGrids, model_a: str, model_b: str, layers_a: Sequence[str], layers_b: Sequence[str],
                      *, level: float, larger_is_similar: Mapping[str, bool]) -> Any:
    """:func:`interval_table` plus ``p_column, p_row`` (:func:`~repmatch.uncertainty.significance.counterpart_pvalues`)
    for every cell.

    Rows follow ``similarity_table``'s orientations (backward grids of asymmetric measures as
    swapped rows, whose p-values are computed on the backward replicates), so the result merges
    one-to-one on the key columns and ``method``.
    """
    table = interval_table(res, model_a, model_b, layers_a, layers_b, level=level)
    cols, rows = [], []
    for grids, na, nb in ((res.replicates, layers_a, layers_b), (res.backward, layers_b, layers_a)):
        for m, reps in grids.items():
            pc, pr = counterpart_pvalues(reps, na, nb, larger_is_similar=larger_is_similar[m])
            cols.append(pc.ravel())
            rows.append(pr.ravel())
    table["p_column"] = np.concatenate(cols) if cols else np.zeros(0)
    table["p_row"] = np.concatenate(rows) if rows else np.zeros(0)
    return table
