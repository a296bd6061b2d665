"""The layer-grid engine: every measure for every layer pair of two models, per-layer work once.

Flow: each layer pair gets its views from the conv handling (:func:`pair_views`); pairs sharing
views form a group (one group for ``gap``/``flatten``; one per target grid for ``per_position``);
for a group, each layer's :class:`LayerStats` is built once (cached across groups and measures)
and every measure computes its whole sub-grid in a few large matmuls.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..settings import SimilaritySettings, section_settings
from ..tables import BOOTSTRAP_COLUMNS, COLUMNS
from .context import GridContext
from .errors import DegenerateInputError, DegenerateWarning, SimilarityInputError
from .preprocess import CONV_MODES, View, pair_views, to_matrix
from .registry import MEASURES, Measure, check_measures
from .stats import LayerStats

#: The point-estimate columns (the pair stage adds the bootstrap columns, ``repmatch.tables.BOOTSTRAP_COLUMNS``).
TABLE_COLUMNS = [c for c in COLUMNS["similarity"] if c not in BOOTSTRAP_COLUMNS]
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _defaults() -> SimilaritySettings:
    """The ``similarity`` section's defaults (from the schema: arguments left ``None`` take these)."""
    return section_settings("similarity")


def source_eps(arr: Any) -> float:
    """Machine epsilon of the data as stored (float32 activations keep fp32 rounding after conversion)."""
    dt = getattr(arr, "dtype", None)
    if isinstance(dt, torch.dtype):
        return float(torch.finfo(dt).eps)
    return float(np.finfo(np.dtype(dt)).eps) if dt is not None and np.issubdtype(np.dtype(dt), np.floating) else float(np.finfo(np.float64).eps)


def check_inputs(acts_a: Mapping[str, Any], acts_b: Mapping[str, Any], conv_mode: str, on_degenerate: str) -> int:
    """The probe-row count of two models' activations; a clear error for a bad mode or mismatched rows."""
    if conv_mode not in CONV_MODES:
        raise SimilarityInputError(f"unknown conv_mode {conv_mode!r}; choose one of {list(CONV_MODES)}")
    if on_degenerate not in ("nan", "error"):
        raise SimilarityInputError(f"on_degenerate must be 'nan' or 'error', got {on_degenerate!r}")
    if not acts_a or not acts_b:
        raise SimilarityInputError("both models need at least one layer of activations")
    rows = {f"a:{k}": int(np.shape(v)[0]) for k, v in acts_a.items()} | {f"b:{k}": int(np.shape(v)[0]) for k, v in acts_b.items()}
    if len(set(rows.values())) != 1:
        raise SimilarityInputError(f"all layers must hold the same probe samples; sample counts differ: {rows}")
    return next(iter(rows.values()))


def measure_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every measure parameter: ``params`` over the ``similarity`` section's defaults; unknown keys are an error."""
    known = {p for m in MEASURES.values() for p in m.params}
    unknown = sorted(set(params or {}) - known)
    if unknown:
        raise SimilarityInputError(f"unknown measure parameters {unknown}; known: {sorted(known)}")
    return {**_defaults().measure_params, **(params or {})}


class _StatsCache:
    """LayerStats per (side, layer, view): each layer is centred / decomposed once per view."""

    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        self.device, self.dtype = device, dtype
        self._cache: dict[tuple[str, str, View], LayerStats] = {}

    def get(self, side: str, name: str, arr: Any, view: View) -> LayerStats:
        key = (side, name, view)
        if key not in self._cache:
            x = to_matrix(arr, view, self.device, self.dtype)
            self._cache[key] = LayerStats(x, name=name, source_eps=source_eps(arr), normalise=view.normalise)
        return self._cache[key]


