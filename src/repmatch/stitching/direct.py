"""Direct matching (DM): the stitch that best reproduces B's real layer-j activations, in closed form.

DM solves ``min_{W,b} sum_rows ||W x + b - y||^2 (+ ridge)`` where rows are (sample, position)
pairs: x is A's layer-i channel vector (resized to B's grid), y is B's layer-j channel vector at
the same position (the paper's per-pixel fit on (N*H*W, C) matrices with a bias column).

Why normal equations in float64, accumulated in batches: the training split's activations do not
fit in memory for real networks (ResNet-20 stem on CIFAR-10: 50k x 1024 positions x 16 channels),
but the sufficient statistics do (C_in x C_in and C_in x C_out). They are summed in float64
around a pilot shift (the first batch's mean), because the centred covariance is a difference of
large sums and float32 loses most of its digits there. The solve uses an eigendecomposition of
the covariance, which gives the minimum-norm least-squares solution when A has channels that
never fire (dead ReLUs make the covariance exactly singular) instead of failing or inventing
weights; the eigenvalue cut-off is the usual pseudo-inverse one (d * eps * largest), not a clamp.

Also here: the paper's small-K variant (Moore-Penrose pseudo-inverse on K samples).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence

import torch

from .layer import (
    Shape,
    as_map,
    is_tokens,
    position_key,
    resize_matrix,
    spatial,
    stitch_inputs,
    target_rows,
    to_rows,
)

F64 = torch.float64


def regularised_eig(cov: torch.Tensor, ridge: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenpairs of ``cov + lam I`` (float64) restricted to the directions the data explores.

    ``lam = ridge * mean variance`` so one ridge value means the same for every layer pair.
    Eigenvalues of ``cov`` below ``d * eps * max`` are round-off (dead channels, collinear
    inputs); they are dropped -- the pseudo-inverse rule -- rather than divided by.
    Returns (values (k,), vectors (d, k)); k = 0 when ``cov`` is zero.
    """
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    cov = cov.to(F64)
    d = cov.shape[0]
    evals, evecs = torch.linalg.eigh(0.5 * (cov + cov.T))
    top = float(evals.max()) if d else 0.0
    if top > 0:
        keep = evals > top * d * torch.finfo(F64).eps
    else:
        keep = torch.zeros_like(evals, dtype=torch.bool)
    lam = ridge * float(torch.trace(cov)) / d if d else 0.0
    return evals[keep] + lam, evecs[:, keep]


def solve_psd(cov: torch.Tensor, rhs: torch.Tensor, ridge: float = 0.0) -> torch.Tensor:
    """``(cov + lam I)^+ rhs`` for a symmetric PSD ``cov`` (see :func:`regularised_eig`), float64.

    With no explored direction (constant inputs) the result is 0: W = 0 and the bias takes the mean.
    """
    evals, v = regularised_eig(cov, ridge)
    return v @ ((v.T @ rhs.to(F64)) / evals[:, None])


