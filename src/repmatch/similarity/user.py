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
checks the built-in measures pass in tests/similarity/test_similarity_measures.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..user_code import import_object
from .errors import SimilarityInputError
from .registry import INVARIANCES, MEASURES, Measure

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


def _refuse_built_in_name(name: str) -> None:
    current = MEASURES.get(name)
    if current is not None and not isinstance(current, UserMeasure):
        raise SimilarityInputError(f"user measure {name!r} has the name of a built-in measure; choose another name")


def register_user_measure(measure: UserMeasure) -> UserMeasure:
    """Register (or re-register: the config is read in every job) a user measure; a built-in name is refused."""
    _refuse_built_in_name(measure.name)
    MEASURES[measure.name] = measure
    return measure


def make_user_measures(specs: Iterable[Mapping[str, Any]], load: bool = True) -> list[UserMeasure]:
    """Every ``similarity.user_measures`` entry (``name``, ``function``, ``properties``) as a
    :class:`UserMeasure`, checked as registering it would (a name declared twice or a built-in name
    is refused) but not registered: the parse-time check reads them without touching the registry.
    ``load``: import the functions now or when first computed (:func:`make_user_measure`)."""
    out, seen = [], set()
    for k, spec in enumerate(specs):
        key = f"similarity.user_measures[{k}]"
        if spec["name"] in seen:
            raise SimilarityInputError(f"{key}.name: {spec['name']!r} is declared twice")
        seen.add(spec["name"])
        measure = make_user_measure(spec["name"], spec["function"], spec["properties"], key, load=load)
        _refuse_built_in_name(measure.name)
        out.append(measure)
    return out


def register_user_measures(specs: Iterable[Mapping[str, Any]], load: bool = True) -> list[UserMeasure]:
    """Register every ``similarity.user_measures`` entry (:func:`make_user_measures`). Called explicitly
    by whoever needs them (every job, :func:`repmatch.jobs.snakemake_job`), never by loading settings."""
    return [register_user_measure(m) for m in make_user_measures(specs, load=load)]


# --- property checks ------------------------------------------------------------------------------
