# Names, input functions and shared parameters used by every stage.

import os
import sys
from pathlib import Path

# The library is importable by the Snakefile itself and by every script job, also inside a
# per-stage conda env (--software-deployment-method conda), where the editable install is absent.
_SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, _SRC)
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (_SRC, os.environ.get("PYTHONPATH")) if p))

from repmatch.naming import model_id, ordered_pairs, pair_id, unordered_pairs  # noqa: E402

RESULTS = "results"
ARCH = config["model"]["arch"]
MODELS = [model_id(ARCH, seed) for seed in config["seeds"]]
UNORDERED_PAIRS = [pair_id(a, b) for a, b in unordered_pairs(MODELS)]
ORDERED_PAIRS = [pair_id(a, b) for a, b in ordered_pairs(MODELS)]


wildcard_constraints:
    model=r"[a-z0-9]+_seed\d+",
    pair=r"[a-z0-9]+_seed\d+__[a-z0-9]+_seed\d+",


def checkpoint_of(model):
    return f"{RESULTS}/models/{model}/checkpoint.pt"


def activations_of(model):
    return f"{RESULTS}/activations/{model}"


def pair_models(wildcards):
    """The two models of a pair wildcard, as (model_a, model_b)."""
    a, b = wildcards.pair.split("__")
    return a, b


def pair_activations(wildcards):
    a, b = pair_models(wildcards)
    return {"a": activations_of(a), "b": activations_of(b)}


def pair_checkpoints(wildcards):
    a, b = pair_models(wildcards)
    return {"a": checkpoint_of(a), "b": checkpoint_of(b)}


# GPU jobs (train, activations, pairwise comparisons) declare `resources: gpu=GPUS_PER_JOB`;
# 0 on a laptop, 1 on a GPU cluster (config key `gpus_per_job`, set by the paper config / profiles).
GPUS_PER_JOB = int(config.get("gpus_per_job", 0))


# Every stage file registers the final targets it contributes with `register_targets`.
_TARGETS = []


def register_targets(paths):
    _TARGETS.extend(paths)


def all_targets(wildcards):
    return list(_TARGETS)
