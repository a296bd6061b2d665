"""Every numeric config key has its real range in the schema (``subspace_match.eps:
[0.2, 1.5]`` ran and reported similarities at ε = 1.5, ``simple_eps: 3`` was accepted).

The walk below visits every number/integer schema in config/schema.yaml (properties, array
items, oneOf/anyOf/allOf branches) and requires a lower bound always, and an upper bound
unless the key is listed in ``UNBOUNDED_ABOVE`` with the reason why no upper bound exists."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO / "src" / "repmatch" / "schema.yaml"

_SIZE = "a size or count: larger only costs time/memory"
_DATASET = "its upper limit depends on the dataset; repmatch.data.load_splits checks it with a message"
UNBOUNDED_ABOVE: dict[str, str] = {
    "data.n_test": _DATASET,
    "subspace_match.n_probe": _DATASET,
    "data.n_train": _DATASET,
    "data.n_probe": _DATASET,
    "train.epochs": _SIZE,
    "train.batch_size": _SIZE,
    "train.lr": "a learning rate has no natural ceiling (too large diverges, which training reports)",
    "train.weight_decay": "an L2 coefficient has no natural ceiling",
    "train.threads": _SIZE,
    "activations.batch_size": _SIZE,
    "subspace_match.n_coords": _SIZE,
    "subspace_match.repeats": _SIZE,
    "subspace_match.simple_repeats": _SIZE,
    "subspace_match.simple_budget": "a cap on fixed points per layer pair and draw: a size, larger only costs time",
    "subspace_match.threads": _SIZE,
    "similarity.rbf_sigma": "a kernel width (relative to the median distance) has no natural ceiling",
    "similarity.minibatch_size": _SIZE,
    "similarity.knn_k": "at most n_probe - 2, which depends on the dataset; the k-NN measures check it with a message",
    "similarity.threads": _SIZE,
    "stitching.dm.ridge": "a ridge penalty has no natural ceiling",
    "stitching.dm.k": _SIZE,
    "stitching.tlm.epochs": _SIZE,
    "stitching.tlm.batch_size": _SIZE,
    "stitching.tlm.lr": "a learning rate has no natural ceiling",
    "stitching.tlm.n_train": _SIZE,
    "sensitivity.tlm_n_train": _SIZE,
    "stitching.max_stack": _SIZE,
    "stitching.tlm.warmup_epochs": _SIZE,
    "stitching.tlm.weight_decay": "a weight decay has no natural ceiling",
    "stitching.tlm.dm_tlm_epochs": _SIZE,
    "stitching.detector.epochs": _SIZE,
    "stitching.detector.oe_epochs": _SIZE,
    "stitching.detector.batch_size": _SIZE,
    "stitching.detector.lr": "a learning rate has no natural ceiling",
    "stitching.detector.oe_lr": "a learning rate has no natural ceiling",
    "stitching.detector.width": _SIZE,
    "stitching.detector.oe_weight": "a loss weight has no natural ceiling",
    "stitching.batch_size": _SIZE,
    "stitching.mahalanobis_shrinkage": "added to the diagonal as a multiple of the mean variance, not a fraction",
    "stitching.threads": _SIZE,
    "uncertainty.bootstrap": _SIZE + " (more resamples = finer intervals and p-values)",
    "uncertainty.n_permutations": _SIZE + " (more permutations = finer Monte Carlo p-values)",
}
NUMERIC = {"number", "integer"}


def _schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def numeric_nodes(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(dotted path, schema) of every number/integer schema under ``node``; array items get ``[]``."""
    if not isinstance(node, dict):
        return
    types = node.get("type", [])
    types = {types} if isinstance(types, str) else set(types)
    if types & NUMERIC:
        yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from numeric_nodes(sub, f"{path}.{name}" if path else name)
    if isinstance(node.get("items"), dict):
        yield from numeric_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from numeric_nodes(node["additionalProperties"], f"{path}.*")
    for key in ("oneOf", "anyOf", "allOf"):
        for branch in node.get(key, []):
            yield from numeric_nodes(branch, path)
    for name, sub in (node.get("$defs") or {}).items():
        yield from numeric_nodes(sub, f"$defs.{name}")