class NormalEquations:
    """Float64 sufficient statistics for affine least squares of several targets on one input.

    ``update(x, {key: y})`` adds rows (x: (n, d_in), y: (n, d_key)); every target shares the
    input Gram matrix, so the targets of a whole row of the grid cost one ``x^T x``.
    """

    def __init__(self) -> None:
        self.n = 0
        self.shift_x: torch.Tensor | None = None
        self.sx: torch.Tensor | None = None
        self.sxx: torch.Tensor | None = None
        self.shift_y: dict[Hashable, torch.Tensor] = {}
        self.sy: dict[Hashable, torch.Tensor] = {}
        self.sxy: dict[Hashable, torch.Tensor] = {}

    def update(self, x: torch.Tensor, ys: Mapping[Hashable, torch.Tensor]) -> None:
        if x.dim() != 2:
            raise ValueError(f"DM input rows must be a matrix (rows, channels), got shape {tuple(x.shape)}")
        x = x.to(F64)
        if self.shift_x is None:
            self.shift_x = x.mean(0)
            self.sx = torch.zeros_like(self.shift_x)
            self.sxx = torch.zeros(x.shape[1], x.shape[1], dtype=F64, device=x.device)
        elif x.shape[1] != self.shift_x.shape[0]:
            raise ValueError(f"DM input has {x.shape[1]} channels, earlier batches had {self.shift_x.shape[0]}")
        xc = x - self.shift_x  # a fresh float64 copy either way (x.to(F64) may alias the caller's tensor)
        self.sx += xc.sum(0)
        self.sxx += xc.T @ xc
        for key, y in ys.items():
            if y.dim() != 2 or y.shape[0] != x.shape[0]:
                raise ValueError(
                    f"DM target {key!r} has shape {tuple(y.shape)}; it needs {x.shape[0]} rows, one per input row"
                )
            y = y.to(F64)
            if key not in self.shift_y:
                if self.n:
                    raise ValueError(f"DM target {key!r} appeared after the first batch; every batch must hold all targets")
                self.shift_y[key] = y.mean(0)
                self.sy[key] = torch.zeros_like(self.shift_y[key])
                self.sxy[key] = torch.zeros(x.shape[1], y.shape[1], dtype=F64, device=x.device)
            yc = y - self.shift_y[key]
            self.sy[key] += yc.sum(0)
            self.sxy[key] += xc.T @ yc
        self.n += x.shape[0]

    def add_products(
        self,
        n: int,
        sx: torch.Tensor,
        sxx: torch.Tensor,
        sy: Mapping[Hashable, torch.Tensor],
        sxy: Mapping[Hashable, torch.Tensor],
    ) -> None:
        """Add sums computed by the caller around this object's shifts (``set_shifts`` first).

        For inputs that are a known linear image of smaller data (upsampled maps), the caller
        can form ``sum x``, ``x^T x`` and ``x^T y`` far cheaper than from the rows themselves.
        """
        if self.shift_x is None or any(k not in self.shift_y for k in sy):
            raise ValueError("set_shifts() must be called before add_products()")
        self.sx += sx.to(F64)
        self.sxx += sxx.to(F64)
        for key in sy:
            self.sy[key] += sy[key].to(F64)
            self.sxy[key] += sxy[key].to(F64)
        self.n += int(n)

    def set_shifts(self, shift_x: torch.Tensor, shift_y: Mapping[Hashable, torch.Tensor]) -> None:
        """Fix the pilot shifts (any values work; near the means keeps the sums well conditioned)."""
        if self.shift_x is not None:
            raise ValueError("shifts are already set")
        self.shift_x = shift_x.to(F64)
        self.sx = torch.zeros_like(self.shift_x)
        self.sxx = torch.zeros(len(self.shift_x), len(self.shift_x), dtype=F64, device=self.shift_x.device)
        for key, t in shift_y.items():
            self.shift_y[key] = t.to(F64)
            self.sy[key] = torch.zeros_like(self.shift_y[key])
            self.sxy[key] = torch.zeros(len(self.shift_x), len(t), dtype=F64, device=self.shift_x.device)

    @property
    def keys(self) -> list[Hashable]:
        return list(self.shift_y)

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (d,) and covariance (d, d) of the input rows seen so far (float64)."""
        if self.n == 0 or self.shift_x is None:
            raise ValueError("no data accumulated: need at least one batch of activations")
        mx = self.sx / self.n
        cov = self.sxx / self.n - torch.outer(mx, mx)
        return mx + self.shift_x, 0.5 * (cov + cov.T)

    def solve(self, key: Hashable, ridge: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """The DM affine map for target ``key``: ``W`` (d_out, d_in) and ``b`` (d_out,), float64."""
        if self.n == 0 or self.shift_x is None:
            raise ValueError("no data accumulated: DM needs at least one batch of activations")
        if key not in self.sxy:
            raise KeyError(f"no DM target {key!r}; accumulated targets are {self.keys}")
        mx = self.sx / self.n
        my = self.sy[key] / self.n
        cov = self.sxx / self.n - torch.outer(mx, mx)
        cov = 0.5 * (cov + cov.T)
        cross = self.sxy[key] / self.n - torch.outer(mx, my)
        w_t = solve_psd(cov, cross, ridge)
        weight = w_t.T.contiguous()
        bias = (my + self.shift_y[key]) - weight @ (mx + self.shift_x)
        return weight, bias


def fit_affine(x: torch.Tensor, y: torch.Tensor, ridge: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares affine map from rows ``x`` (n, d_in) to rows ``y`` (n, d_out), float64."""
    ne = NormalEquations()
    ne.update(x, {"y": y})
    return ne.solve("y", ridge)


def fit_affine_pinv(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's small-K DM: ``[W b] = pinv([x 1]) y`` on few rows, in float64."""
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"pinv DM needs matching row counts, got x {tuple(x.shape)} and y {tuple(y.shape)}")
    xa = torch.cat([x.to(F64), torch.ones(x.shape[0], 1, dtype=F64, device=x.device)], dim=1)
    coef = torch.linalg.pinv(xa) @ y.to(F64)  # (d_in + 1, d_out)
    return coef[:-1].T.contiguous(), coef[-1].contiguous()


