"""Configuration -> frozen, typed settings: the one way any part of repmatch reads its config.

Why one loader: the schema (``repmatch/schema.yaml``, shipped with the package) is the only
place a default is written. :func:`load_settings` takes a YAML file, a dict or Snakemake's
``config``, coerces command-line strings to the schema's types, fills every default and
validates against the schema (:mod:`repmatch.schema`; errors name the key:
``at stitching.tlm.epohcs: ...``), and returns a :class:`Settings` of frozen dataclasses, one
per config section. The Snakefile, the scripts and the library all take these objects; nobody
calls ``.get(key, default)``. The dataclasses hold field names and types but no defaults (a test
checks that they list exactly the schema's keys).

Foundation level: every package imports this module, so it imports only the foundations
(:mod:`repmatch.schema`, :mod:`repmatch.naming`, the torch-free facts of
:mod:`repmatch.architectures`). The checks a schema cannot express (layer names, ``data_root``,
probe sizes, known measures, pairs, external activations) ask packages above it and live in
:mod:`repmatch.config_checks`, which ``rules/common.smk`` calls; loading never changes the
measure registry (jobs register the config's user measures themselves, :mod:`repmatch.jobs`).

Why over 400 lines: it is the one list of every config section (ten dataclasses and five nested
ones, their fields the schema's keys) with the small properties that read them, beside the
80-line loader that builds them; split, a reader would look in several places for one key's type.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import yaml

from .architectures import resolve_layers
from .naming import factory_name
from .schema import ConfigError, coerce, fill_defaults, schema, validate


# ---------------------------------------------------------------------------------------------
# The sections. Field names are the schema's keys; ``str | tuple[str, ...]`` fields hold
# either "all" or a list of names; lists arrive as tuples (frozen).


#: The data keys each user dataset reads (the built-in datasets read none of them).
_USER_DATA_KEYS: dict[str, tuple[str, ...]] = {
    "imagefolder": ("image_size", "image_mode", "standardise"),
    "factory": ("factory", "factory_kwargs", "standardise"),
}


@dataclass(frozen=True)
class DataSettings:
    name: str
    data_root: str | None
    split_seed: int
    n_test: int
    n_train: int | None
    n_probe: int
    image_size: int
    image_mode: str
    factory: str | None
    factory_kwargs: dict[str, Any]
    standardise: bool

    def result_params(self) -> dict[str, Any]:
        """What changes the data's numbers (not where the files live): Snakemake's rerun trigger.

        Keys a dataset does not read are left out (the image folder's size and mode, the factory and
        its arguments, standardisation are not read by the built-in datasets), so adding them changed
        no built-in experiment's trigger."""
        read = set(_USER_DATA_KEYS[self.name]) if self.name in _USER_DATA_KEYS else set()
        unused = {"data_root"} | ({k for keys in _USER_DATA_KEYS.values() for k in keys} - read)
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in unused}


@dataclass(frozen=True)
class ModelSettings:
    arch: str | None
    factory: str | None
    kwargs: dict[str, Any]
    checkpoints: tuple[str, ...] | None
    name: str | None
    input_channels: int | None
    layers: str | tuple[str, ...]

    @property
    def external(self) -> bool:
        """Networks from the user's factory and checkpoint files: imported and evaluated, not trained."""
        return self.factory is not None

    @property
    def prefix(self) -> str:
        """The model ids' prefix (``<prefix>_seed<k>``): ``name``, else ``arch``, else the factory's function name."""
        if self.name is not None:
            return self.name
        if self.arch is not None:
            return self.arch
        assert self.factory is not None, "model: arch or factory (config_checks.check_semantics)"
        return factory_name(self.factory)

    @property
    def layer_names(self) -> list[str]:
        """The configured layers, in network order: resolved for a built-in architecture, as listed for a factory."""
        if self.arch is not None:
            return resolve_layers(self.arch, self.layers)
        if isinstance(self.layers, str):
            raise KeyError("a factory network needs its layers listed (module paths), not 'all'")
        return list(self.layers)

    def resolve(self, wanted: str | typing.Sequence[str]) -> list[str]:
        """A layer choice (``all`` or names) among the configured layers, in network order."""
        if self.arch is not None:
            return resolve_layers(self.arch, wanted)
        names = self.layer_names
        if isinstance(wanted, str) and wanted == "all":
            return names
        wanted = [wanted] if isinstance(wanted, str) else list(wanted)
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise KeyError(f"layers {unknown} are not in model.layers {names}")
        return [n for n in names if n in set(wanted)]

    def checkpoint_for(self, seed: int, seeds: typing.Sequence[int]) -> str:
        """The weights file of the network of ``seed`` (``checkpoints[k]`` belongs to ``seeds[k]``)."""
        assert self.checkpoints is not None
        return self.checkpoints[list(seeds).index(seed)]


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    weight_decay: float
    augment: bool
    threads: int


