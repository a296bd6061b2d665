"""Configuration -> frozen, typed settings: the one way any part of repmatch reads its config.

Why one loader: the schema (``repmatch/schema.yaml``, shipped with the package) is the only
place a default is written. :func:`load_settings` takes a YAML file, a dict or Snakemake's
``config`` and

1. coerces command-line strings to the schema's types (``--config seeds=[0,1]`` arrives as
   strings),
2. fills every default from the schema,
3. validates against the schema (errors name the key: ``at stitching.tlm.epohcs: ...``),
4. runs the checks a schema cannot express (layer names exist, ``data_root`` exists, the probe
   set fits the test set, measure names are registered, the pair selection is possible),

and returns a :class:`Settings` of frozen dataclasses, one per config section. The Snakefile,
the scripts and the library all take these objects; nobody calls ``.get(key, default)``.
The dataclasses hold field names and types but no defaults (a test checks that they list
exactly the schema's keys).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Union

import jsonschema
import yaml


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key."""


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
        from .naming import factory_name

        if self.name is not None:
            return self.name
        if self.arch is not None:
            return self.arch
        assert self.factory is not None, "model: arch or factory (check_semantics)"
        return factory_name(self.factory)

    @property
    def layer_names(self) -> list[str]:
        """The configured layers, in network order: resolved for a built-in architecture, as listed for a factory."""
        from .architectures import resolve_layers

        if self.arch is not None:
            return resolve_layers(self.arch, self.layers)
        if isinstance(self.layers, str):
            raise KeyError("a factory network needs its layers listed (module paths), not 'all'")
        return list(self.layers)

    def resolve(self, wanted: str | typing.Sequence[str]) -> list[str]:
        """A layer choice (``all`` or names) among the configured layers, in network order."""
        from .architectures import resolve_layers

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
    precision: str
    on_degenerate: str
    threads: int
    user_measures: tuple[dict[str, Any], ...]

    @property
    def measure_params(self) -> dict[str, Any]:
        """The parameters handed to the measures' grid functions (``GridContext.params``)."""
        return {"rbf_sigma": self.rbf_sigma, "svcca_variance": self.svcca_variance, "minibatch_size": self.minibatch_size}


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

    def bootstrapped(self, measures: typing.Sequence[str]) -> list[str]:
        """The configured measures that get bootstrap intervals (none when ``bootstrap`` is 0)."""
        if self.bootstrap == 0:
            return []
        return [m for m in measures if self.bootstrap_measures is None or m in self.bootstrap_measures]

    def bootstrap_params(self) -> dict[str, Any]:
        """What changes the similarity pair tables (Snakemake's rerun trigger of ``similarity_pair``)."""
        return {k: getattr(self, k) for k in ("bootstrap", "level", "seed", "bootstrap_measures")}


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


@functools.cache
def schema() -> dict[str, Any]:
    """The configuration schema (package data: works from an installed wheel as well)."""
    return yaml.safe_load(resources.files("repmatch").joinpath("schema.yaml").read_text())


def schema_path() -> Path:
    """A filesystem path of the schema (for ``snakemake.utils.validate`` and readers)."""
    return Path(str(resources.files("repmatch").joinpath("schema.yaml")))


def load_settings(source: str | os.PathLike[str] | Mapping[str, Any], check: bool = True) -> Settings:
    """Build the experiment's settings from a YAML file, a dict or Snakemake's ``config``.

    ``check=False`` skips the semantic checks that look at the file system or the registries
    (used where only the shape of the config matters).
    """
    config = _read(source)
    config = fill_defaults(coerce(config, schema()), schema())
    validate(config)
    settings = _build(Settings, config)
    _register_user_measures(settings, load=check)  # jobs (check=False) use them too; they import the code when computing
    if check:
        check_semantics(settings)
    return settings


def _register_user_measures(s: Settings, load: bool) -> None:
    """Register ``similarity.user_measures`` (``load``: importing the user's functions now); a failure names the key."""
    if not s.similarity.user_measures:
        return
    from .similarity.user import register_user_measures

    try:
        register_user_measures(s.similarity.user_measures, load=load)
    except ValueError as err:
        raise ConfigError(f"invalid configuration:\n  at {err}") from err


def section_settings(name: str, values: Mapping[str, Any] | None = None) -> Any:
    """One section's settings from a partial mapping, defaults filled from the schema.

    For tests, notebooks and benchmarks that need e.g. ``DataSettings`` without a whole experiment.
    """
    if name not in SECTIONS:
        raise ConfigError(f"unknown config section {name!r}; sections are {sorted(SECTIONS)}")
    sub = schema()["properties"][name]
    value = fill_defaults(coerce(copy.deepcopy(dict(values or {})), sub), sub)
    _raise_errors(jsonschema.Draft202012Validator(sub).iter_errors(value), prefix=name)
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


_TYPE_CHECKS = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "string": lambda v: isinstance(v, str),
}


def _types(sub: Mapping[str, Any]) -> list[str]:
    t = sub.get("type", [])
    return [t] if isinstance(t, str) else list(t)


