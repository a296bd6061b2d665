"""The configuration checks a schema cannot express, run while Snakemake parses the workflow.

Layer names exist in the architecture, ``data_root`` exists, the probe sets fit the test set,
the measure names are known (built-in or declared in ``similarity.user_measures``, whose code is
imported and whose declared properties are checked), the pair selection is possible, external
activation folders are readable. Each error names the key, so a bad config fails
``snakemake -n`` before any job (``rules/common.smk`` calls :func:`check_semantics` right after
:func:`repmatch.settings.load_settings`).

Why apart from :mod:`repmatch.settings`: these checks ask the packages above the settings (the
measure registry, the external activation folders, the backbone's model ids), and the settings
are imported by every package. This module sits above those packages and below the rules; the
settings never import it. It reads the measure registry but never changes it: user measures are
registered by whoever computes with them (:func:`repmatch.jobs.snakemake_job`).

Torch-free: the factory network's own check needs torch and lives in ``repmatch.networks``.
"""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .architectures import TOKEN_ARCHITECTURES, resolve_layers
from .backbone.external import ExternalActivationError, check_networks
from .backbone.pairs import models
from .datasets import USER_DATASETS, dataset_sizes, list_imagefolder
from .schema import ConfigError
from .settings import DataSettings, Settings, load_settings
from .similarity.registry import MEASURES
from .similarity.user import make_user_measures
from .user_code import import_object


def checked_settings(source: str | os.PathLike[str] | Mapping[str, Any]) -> Settings:
    """:func:`~repmatch.settings.load_settings` followed by :func:`check_semantics`: what
    ``rules/common.smk`` does with Snakemake's config, for tests, notebooks and benchmarks."""
    settings = load_settings(source)
    check_semantics(settings)
    return settings


def _known_measures(s: Settings) -> set[str]:
    """The registered measures and the config's own (imported and checked here, not registered)."""
    try:
        user = make_user_measures(s.similarity.user_measures, load=True)
    except ValueError as err:
        raise ConfigError(f"invalid configuration:\n  at {err}") from err
    return set(MEASURES) | {m.name for m in user}


