"""Checks a measure's declared properties (symmetry, direction, identity value, invariances) on
planted inputs: the same claims the built-in registry makes, so a user's measure is held to them too.

Apart from :mod:`repmatch.similarity.user` (registration, which the settings run in every job)
because the checks evaluate measures through the grid engine (torch): the light table/figure jobs
must not need torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .errors import SimilarityInputError
from .registry import MEASURES, Measure, get_measure
from .user import MeasurePropertyError, PairFn, make_user_measure


def _orthogonal(d: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _invertible(d: int, seed: int) -> np.ndarray:
    return _orthogonal(d, seed) @ np.diag(np.random.default_rng(seed).uniform(0.3, 3.0, d)) @ _orthogonal(d, seed + 1)


#: The transformation behind each invariance name (``invertible_linear_a``: the same map, first argument only).
TRANSFORMS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "orthogonal": lambda x, s: x @ _orthogonal(x.shape[1], s),
    "isotropic_scaling": lambda x, s: 3.7 * x,
    "translation": lambda x, s: x + 5 * np.random.default_rng(s).standard_normal(x.shape[1]),
    "invertible_linear": lambda x, s: x @ _invertible(x.shape[1], s),
}


def property_inputs(n: int = 120, d: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y, z)``: y is a noisy nonlinear function of x, z is unrelated noise (all (n, d), offset, anisotropic)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) + rng.standard_normal(d)
    y = np.tanh(x @ rng.standard_normal((d, d)) / 3) + 0.3 * rng.standard_normal((n, d))
    z = rng.standard_normal((n, d)) + rng.standard_normal(d)
    return x, y, z


def _close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def check_measure(measure: str | PairFn | Measure, properties: Mapping[str, Any] | None = None, *, strict: bool = False,
                  tol: float = 1e-7, seed: int = 0) -> None:  # fmt: skip
    """Check that a measure has every property it declares; raise :class:`MeasurePropertyError` listing what failed.

    ``measure``: a registered name (built-in or user; evaluated through the grid engine, as in a
    run), a :class:`Measure`, or a pair function ``f(x, y) -> float`` with ``properties`` (the
    ``similarity.user_measures`` keys). Checks, on seeded test data (:func:`property_inputs`):
    the value on identical input is ``identity_value``; ``symmetric`` measures give f(x, y) = f(y, x);
    each declared invariance holds on either argument (``invertible_linear_a``: the first);
    ``larger_is_similar`` orders f(x, x) against f(x, unrelated); values are finite.
    ``strict`` also fails properties that hold but are not declared (asymmetry, invariances), as the
    built-in measures' tests do. ``tol``: relative tolerance of the equalities.
    """
    if isinstance(measure, str):
        m = get_measure(measure)
        value = _engine_value(m.name)
    elif isinstance(measure, Measure):
        m, value = measure, _engine_value(measure.name) if measure.name in MEASURES else _direct(measure)
    else:
        if properties is None:
            raise SimilarityInputError("check_measure: a function needs its declared properties")
        m = make_user_measure(getattr(measure, "__name__", "measure"), measure, properties, key="check_measure")
        value = _direct(m)
    x, y, z = property_inputs(seed=seed)
    failures: list[str] = []
    base = value(x, y)
    if not np.isfinite(base):
        raise MeasurePropertyError(f"measure {m.name!r}: value {base} on ordinary test data is not finite")
    same = value(x, x)
    if not _close(same, m.identity_value, tol):
        failures.append(f"identity_value: f(x, x) = {same:.10g}, declared {m.identity_value!r}")
    swapped = value(y, x)
    if m.symmetric and not _close(base, swapped, tol):
        failures.append(f"symmetric: f(x, y) = {base:.10g} but f(y, x) = {swapped:.10g}")
    if strict and not m.symmetric and _close(base, swapped, 1e-6):
        failures.append(f"declared asymmetric, but f(x, y) = f(y, x) = {base:.10g}")
    unrelated = value(x, z)
    if m.larger_is_similar and not same > unrelated:
        failures.append(f"larger_is_similar: f(x, x) = {same:.10g} is not larger than f(x, unrelated) = {unrelated:.10g}")
    if not m.larger_is_similar and not same < unrelated:
        failures.append(f"larger_is_similar false: f(x, x) = {same:.10g} is not smaller than f(x, unrelated) = {unrelated:.10g}")
    for k, (name, t) in enumerate(TRANSFORMS.items()):
        changed_a, changed_b = value(t(x, 10 + k), y), value(x, t(y, 20 + k))
        holds_a, holds_b = _close(changed_a, base, tol), _close(changed_b, base, tol)
        if name in m.invariances:
            if not (holds_a and holds_b):
                failures.append(f"invariance {name}: f(x, y) = {base:.10g} changed to {changed_a:.10g} (x transformed) / "
                                f"{changed_b:.10g} (y transformed)")
        elif name == "invertible_linear" and "invertible_linear_a" in m.invariances:
            if not holds_a:
                failures.append(f"invariance invertible_linear_a: f(x, y) = {base:.10g} changed to {changed_a:.10g} (x transformed)")
        elif strict and _close(changed_a, base, 1e-6) and _close(changed_b, base, 1e-6):
            failures.append(f"invariant to {name} but does not declare it")
    if failures:
        raise MeasurePropertyError(f"measure {m.name!r} does not have the properties it declares:\n  " + "\n  ".join(failures))


def _engine_value(name: str) -> Callable[[np.ndarray, np.ndarray], float]:
    from .grid import similarity

    def value(x: np.ndarray, y: np.ndarray) -> float:
        return similarity(x, y, name)

    return value


def _direct(m: Measure) -> Callable[[np.ndarray, np.ndarray], float]:
    fn = getattr(m, "function", None)
    if fn is None:
        raise SimilarityInputError(f"measure {m.name!r} is not registered and has no pair function to check")

    def value(x: np.ndarray, y: np.ndarray) -> float:
        return float(fn(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)))

    return value