def similarity_grids(
    acts_a: Mapping[str, Any],
    acts_b: Mapping[str, Any],
    measures: Sequence[str],
    conv_mode: str | None = None,
    device: torch.device | str | None = None,
    params: Mapping[str, Any] | None = None,
    on_degenerate: str | None = None,
    dtype: str | None = None,
    same_model: bool | None = None,
    reverse: bool = False,
    token_mode: str | None = None,
    sample_ids: Any = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """All layer grids of two models.

    Returns ``(forward, backward)``: ``forward[m]`` is the (L_a x L_b) grid of measure ``m`` with
    value(a_i, b_j); when ``reverse`` is true, ``backward[m]`` is the (L_b x L_a) grid of
    value(b_j, a_i) for each *asymmetric* measure (symmetric ones need no second orientation).
    ``same_model`` (default: ``acts_a is acts_b``) shares per-layer work between the two sides.
    Degenerate cells are NaN with a :class:`DegenerateWarning`, or raise
    :class:`DegenerateInputError` when ``on_degenerate="error"``. Arguments left ``None``
    (and measure parameters not in ``params``) take the ``similarity`` section's defaults.
    ``sample_ids`` (the bootstrap's resampled row indices): rows with equal ids are copies of one
    probe sample (:attr:`GridContext.sample_ids`).
    ``token_mode`` is how token layers (n, T, D) are handled (:mod:`.preprocess`).
    """
    defaults = _defaults()
    conv_mode = defaults.conv_mode if conv_mode is None else conv_mode
    token_mode = defaults.token_mode if token_mode is None else token_mode
    on_degenerate = defaults.on_degenerate if on_degenerate is None else on_degenerate
    dtype = defaults.precision if dtype is None else dtype
    check_inputs(acts_a, acts_b, conv_mode, on_degenerate)
    resolved = check_measures(measures)
    params = measure_params(params)
    if dtype not in DTYPES:
        raise SimilarityInputError(f"precision must be one of {sorted(DTYPES)}, got {dtype!r}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    same = (acts_a is acts_b) if same_model is None else same_model
    names_a, names_b = list(acts_a), list(acts_b)
    shapes_a = [tuple(np.shape(acts_a[k])) for k in names_a]
    shapes_b = [tuple(np.shape(acts_b[k])) for k in names_b]
    side_b = "a" if same else "b"

    groups: dict[tuple[View, View], list[tuple[int, int]]] = {}
    for i, sa in enumerate(shapes_a):
        for j, sb in enumerate(shapes_b):
            groups.setdefault(pair_views(sa, sb, conv_mode, token_mode), []).append((i, j))

    cache = _StatsCache(dev, DTYPES[dtype])
    forward = {m.name: np.full((len(names_a), len(names_b)), np.nan) for m in resolved}
    backward = {m.name: np.full((len(names_b), len(names_a)), np.nan) for m in resolved if reverse and not m.symmetric}
    problems: list[str] = []
    for (view_a, view_b), pairs in groups.items():
        rows = sorted({i for i, _ in pairs})
        cols = sorted({j for _, j in pairs})
        stats_a = {i: cache.get("a", names_a[i], acts_a[names_a[i]], view_a) for i in rows}
        stats_b = {j: cache.get(side_b, names_b[j], acts_b[names_b[j]], view_b) for j in cols}
        for i, s in stats_a.items():
            if s.zero_variance:
                problems.append(f"layer {names_a[i]!r} of model a has zero variance over the probe set: every measure is undefined")
        for j, s in stats_b.items():
            if s.zero_variance and not (same and j in stats_a):
                problems.append(f"layer {names_b[j]!r} of model b has zero variance over the probe set: every measure is undefined")
        ok_rows = [i for i in rows if not stats_a[i].zero_variance]
        ok_cols = [j for j in cols if not stats_b[j].zero_variance]
        if not ok_rows or not ok_cols:
            continue
        la = [stats_a[i] for i in ok_rows]
        lb = la if (same and ok_rows == ok_cols and view_a == view_b) else [stats_b[j] for j in ok_cols]
        mask = np.zeros((len(ok_rows), len(ok_cols)), dtype=bool)
        pos_r, pos_c = {i: k for k, i in enumerate(ok_rows)}, {j: k for k, j in enumerate(ok_cols)}
        for i, j in pairs:
            if i in pos_r and j in pos_c:
                mask[pos_r[i], pos_c[j]] = True
        for m in resolved:
            _run(m, la, lb, params, problems, forward[m.name], ok_rows, ok_cols, mask, sample_ids)
            if m.name in backward:
                _run(m, lb, la, params, problems, backward[m.name], ok_cols, ok_rows, mask.T, sample_ids)
    _report(problems, on_degenerate)
    return forward, backward


def _run(m: Measure, la: list[LayerStats], lb: list[LayerStats], params: Mapping[str, Any], problems: list[str],
         out: np.ndarray, rows: list[int], cols: list[int], mask: np.ndarray, sample_ids: Any = None) -> None:
    ctx = GridContext(params, sample_ids=sample_ids)
    values = np.asarray(m.grid(la, lb, ctx), dtype=np.float64)
    problems.extend(ctx.problems)
    sub = out[np.ix_(rows, cols)]
    sub[mask] = values[mask]
    out[np.ix_(rows, cols)] = sub


def _report(problems: list[str], on_degenerate: str) -> None:
    unique = list(dict.fromkeys(problems))
    if not unique:
        return
    if on_degenerate == "error":
        raise DegenerateInputError("degenerate input: " + "; ".join(unique))
    for p in unique:
        warnings.warn(f"{p} (value set to NaN)", DegenerateWarning, stacklevel=3)


def similarity_table(
    acts_a: Mapping[str, Any],
    acts_b: Mapping[str, Any],
    model_a: str,
    model_b: str,
    measures: Sequence[str],
    conv_mode: str | None = None,
    device: torch.device | str | None = None,
    params: Mapping[str, Any] | None = None,
    on_degenerate: str | None = None,
    dtype: str | None = None,
    layer_index_a: Mapping[str, int] | None = None,
    layer_index_b: Mapping[str, int] | None = None,
    token_mode: str | None = None,
) -> pd.DataFrame:
    """Tidy table of every measure on every layer pair of ``model_a`` x ``model_b``.

    Columns: model_a, layer_a, index_a, model_b, layer_b, index_b, method, value, conv_mode.
    ``index_*`` is the layer's position in the mapping (or in ``layer_index_*``). For asymmetric
    measures between different models both orientations are written (rows with model_a/model_b
    swapped), so every ordered comparison can be read off without recomputing.
    """
    conv_mode = _defaults().conv_mode if conv_mode is None else conv_mode
    same = model_a == model_b
    if same and list(acts_a) != list(acts_b):
        raise SimilarityInputError(f"model {model_a!r} compared with itself but its two layer lists differ")
    forward, backward = similarity_grids(
        acts_a, acts_a if same else acts_b, measures, conv_mode, device, params, on_degenerate, dtype,
        same_model=same, reverse=not same, token_mode=token_mode,
    )
    idx_a = dict(layer_index_a) if layer_index_a is not None else {k: i for i, k in enumerate(acts_a)}
    idx_b = dict(layer_index_b) if layer_index_b is not None else {k: i for i, k in enumerate(acts_b)}
    frames = [_frame(g, model_a, list(acts_a), idx_a, model_b, list(acts_b), idx_b, name, conv_mode) for name, g in forward.items()]
    frames += [_frame(g, model_b, list(acts_b), idx_b, model_a, list(acts_a), idx_a, name, conv_mode) for name, g in backward.items()]
    return pd.concat(frames, ignore_index=True)[TABLE_COLUMNS]


def _frame(grid: np.ndarray, model_a: str, names_a: list[str], idx_a: Mapping[str, int], model_b: str, names_b: list[str],
           idx_b: Mapping[str, int], method: str, conv_mode: str) -> pd.DataFrame:
    ia, ib = np.meshgrid(np.arange(len(names_a)), np.arange(len(names_b)), indexing="ij")
    la, lb = np.asarray(names_a, dtype=object)[ia.ravel()], np.asarray(names_b, dtype=object)[ib.ravel()]
    return pd.DataFrame({
        "model_a": model_a, "layer_a": la, "index_a": np.array([idx_a[x] for x in la], dtype=np.int64),
        "model_b": model_b, "layer_b": lb, "index_b": np.array([idx_b[x] for x in lb], dtype=np.int64),
        "method": method, "value": grid.ravel().astype(np.float64), "conv_mode": conv_mode,
    })


def similarity(x: Any, y: Any, measure: str, device: torch.device | str | None = None, conv_mode: str | None = None,
               token_mode: str | None = None, **params: Any) -> float:
    """One measure on one pair of representations ((n, d), (n, T, D) or (n, C, H, W) arrays or tensors).

    The pure, single-pair entry point; degenerate input raises :class:`DegenerateInputError`.
    Runs through the same engine as the grids, so a grid cell equals the pair value.
    """
    fwd, _ = similarity_grids({"x": x}, {"y": y}, [measure], conv_mode, device, params, on_degenerate="error",
                              token_mode=token_mode)
    return float(fwd[measure][0, 0])