@dataclass(frozen=True)
class ActivationSettings:
    batch_size: int
    dtype: str


@dataclass(frozen=True)
class SimilaritySettings:
    measures: tuple[str, ...]
    conv_mode: str
    token_mode: str
    rbf_sigma: float
    svcca_variance: float
    minibatch_size: int
    knn_k: int
    knn_distance: str
    rsa_rdm: str
    rsa_compare: str
    shape_alpha: float
    precision: str
    on_degenerate: str
    threads: int
    user_measures: tuple[dict[str, Any], ...]

    @property
    def measure_params(self) -> dict[str, Any]:
        """The parameters handed to the measures' grid functions (``GridContext.params``)."""
        return {"rbf_sigma": self.rbf_sigma, "svcca_variance": self.svcca_variance, "minibatch_size": self.minibatch_size,
                "knn_k": self.knn_k, "knn_distance": self.knn_distance, "rsa_rdm": self.rsa_rdm,
                "rsa_compare": self.rsa_compare, "shape_alpha": self.shape_alpha}


@dataclass(frozen=True)
class SubspaceSettings:
    eps: tuple[float, ...]
    n_probe: int | None
    n_coords: int
    repeats: int
    layer_pairs: str
    within_network: bool
    simple_eps: float | None
    simple_repeats: int
    simple_mode: str
    simple_budget: int | None
    chance_permutations: int
    chance_seed: int
    seed: int
    dtype: str
    threads: int


@dataclass(frozen=True)
class StitchPairSettings:
    within: str
    cross: str


@dataclass(frozen=True)
class DMSettings:
    solver: str
    ridge: float
    k: int


@dataclass(frozen=True)
class TLMSettings:
    epochs: int
    batch_size: int
    lr: float
    n_train: int | None
    schedule: str
    warmup_epochs: float
    final_lr_fraction: float
    weight_decay: float
    augment: bool
    dm_tlm_epochs: int | None
    converged_tol: float


@dataclass(frozen=True)
class DetectorSettings:
    enabled: bool
    epochs: int
    oe_epochs: int
    batch_size: int
    lr: float
    oe_lr: float
    width: int
    m_in: float
    m_out: float
    oe_weight: float
    seed: int


@dataclass(frozen=True)
class StitchingSettings:
    pairs: StitchPairSettings
    layers: str | tuple[str, ...] | None
    methods: tuple[str, ...]
    dm: DMSettings
    tlm: TLMSettings
    seed: int
    max_stack: int | None
    batch_size: int
    mahalanobis_shrinkage: float
    mahalanobis_class_conditional: bool
    fold_batchnorm: bool
    detector: DetectorSettings
    threads: int


@dataclass(frozen=True)
class UncertaintySettings:
    bootstrap: int
    level: float
    alpha: float
    correction: str
    seed: int
    mcnemar: str
    n_permutations: int
    bootstrap_measures: tuple[str, ...] | None
    bootstrap_skip: tuple[str, ...] = ()

    def bootstrapped(self, measures: typing.Sequence[str]) -> list[str]:
        """The configured measures that get bootstrap intervals (none when ``bootstrap`` is 0)."""
        if self.bootstrap == 0:
            return []
        return [m for m in measures if (self.bootstrap_measures is None or m in self.bootstrap_measures)
                and m not in self.bootstrap_skip]

    def bootstrap_params(self) -> dict[str, Any]:
        """What changes the similarity pair tables (Snakemake's rerun trigger of ``similarity_pair``)."""
        return {k: getattr(self, k) for k in ("bootstrap", "level", "seed", "bootstrap_measures", "bootstrap_skip")}


@dataclass(frozen=True)
class SensitivityPairSettings:
    within: str
    cross: str


