"""Which sensitivity jobs exist (torch-free: read while Snakemake parses the workflow).

One job per network (the low-rank probes and the rank-r vs full indices) and one per network pair
for the similarity side (the rank-r front of A stitched into, and compared with, B's full layer),
none unless ``sensitivity.enabled``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ..naming import model_id, pair_id, unordered_pairs
from ..settings import SensitivitySettings, Settings, UncertaintySettings


def sensitivity_models(models: Sequence[str], sensitivity: SensitivitySettings) -> list[str]:
    """The networks that get a sensitivity job (all of them, or none when disabled)."""
    return list(models) if sensitivity.enabled else []


def sensitivity_pairs(models: Sequence[str], sensitivity: SensitivitySettings) -> list[str]:
    """The ordered pairs (A, B) whose rank-r fronts of A go into B (none when disabled).

    ``pairs.within``: ``all`` | ``first`` | ``none`` (A -> A); ``pairs.cross``: ``all`` (every
    ordered pair of different networks), ``upper`` (each unordered pair once, the earlier seed as
    A: enough for the specificity test at half the cost), ``first`` (models[0] -> models[1]) or
    ``none``.
    """
    if not sensitivity.enabled:
        return []
    models = list(models)
    out = [pair_id(m, m) for m in {"all": models, "first": models[:1], "none": []}[sensitivity.pairs.within]]
    cross = sensitivity.pairs.cross
    if cross == "all":
        out += [pair_id(a, b) for a in models for b in models if a != b]
    elif cross == "upper":
        out += [pair_id(a, b) for i, a in enumerate(models) for b in models[i + 1 :]]
    elif cross == "first" and len(models) > 1:
        out.append(pair_id(models[0], models[1]))
    return out


def specificity_seeds(settings: Settings) -> list[int]:
    """The seeds whose networks the specificity test compares (none when the test is disabled).

    The experiment's seeds, then, while fewer than ``sensitivity.specificity_seeds``, the next
    integers after the largest: a rank correlation over the seed pairs of one layer needs enough
    pairs to be defined (5 seeds give 10 pairs), and these extra networks are cheap where the
    specificity test needs them (training, activations, similarity pairs) and enter no other stage.
    Networks from ``model.checkpoints`` cannot be trained: then the given ones only (a layer with
    too few pairs is reported NaN with its reason).
    """
    s = settings.sensitivity
    seeds = list(settings.seeds)
    if not s.enabled:
        return []
    if s.specificity_seeds is None or settings.model.external:  # networks from model.checkpoints cannot be trained
        return seeds
    n_extra = max(s.specificity_seeds - len(seeds), 0)
    return seeds + [max(seeds) + 1 + k for k in range(n_extra)]


def specificity_models(settings: Settings) -> list[str]:
    """The networks of the specificity test (the experiment's first, then the extra ones)."""
    return [model_id(settings.model.prefix, seed) for seed in specificity_seeds(settings)]


def specificity_extra_models(settings: Settings) -> list[str]:
    """The networks trained for the specificity test only (no stitching, subspace or sanity jobs)."""
    experiment = {model_id(settings.model.prefix, seed) for seed in settings.seeds}
    return [m for m in specificity_models(settings) if m not in experiment]


def specificity_similarity_pairs(settings: Settings) -> list[str]:
    """The similarity pair jobs whose corresponding-layer rows give the indices' cross-seed
    dissimilarities: every pair of different specificity networks (some are experiment pairs too)."""
    return [pair_id(a, b) for a, b in unordered_pairs(specificity_models(settings)) if a != b]


def specificity_dm_pairs(settings: Settings) -> list[str]:
    """DM-only, full-rank-only pair jobs for the specificity test: every unordered pair of
    specificity networks that no sensitivity pair job covers (in either direction), when DM is a
    stitch method. DM's cross-seed distance then has as many pairs per layer as the indices'; TLM
    (trained, ~60 s per pair) stays on the experiment's pairs."""
    if not settings.sensitivity.enabled or "dm" not in settings.sensitivity.stitch_methods:
        return []
    experiment = [model_id(settings.model.prefix, seed) for seed in settings.seeds]
    covered = {frozenset(p.split("__")) for p in sensitivity_pairs(experiment, settings.sensitivity)}
    return [pair_id(a, b) for a, b in unordered_pairs(specificity_models(settings)) if a != b and frozenset((a, b)) not in covered]


def network_job_settings(settings: Settings, model: str) -> SensitivitySettings:
    """The sensitivity settings of one network job: a network trained for the specificity test only
    needs its full-rank scores (probe and network accuracy), so its job computes no rank."""
    if model in specificity_extra_models(settings):
        return dataclasses.replace(settings.sensitivity, ranks=())
    return settings.sensitivity


def pair_job_settings(settings: Settings, pair: str) -> SensitivitySettings:
    """The sensitivity settings of one pair job: a pair planned for the specificity test only
    (:func:`specificity_dm_pairs`) runs DM at full rank and nothing else."""
    if pair in specificity_dm_pairs(settings):
        return dataclasses.replace(settings.sensitivity, ranks=(), stitch_methods=("dm",), measures=())
    return settings.sensitivity


def similarity_job_uncertainty(settings: Settings, model_a: str, model_b: str) -> UncertaintySettings:
    """The uncertainty settings of one similarity pair job: a pair with a network trained for the
    specificity test only needs the point values (its corresponding-layer rows), not intervals."""
    if {model_a, model_b} & set(specificity_extra_models(settings)):
        return dataclasses.replace(settings.uncertainty, bootstrap=0)
    return settings.uncertainty


def sensitivity_layers(settings: Settings) -> list[str]:
    """The tested layers: ``sensitivity.layers`` (null: ``model.layers``), thinned to ``sensitivity.n_layers``
    evenly spaced ones (first and last kept) when that is set."""
    s, model = settings.sensitivity, settings.model
    layers = model.resolve(model.layers if s.layers is None else s.layers)
    return evenly_spaced(layers, s.n_layers)


def evenly_spaced(items: Sequence[str], n: int | None) -> list[str]:
    """``n`` of ``items`` at evenly spaced positions from the first to the last (all when ``n`` is None or too large)."""
    if n is None or n >= len(items):
        return list(items)
    if n == 1:
        return [items[-1]]
    return [items[round(k * (len(items) - 1) / (n - 1))] for k in range(n)]