def _has_lower(node: dict) -> bool:
    return "minimum" in node or "exclusiveMinimum" in node


def _has_upper(node: dict) -> bool:
    return "maximum" in node or "exclusiveMaximum" in node


def test_the_walk_finds_the_numeric_keys():
    paths = {p for p, _ in numeric_nodes(_schema())}
    assert {"seeds[]", "data.n_probe", "subspace_match.eps[]", "subspace_match.simple_eps", "stitching.tlm.lr"} <= paths


def test_every_numeric_key_has_a_lower_bound():
    missing = [p for p, node in numeric_nodes(_schema()) if not _has_lower(node)]
    assert not missing, f"numeric config keys without a lower bound in {SCHEMA_PATH.name}: {missing}"


def test_every_numeric_key_has_an_upper_bound_unless_unbounded_on_purpose():
    missing = [p for p, node in numeric_nodes(_schema()) if not _has_upper(node) and p not in UNBOUNDED_ABOVE]
    assert not missing, (
        f"numeric config keys without an upper bound in {SCHEMA_PATH.name}: {missing}. Give them their real "
        "range (maximum/exclusiveMaximum), or list them in UNBOUNDED_ABOVE with the reason"
    )


def test_the_unbounded_list_is_not_stale():
    nodes = dict(numeric_nodes(_schema()))
    unknown = sorted(set(UNBOUNDED_ABOVE) - set(nodes))
    assert not unknown, f"UNBOUNDED_ABOVE names keys the schema does not have: {unknown}"
    bounded = sorted(p for p in UNBOUNDED_ABOVE if _has_upper(nodes[p]))
    assert not bounded, f"UNBOUNDED_ABOVE lists keys that now have an upper bound: {bounded}"


def test_the_walk_flags_an_unbounded_number():
    """The check can fail: a number with only a minimum is reported."""
    schema = {"type": "object", "properties": {"s": {"type": "object", "properties": {"eps": {"type": "number", "minimum": 0}}}}}
    assert [p for p, n in numeric_nodes(schema) if not _has_upper(n)] == ["s.eps"]


# The ranges themselves, through the same validation the Snakefile runs.


def _validate(config: dict) -> None:
    from snakemake.utils import validate

    validate(config, str(SCHEMA_PATH))


def _default_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


@pytest.mark.parametrize(
    "path",
    [REPO / "config.yaml", REPO / "tests" / "data" / "tiny_config.yaml", *sorted((REPO / "config").glob("paper*.yaml"))],
    ids=lambda p: p.name,
)
def test_the_shipped_configs_are_within_range(path):
    _validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("subspace_match", "eps", [0.2, 1.5]),
        ("subspace_match", "eps", [0.0, 0.2]),
        ("subspace_match", "eps", [1.0]),
        ("subspace_match", "simple_eps", 3),
        ("subspace_match", "simple_eps", 0),
        ("subspace_match", "simple_eps", 1),
        ("similarity", "svcca_variance", 1.5),
        ("data", "n_probe", 0),
        ("train", "batch_size", 0),
        ("data", "split_seed", 2**32),
        ("uncertainty", "level", 1.0),
        ("uncertainty", "alpha", 0),
        ("uncertainty", "bootstrap", -1),
        ("uncertainty", "n_permutations", 10),
    ],
)
def test_out_of_range_values_are_refused_naming_the_key(section, key, value):
    from snakemake.exceptions import WorkflowError

    config = copy.deepcopy(_default_config())
    config.setdefault(section, {})[key] = value
    with pytest.raises(WorkflowError, match=key):
        _validate(config)


@pytest.mark.parametrize(("key", "value"), [("eps", [0.01, 0.99]), ("simple_eps", None), ("simple_eps", 0.999)])
def test_in_range_values_are_accepted(key, value):
    config = copy.deepcopy(_default_config())
    config.setdefault("subspace_match", {})[key] = value
    _validate(config)