@dataclass(frozen=True)
class SensitivitySettings:
    enabled: bool
    ranks: tuple[int, ...] | None
    probe_epochs: int
    probe_lr: float
    probe_batch_size: int
    probe_weight_decay: float
    measures: tuple[str, ...] | None
    seed: int
    layers: str | tuple[str, ...] | None
    n_layers: int | None
    pairs: SensitivityPairSettings
    specificity_seeds: int | None
    stitch_methods: tuple[str, ...]
    tlm_epochs: int | None
    tlm_n_train: int | None
    threads: int

    def ranks_for(self, full_rank: int) -> list[int]:
        """The ranks used for a layer of ``full_rank`` channels, decreasing, always starting at full rank
        (the reference); null = the halving sequence full, full//2, ..., 1."""
        if self.ranks is None:
            out, r = [], full_rank
            while r >= 1:
                out.append(r)
                r //= 2
            return out
        return sorted({full_rank, *(r for r in self.ranks if r <= full_rank)}, reverse=True)


@dataclass(frozen=True)
class ExternalActivationSettings:
    networks: dict[str, str]

    @property
    def names(self) -> list[str]:
        """The external networks' names, in config order."""
        return list(self.networks)


@dataclass(frozen=True)
class Settings:
    """The whole experiment, every default filled, validated."""

    seeds: tuple[int, ...]
    device: str
    data: DataSettings
    model: ModelSettings
    train: TrainSettings
    activations: ActivationSettings
    subspace_match: SubspaceSettings
    similarity: SimilaritySettings
    stitching: StitchingSettings
    uncertainty: UncertaintySettings
    sensitivity: SensitivitySettings
    external_activations: ExternalActivationSettings

    def to_config(self) -> dict[str, Any]:
        """The filled-in config as plain YAML-able data (lists, not tuples)."""
        return _plain(dataclasses.asdict(self))


SECTIONS: dict[str, type] = {
    "data": DataSettings, "model": ModelSettings, "train": TrainSettings, "activations": ActivationSettings,
    "subspace_match": SubspaceSettings, "similarity": SimilaritySettings, "stitching": StitchingSettings,
    "uncertainty": UncertaintySettings, "sensitivity": SensitivitySettings,
    "external_activations": ExternalActivationSettings,
}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Loading


def load_settings(source: str | os.PathLike[str] | Mapping[str, Any]) -> Settings:
    """Build the experiment's settings from a YAML file, a dict or Snakemake's ``config``:
    coerced, defaults filled, validated against the schema (a :class:`ConfigError` names the key).

    The semantic checks are :func:`repmatch.config_checks.check_semantics` (or
    :func:`repmatch.config_checks.checked_settings`: both at once).
    """
    config = _read(source)
    config = fill_defaults(coerce(config, schema()), schema())
    validate(config)
    return _build(Settings, config)


def section_settings(name: str, values: Mapping[str, Any] | None = None) -> Any:
    """One section's settings from a partial mapping, defaults filled from the schema.

    For tests, notebooks and benchmarks that need e.g. ``DataSettings`` without a whole experiment.
    """
    if name not in SECTIONS:
        raise ConfigError(f"unknown config section {name!r}; sections are {sorted(SECTIONS)}")
    sub = schema()["properties"][name]
    value = fill_defaults(coerce(copy.deepcopy(dict(values or {})), sub), sub)
    validate(value, sub, prefix=name)
    return _build(SECTIONS[name], value)


def _read(source: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return copy.deepcopy(_plain(dict(source)))
    path = Path(source)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML ({err})") from err
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(loaded).__name__}")
    return loaded


def _plain(value: Any) -> Any:
    """Mappings -> dict, tuples/lists -> list (Snakemake's config holds its own container types)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls: type, value: Mapping[str, Any]) -> Any:
    """A (nested) frozen dataclass from a validated, default-filled mapping."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in value:
            raise ConfigError(f"config section for {cls.__name__} lacks {f.name!r}, which has no default in the schema")
        kwargs[f.name] = _convert(value[f.name], hints[f.name])
    return cls(**kwargs)


def _convert(value: Any, hint: Any) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value)
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, int) and not isinstance(value, bool) and _accepts_float(hint):
        return float(value)
    return value


def _accepts_float(hint: Any) -> bool:
    if hint is float:
        return True
    if typing.get_origin(hint) in (Union, types.UnionType):
        args = typing.get_args(hint)
        return float in args and int not in args
    return False