class GridNormalEquations:
    """DM statistics for a whole grid of (A layer, B layer) stitches from one pass over the data.

    Stitches from the same A layer into B layers of the same spatial size share their input
    rows, so there is one :class:`NormalEquations` per (A layer, B grid size) holding every
    B layer of that size as a target.
    """

    def __init__(self, pairs: Iterable[tuple[str, str]], shapes_a: Mapping[str, Shape], shapes_b: Mapping[str, Shape]) -> None:
        self.pairs = list(pairs)
        self.shapes_a, self.shapes_b = dict(shapes_a), dict(shapes_b)
        self.groups: dict[tuple[str, tuple[int, int]], list[str]] = {}
        for la, lb in self.pairs:
            self.groups.setdefault((la, position_key(self.shapes_b[lb])), []).append(lb)
        self.stats = {g: NormalEquations() for g in self.groups}
        self._operators: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def update(self, feats_a: Mapping[str, torch.Tensor], feats_b: Mapping[str, torch.Tensor]) -> None:
        """Add one batch: A's and B's layer outputs on the *same* inputs in the same order."""
        rows_b = {lb: target_rows(feats_b[lb]).to(F64) for lb in self.layers_b}  # once per batch, not per group
        for (la, key), targets in self.groups.items():
            ne = self.stats[(la, key)]
            src, size = spatial(self.shapes_a[la]), spatial(self.shapes_b[targets[0]])
            tokens = is_tokens(self.shapes_a[la]) or is_tokens(self.shapes_b[targets[0]])  # rows formed directly
            if not tokens and src[0] * src[1] < size[0] * size[1]:
                self._update_upsampled(ne, feats_a[la], {lb: feats_b[lb] for lb in targets}, size)
            else:
                x = stitch_inputs(feats_a[la], self.shapes_b[targets[0]])
                ne.update(x, {lb: rows_b[lb] for lb in targets})

    def _update_upsampled(self, ne: NormalEquations, a: torch.Tensor, ys: Mapping[str, torch.Tensor], size: tuple[int, int]) -> None:
        """Normal equations of upsampled inputs x = U a, formed at A's (smaller) resolution.

        With U the resize operator (dst positions x src positions, :func:`resize_matrix`):
        x^T x = a^T (U^T U) a and x^T y = a^T (U^T y), so the big products run over A's h*w
        positions instead of B's H*W (16x fewer for 7x7 -> 28x28). U reproduces constants,
        so shifting a by a constant shifts x by the same constant.
        """
        a = as_map(a).to(F64)
        src = (a.shape[-2], a.shape[-1])
        key = (src, tuple(size), str(a.device))
        if key not in self._operators:
            u = resize_matrix(src, tuple(size), F64, a.device)
            self._operators[key] = (u, u.T @ u, u.sum(0))
        u, utu, colsum = self._operators[key]
        if ne.shift_x is None:
            ne.set_shifts(to_rows(a).mean(0), {k: to_rows(y).to(F64).mean(0) for k, y in ys.items()})
        a_c = (a - ne.shift_x[None, :, None, None]).flatten(2)  # (N, C, q)
        sx = (a_c @ colsum).sum(0)
        sxx = torch.einsum("ncq,ndq->cd", a_c, a_c @ utu)
        sy, sxy = {}, {}
        for k, y in ys.items():
            y_c = (as_map(y).to(F64) - ne.shift_y[k][None, :, None, None]).flatten(2)  # (N, C_b, P)
            sy[k] = y_c.sum(dim=(0, 2))
            sxy[k] = torch.einsum("ncq,ndq->cd", a_c, y_c @ u)
        ne.add_products(a.shape[0] * u.shape[0], sx, 0.5 * (sxx + sxx.T), sy, sxy)

    def solve(self, layer_a: str, layer_b: str, ridge: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        return self.stats[(layer_a, position_key(self.shapes_b[layer_b]))].solve(layer_b, ridge)

    @property
    def layers_a(self) -> list[str]:
        return sorted({la for la, _ in self.groups}, key=[la for la, _ in self.pairs].index)

    @property
    def layers_b(self) -> list[str]:
        return sorted({lb for _, lb in self.pairs}, key=[lb for _, lb in self.pairs].index)


def pinv_grid(
    pairs: Sequence[tuple[str, str]],
    feats_a: Mapping[str, torch.Tensor],
    feats_b: Mapping[str, torch.Tensor],
    shapes_b: Mapping[str, Shape],
) -> dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]]:
    """Small-K DM for every pair from the activations of K samples (all positions of each)."""
    return {
        (la, lb): fit_affine_pinv(stitch_inputs(feats_a[la], shapes_b[lb]), target_rows(feats_b[lb])) for la, lb in pairs
    }