def coerce(value: Any, sub: Mapping[str, Any]) -> Any:
    """Turn command-line strings into the types the schema asks for.

    ``snakemake --config seeds=[0,1]`` gives ``["0", "1"]`` and ``--config 'stitching={tlm:
    {epochs: 5}}'`` a nested dict of strings; a string is parsed as YAML where the schema wants a
    number, boolean, null, array or object and the parsed value has that type. Anything else is
    left for the validator to report.
    """
    alternatives = sub.get("oneOf") or sub.get("anyOf")
    if alternatives:
        for alt in alternatives:
            out = coerce(value, alt)
            if not list(jsonschema.Draft202012Validator(alt).iter_errors(out)):
                return out
        return value
    types_ = _types(sub)
    if isinstance(value, str) and "string" not in types_ and types_:
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if any(_TYPE_CHECKS[t](parsed) for t in types_):
            value = parsed
    if isinstance(value, list) and isinstance(sub.get("items"), Mapping):
        return [coerce(v, sub["items"]) for v in value]
    if isinstance(value, dict) and isinstance(sub.get("properties"), Mapping):
        props = sub["properties"]
        return {k: coerce(v, props[k]) if k in props else v for k, v in value.items()}
    return value


def fill_defaults(value: Any, sub: Mapping[str, Any]) -> Any:
    """Fill missing keys of every (nested) mapping from the schema's ``default`` values."""
    if not isinstance(value, dict) or not isinstance(sub.get("properties"), Mapping):
        return value
    out = dict(value)
    for key, prop in sub["properties"].items():
        if key not in out and "default" in prop:
            out[key] = copy.deepcopy(prop["default"])
        if key in out:
            out[key] = fill_defaults(out[key], prop)
    return out


def validate(config: Mapping[str, Any]) -> None:
    """Schema validation; every violation is listed with its location."""
    _raise_errors(jsonschema.Draft202012Validator(schema()).iter_errors(dict(config)))


def _raise_errors(errors: typing.Iterable[jsonschema.ValidationError], prefix: str = "") -> None:
    errors = sorted(errors, key=lambda e: [str(p) for p in e.absolute_path])
    if not errors:
        return
    lines = []
    for err in errors:
        where = ".".join([prefix] * bool(prefix) + [str(p) for p in err.absolute_path]) or "<top level>"
        lines.append(f"  at {where}: {err.message}")
    raise ConfigError("invalid configuration:\n" + "\n".join(lines))


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


# ---------------------------------------------------------------------------------------------
# Checks the schema cannot express, run before any job.


def check_semantics(s: Settings) -> None:
    """Every check that needs more than the schema; each error names the key and what is allowed."""
    from .architectures import resolve_layers
    from .datasets import USER_DATASETS, dataset_sizes

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
        from .architectures import TOKEN_ARCHITECTURES

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
    # repmatch.networks.check_factory_networks while Snakemake parses: it needs torch, and this module
    # is imported by every job, the light table/figure jobs too.

    if s.data.factory is not None and s.data.name != "factory":
        errors.append(f"  at data.factory: set, but data.name is {s.data.name!r}; the factory is read only with "
                      "data.name: factory")
    sizes = _user_data_sizes(s.data, errors) if s.data.name in USER_DATASETS else dataset_sizes(s.data.name, s.data.n_test)
    n_train_total, n_test_total = sizes if sizes is not None else (None, None)
    if sizes is None:
        pass  # a factory's sizes are known once it has run: load_splits checks them, naming the keys
    elif s.data.name in USER_DATASETS:
        if s.data.n_train is not None and s.data.n_train > n_train_total:
            errors.append(f"  at data.n_train: {s.data.n_train} exceeds the {n_train_total} training images of "
                          f"{s.data.data_root}")
    elif s.data.name == "mnist5k":
        if s.data.n_test >= n_train_total + n_test_total:
            errors.append(f"  at data.n_test: {s.data.n_test} leaves no training digits; mnist5k has 5000 in all")
    else:
        if not s.data.data_root:
            errors.append(f"  at data.data_root: dataset {s.data.name!r} is read from a local folder; set data.data_root")
        elif not Path(s.data.data_root).expanduser().is_dir():
            errors.append(f"  at data.data_root: folder {s.data.data_root!r} does not exist (repmatch never downloads; "
                          "see README, 'Pointing it at CIFAR-10')")
        if s.data.n_train is not None and s.data.n_train > n_train_total:
            errors.append(f"  at data.n_train: {s.data.n_train} exceeds the {n_train_total} training images of {s.data.name}")
    if n_test_total is not None and s.data.n_probe > n_test_total:
        errors.append(f"  at data.n_probe: {s.data.n_probe} probe samples do not fit the test set of {n_test_total}")
    if n_test_total is not None and s.subspace_match.n_probe is not None and s.subspace_match.n_probe > n_test_total:
        errors.append(f"  at subspace_match.n_probe: {s.subspace_match.n_probe} probe samples do not fit the test set "
                      f"of {n_test_total}")

    from .similarity.registry import MEASURES

    unknown = [m for m in s.similarity.measures if m not in MEASURES]
    if unknown:
        errors.append(f"  at similarity.measures: unknown measures {unknown}; registered: {sorted(MEASURES)}")
    if s.uncertainty.bootstrap_measures is not None:
        unknown = [m for m in s.uncertainty.bootstrap_measures if m not in MEASURES]
        if unknown:
            errors.append(f"  at uncertainty.bootstrap_measures: unknown measures {unknown}; registered: {sorted(MEASURES)}")
    if s.sensitivity.measures is not None:
        unknown = [m for m in s.sensitivity.measures if m not in MEASURES]
        if unknown:
            errors.append(f"  at sensitivity.measures: unknown measures {unknown}; registered: {sorted(MEASURES)}")

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
    from .datasets import list_imagefolder
    from .user_code import import_object

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

    (Their ids against the probe sets need ``split.json``: ``repmatch.backbone.external.check_against_split``,
    run by the workflow while it parses.)"""
    import re

    from .backbone.external import ExternalActivationError, check_networks
    from .backbone.pairs import models

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
        from .architectures import resolve_layers

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