def check_semantics(s: Settings) -> None:
    """Every check that needs more than the schema; each error names the key and what is allowed.

    A broken ``similarity.user_measures`` entry is reported alone, first (the measure names are
    checked against it); every other error is collected and reported at once."""
    known = _known_measures(s)
    errors: list[str] = []

    def attempt(key: str, fn: typing.Callable[[], Any]) -> None:
        try:
            fn()
        except (KeyError, ValueError) as err:
            errors.append(f"  at {key}: {err.args[0] if err.args else err}")

    m = s.model
    if (m.arch is None) == (m.factory is None):
        errors.append("  at model: give exactly one of model.arch (a built-in architecture, trained here) and model.factory "
                      "(your network, with model.checkpoints); beside a factory set arch: null (config.yaml sets arch, "
                      "and --configfile merges into it)")
    elif m.arch is not None:
        for key in ("checkpoints", "input_channels"):
            if getattr(m, key) is not None:
                errors.append(f"  at model.{key}: only for a factory network; model.arch networks are built and trained here")
        if m.kwargs:
            errors.append("  at model.kwargs: only for a factory network (model.arch builds the architecture for the data)")
        attempt("model.layers", lambda: resolve_layers(m.arch, m.layers))
        if s.stitching.layers is not None:
            attempt("stitching.layers", lambda: resolve_layers(m.arch, s.stitching.layers))
        if s.stitching.detector.enabled and m.arch in TOKEN_ARCHITECTURES:
            errors.append(f"  at stitching.detector.enabled: the learned OOD detectors classify conv maps and vectors, and "
                          f"{m.arch}'s layers are token sequences; set it to false")
    elif m.checkpoints is None:
        errors.append("  at model.checkpoints: a factory network is not trained by the pipeline; list its weights files, "
                      "one per seed (or use model.arch for a built-in architecture)")
    elif len(m.checkpoints) != len(s.seeds):
        errors.append(f"  at model.checkpoints: {len(m.checkpoints)} files for {len(s.seeds)} seeds {list(s.seeds)}; "
                      "checkpoints[k] is the network of seeds[k]")
    # else: the network itself (factory, checkpoints, module names) is checked by
    # repmatch.networks.check_factory_networks while Snakemake parses: it needs torch, which this
    # module never imports (a config is checked without it).

    if s.data.factory is not None and s.data.name != "factory":
        errors.append(f"  at data.factory: set, but data.name is {s.data.name!r}; the factory is read only with "
                      "data.name: factory")
    sizes = _user_data_sizes(s.data, errors) if s.data.name in USER_DATASETS else dataset_sizes(s.data.name, s.data.n_test)
    n_train_total, n_test_total = sizes if sizes is not None else (None, None)
    train_source = None  # what the training images are, for the one n_train check below
    if sizes is None:
        pass  # a factory's sizes are known once it has run: load_splits checks them, naming the keys
    elif s.data.name in USER_DATASETS:
        train_source = f"training images of {s.data.data_root}"
    elif s.data.name == "mnist5k":
        if s.data.n_test >= n_train_total + n_test_total:
            errors.append(f"  at data.n_test: {s.data.n_test} leaves no training digits; mnist5k has 5000 in all")
        else:
            train_source = f"training digits that data.n_test={s.data.n_test} leaves of mnist5k's 5000"
    else:
        if not s.data.data_root:
            errors.append(f"  at data.data_root: dataset {s.data.name!r} is read from a local folder; set data.data_root")
        elif not Path(s.data.data_root).expanduser().is_dir():
            errors.append(f"  at data.data_root: folder {s.data.data_root!r} does not exist (repmatch never downloads; "
                          "see docs/configuration.md, 'Pointing it at CIFAR-10')")
        train_source = f"training images of {s.data.name}"
    if train_source is not None and s.data.n_train is not None and s.data.n_train > n_train_total:
        errors.append(f"  at data.n_train: {s.data.n_train} exceeds the {n_train_total} {train_source}")
    if n_test_total is not None and s.data.n_probe > n_test_total:
        errors.append(f"  at data.n_probe: {s.data.n_probe} probe samples do not fit the test set of {n_test_total}")
    if n_test_total is not None and s.subspace_match.n_probe is not None and s.subspace_match.n_probe > n_test_total:
        errors.append(f"  at subspace_match.n_probe: {s.subspace_match.n_probe} probe samples do not fit the test set "
                      f"of {n_test_total}")

    unknown = [m for m in s.similarity.measures if m not in known]
    if unknown:
        errors.append(f"  at similarity.measures: unknown measures {unknown}; registered: {sorted(known)}")
    knn_users = [m for m in (*s.similarity.measures, *(s.sensitivity.measures or ())) if m in MEASURES and "knn_k" in MEASURES[m].params]
    if knn_users and not 1 <= s.similarity.knn_k <= s.data.n_probe - 2:
        errors.append(f"  at similarity.knn_k: {s.similarity.knn_k} neighbours per sample, but {sorted(set(knn_users))} need it in "
                      f"[1, data.n_probe - 2] = [1, {s.data.n_probe - 2}] (a sample and one copy of it are never its neighbours)")
    unknown = [m for m in s.uncertainty.bootstrap_skip if m not in known]
    if unknown:
        errors.append(f"  at uncertainty.bootstrap_skip: unknown measures {unknown}; registered: {sorted(known)}")
    if s.uncertainty.bootstrap_measures is not None:
        unknown = [m for m in s.uncertainty.bootstrap_measures if m not in known]
        if unknown:
            errors.append(f"  at uncertainty.bootstrap_measures: unknown measures {unknown}; registered: {sorted(known)}")
    if s.sensitivity.measures is not None:
        unknown = [m for m in s.sensitivity.measures if m not in known]
        if unknown:
            errors.append(f"  at sensitivity.measures: unknown measures {unknown}; registered: {sorted(known)}")

    if s.sensitivity.layers is not None:
        attempt("sensitivity.layers", lambda: s.model.resolve(s.sensitivity.layers))
    if s.sensitivity.enabled and s.sensitivity.pairs.cross != "none" and len(s.seeds) < 2:
        errors.append(f"  at sensitivity.pairs.cross: {s.sensitivity.pairs.cross!r} needs at least two seeds "
                      f"(seeds = {list(s.seeds)}); use 'none'")
    if s.stitching.pairs.cross != "none" and len(s.seeds) < 2:
        errors.append(f"  at stitching.pairs.cross: {s.stitching.pairs.cross!r} needs at least two seeds "
                      f"(seeds = {list(s.seeds)}); use 'none'")
    if not s.stitching.detector.m_in < s.stitching.detector.m_out:
        errors.append(f"  at stitching.detector.m_in: the energy margins need m_in < m_out, got {s.stitching.detector.m_in} "
                      f"and {s.stitching.detector.m_out}")
    if s.subspace_match.simple_repeats > s.subspace_match.repeats:
        errors.append(f"  at subspace_match.simple_repeats: {s.subspace_match.simple_repeats} exceeds "
                      f"subspace_match.repeats = {s.subspace_match.repeats}")
    if s.external_activations.networks:
        _check_external(s, errors)
    if errors:
        raise ConfigError("invalid configuration:\n" + "\n".join(errors))


