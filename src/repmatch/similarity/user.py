"""Similarity measures from the user's code, registered beside the built-in ones, and the
property checks that every measure must pass (:func:`check_measure`).

A user measure is a plain function ``f(x, y) -> float`` of two (rows x features) float64 numpy
arrays (the layers after the conv handling, ``similarity.conv_mode``; uncentred, except in the
``paper`` mode where every measure sees centred unit-norm matrices). The config names it and
declares its properties as the built-in registry does::

    similarity:
      measures: [linear_cka, my_cka]
      user_measures:
        - {name: my_cka, function: "mypkg.measures:cka",
           properties: {symmetric: true, larger_is_similar: true, identity_value: 1.0,
                        invariances: [orthogonal, isotropic_scaling, translation]}}

Why declare properties: the sanity tables need ``larger_is_similar``, the engine computes both
orientations of an asymmetric measure, and :func:`check_measure` verifies every claim (the same
checks the built-in measures pass in tests/test_similarity_measures.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..user_code import import_object
from .errors import SimilarityInputError
from .registry import INVARIANCES, MEASURES, Measure, get_measure

PairFn = Callable[[np.ndarray, np.ndarray], float]
PROPERTY_KEYS = ("symmetric", "larger_is_similar", "identity_value", "invariances")


class MeasurePropertyError(AssertionError):
    """A measure does not have a property it declares (the message lists every failed check)."""


@dataclass(frozen=True)
class UserMeasure(Measure):
    """A registered measure whose grid is built from a pair function ``f(x, y) -> float``."""

    function: Callable[..., Any] | None = field(default=None, compare=False, repr=False)

    @property
    def grid(self) -> Callable[[Any, Any, Any], np.ndarray]:
        fn = self.function if self.function is not None else import_object(self.grid_ref, f"similarity measure {self.name!r}")
        return _pair_grid(self.name, fn)


def _matrix(stats: Any) -> np.ndarray:
    """The view's (rows x features) matrix of a :class:`~repmatch.similarity.stats.LayerStats`, float64."""
    x = stats.xc if stats.normalised else stats.xc + stats.mean
    return x.detach().to("cpu").double().numpy()


def _pair_grid(name: str, fn: Any) -> Callable[[Any, Any, Any], np.ndarray]:
    def grid(la: list[Any], lb: list[Any], ctx: Any) -> np.ndarray:
        out = np.full((len(la), len(lb)), np.nan)
        mats_b = [_matrix(b) for b in lb]
        for i, a in enumerate(la):
            xa = _matrix(a)
            for j, b in enumerate(lb):
                value = float(fn(xa, mats_b[j]))
                if np.isfinite(value):
                    out[i, j] = value
                else:
                    ctx.degenerate(f"user measure {name!r} gave {value} for layers {a.name!r} and {b.name!r}")
        return out

    return grid


def make_user_measure(name: str, function: str | PairFn, properties: Mapping[str, Any], key: str = "similarity.user_measures",
                      description: str = "", load: bool = True) -> UserMeasure:  # fmt: skip
    """A :class:`UserMeasure` from a function (or its ``"package.module:function"`` name) and its declared properties.

    ``properties``: ``symmetric``, ``larger_is_similar``, ``identity_value`` and ``invariances``
    (a subset of :data:`~repmatch.similarity.registry.INVARIANCES`); errors name ``key``.
    ``load=False`` leaves a named function unimported until the grid is computed: the light
    table and figure jobs need the declared properties only, not the user's code (nor torch).
    """
    if isinstance(function, str):
        fn = import_object(function, f"{key}.function") if load else None
    else:
        fn = function
    if fn is not None and not callable(fn):
        raise SimilarityInputError(f"{key}.function: {function!r} is not callable")
    missing = [k for k in PROPERTY_KEYS if k not in properties]
    if missing:
        raise SimilarityInputError(f"{key}.properties: measure {name!r} must declare {missing}")
    unknown = sorted(set(properties["invariances"]) - set(INVARIANCES))
    if unknown:
        raise SimilarityInputError(f"{key}.properties.invariances: unknown invariances {unknown}; known: {list(INVARIANCES)}")
    ref = function if isinstance(function, str) else f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', '?')}"
    return UserMeasure(
        name, ref, description or f"user measure {ref}", symmetric=bool(properties["symmetric"]),
        larger_is_similar=bool(properties["larger_is_similar"]), identity_value=float(properties["identity_value"]),
        invariances=frozenset(properties["invariances"]), function=fn,
    )  # fmt: skip


def register_user_measure(measure: UserMeasure) -> UserMeasure:
    """Register (or re-register: the config is read in every job) a user measure; a built-in name is refused."""
    current = MEASURES.get(measure.name)
    if current is not None and not isinstance(current, UserMeasure):
        raise SimilarityInputError(f"user measure {measure.name!r} has the name of a built-in measure; choose another name")
    MEASURES[measure.name] = measure
    return measure


def register_user_measures(specs: Iterable[Mapping[str, Any]], load: bool = True) -> list[UserMeasure]:
    """Register every ``similarity.user_measures`` entry (``name``, ``function``, ``properties``); ``load``:
    import the functions now (the parse-time check) or when first computed (:func:`make_user_measure`)."""
    out, seen = [], set()
    for k, spec in enumerate(specs):
        key = f"similarity.user_measures[{k}]"
        if spec["name"] in seen:
            raise SimilarityInputError(f"{key}.name: {spec['name']!r} is declared twice")
        seen.add(spec["name"])
        out.append(register_user_measure(make_user_measure(spec["name"], spec["function"], spec["properties"], key, load=load)))
    return out


# --- property checks ------------------------------------------------------------------------------


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