def _user_data_sizes(data: DataSettings, errors: list[str]) -> tuple[int, int] | None:
    """(training, test) sizes of an image folder (listed, not read) after checking it; ``None`` for a factory
    (checked to be importable; its sizes are known only once it has run) or when the check failed."""
    if data.name == "factory":
        if data.factory is None:
            errors.append("  at data.factory: data.name is 'factory'; name the function as 'package.module:function'")
        else:
            try:
                import_object(data.factory, "data.factory")
            except ValueError as err:
                errors.append(f"  at {err}")
        return None
    if not data.data_root:
        errors.append("  at data.data_root: data.name 'imagefolder' reads its images from data.data_root "
                      "(a folder holding train/<class>/<image> and test/<class>/<image>); set it")
        return None
    try:
        listing = list_imagefolder(data.data_root)
    except (ValueError, OSError) as err:
        errors.append(f"  at data.data_root: {err}")
        return None
    return len(listing.train), len(listing.test)


def _check_external(s: Settings, errors: list[str]) -> None:
    """External activation networks: names free, folders readable and on the same samples, subspace layers shared.

    (Their ids against the probe sets need ``split.json``: ``repmatch.backbone.external_import.check_against_split``,
    run by the workflow while it parses.)"""
    key = "external_activations.networks"
    trained = set(models(s))
    for name in s.external_activations.networks:
        if re.search(r"_seed\d+$", name) or name in trained:
            errors.append(f"  at {key}: name {name!r} ends in _seed<N>, which is reserved for the networks trained here")
    try:
        nets = check_networks(s.external_activations.networks)
    except ExternalActivationError as err:
        errors.append(f"  at {key}: {err}")
        return
    if s.subspace_match.layer_pairs == "corresponding" and (len(s.seeds) + len(nets) > 1 or s.subspace_match.within_network):
        try:  # a list of layer names as given, or "all" of a built-in architecture
            trained_layers = set(s.model.layers) if not isinstance(s.model.layers, str) else set(
                resolve_layers(s.model.arch, s.model.layers))
        except (KeyError, ValueError):
            return  # reported at model.layers
        for net in nets.values():
            if not set(net.layers) & trained_layers:
                errors.append(f"  at subspace_match.layer_pairs: 'corresponding' compares layers of the same name, but external "
                              f"network {net.name!r} ({net.folder}) shares none with model.layers; use 'all' or name its "
                              "files after the trained layers")
