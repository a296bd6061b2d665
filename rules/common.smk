# Settings, names, input functions and the target list shared by every stage.
#
# The config is read once, here: repmatch.settings coerces command-line strings, fills every
# default from the schema and validates; repmatch.config_checks runs the semantic checks (layer
# names, data_root, probe size, measures, pairs, external activations), so a bad config fails
# `snakemake -n` naming the key. No measure is registered here: nothing at parse time looks one
# up; every job registers the config's user measures (repmatch.jobs.snakemake_job).

import dataclasses
import os
import re
import sys
from pathlib import Path

# Jobs import the library from this workflow's own src/ (also inside per-stage conda envs,
# which do not install repmatch), so the rules and the code they call always match.
_SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, _SRC)
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (_SRC, os.environ.get("PYTHONPATH")) if p))

from repmatch import paths  # noqa: E402
from repmatch.backbone.pairs import models  # noqa: E402
from repmatch.config_checks import check_semantics  # noqa: E402
from repmatch.naming import parse_model_id, parse_pair_id  # noqa: E402
from repmatch.settings import load_settings  # noqa: E402
from repmatch.split_check import check_split_file  # noqa: E402
from repmatch.similarity.pairs import similarity_pairs  # noqa: E402
from repmatch.stitching.pairs import pair_kinds, stitching_layers, stitching_pairs  # noqa: E402
from repmatch.subspace_match.pairs import subspace_pairs  # noqa: E402
from repmatch.sensitivity.pairs import (  # noqa: E402
    sensitivity_layers,
    sensitivity_models,
    sensitivity_pairs,
    specificity_dm_pairs,
    specificity_extra_models,
    specificity_similarity_pairs,
)
from repmatch.backbone.external_import import check_against_split  # noqa: E402
from repmatch.networks import check_factory_networks  # noqa: E402

SETTINGS = load_settings(config)  # schema: raises ConfigError naming the key
check_semantics(SETTINGS)  # what a schema cannot express; imports and checks the user measures' code
check_factory_networks(SETTINGS)  # a network from the user's code: it builds, its checkpoints fit, its layers exist
if Path(paths.split()).exists():  # a corrupt split fails here, before Snakemake invalidates what depends on it
    check_split_file(paths.split())
config.update(SETTINGS.to_config())  # the report and the jobs see every default filled in

MODELS = models(SETTINGS)
# Networks with activations made elsewhere: similarity and subspace only (no weights to stitch).
NETWORKS = MODELS + SETTINGS.external_activations.names
SIMILARITY_PAIRS = similarity_pairs(NETWORKS)
STITCHING_PAIRS = stitching_pairs(MODELS, SETTINGS.stitching.pairs)
SUBSPACE_PAIRS = subspace_pairs(NETWORKS, SETTINGS.subspace_match.within_network)
SENSITIVITY_MODELS = sensitivity_models(MODELS, SETTINGS.sensitivity)
SENSITIVITY_PAIRS = sensitivity_pairs(MODELS, SETTINGS.sensitivity)
# Networks trained only for the specificity test (sensitivity.specificity_seeds), and the similarity
# pair jobs whose corresponding-layer rows are the indices' cross-seed distances of that test.
SPECIFICITY_EXTRA = specificity_extra_models(SETTINGS)
SPECIFICITY_SIMILARITY_PAIRS = specificity_similarity_pairs(SETTINGS)
# DM-only, full-rank-only sensitivity pair jobs for the pairs of specificity networks no pair job covers.
SPECIFICITY_DM_PAIRS = specificity_dm_pairs(SETTINGS)
# Their sample ids against the probe sets, before any job (names the folder and the first missing id).
EXTERNAL_NETWORKS = check_against_split(
    SETTINGS, paths.split(), ["similarity"] + ["subspace_match"] * bool(SUBSPACE_PAIRS)
)
EXTERNAL_RE = "|".join(map(re.escape, EXTERNAL_NETWORKS)) or "(?!)"
_TRAINED_RE = r"[a-z0-9]+(?:_[a-z0-9]+)*_seed\d+"  # repmatch.naming.model_id; external names never end in _seed<N>
_NETWORK_RE = "|".join([_TRAINED_RE, *map(re.escape, EXTERNAL_NETWORKS)])

# Rules that use a GPU when their job sees one (train, activations, subspace_activations, the
# *_pair rules, sensitivity_network) request none here: the profiles do (`set-resources: RULE:
# {gpu: 1}`), so plain `snakemake --cores N` runs them as CPU jobs, and a `--config` override on
# the command line never drops a GPU request (tests/workflow/test_slurm.py).


wildcard_constraints:
    model=_TRAINED_RE,
    pair=rf"(?:{_NETWORK_RE})__(?:{_NETWORK_RE})",


def result_params(section, *ignore):
    """A settings section as a Snakemake rerun trigger, without the keys that do not change
    numbers (thread counts, folders, pair selection): changing those reruns nothing."""
    params = {k: v for k, v in dataclasses.asdict(section).items() if k not in ("threads", *ignore)}
    # Keys for users' own code and data that are empty unless used: left out then, so adding them reran nothing.
    return {k: v for k, v in params.items() if not (k in ("user_measures",) and not v)}


def network_source(wildcards):
    """The user's weights file of a factory network (``model.checkpoints[k]`` is seed ``seeds[k]``)."""
    _, seed = parse_model_id(wildcards.model)
    return SETTINGS.model.checkpoint_for(seed, SETTINGS.seeds)


def pair_activations(wildcards):
    a, b = parse_pair_id(wildcards.pair)
    return {"a": paths.activations(a), "b": paths.activations(b)}


def pair_subspace_activations(wildcards):
    a, b = parse_pair_id(wildcards.pair)
    return {"a": paths.subspace_activations(a), "b": paths.subspace_activations(b)}


def pair_checkpoints(wildcards):
    """Both checkpoints of a pair, and the metrics holding their recorded sha256."""
    a, b = parse_pair_id(wildcards.pair)
    return {
        "a": paths.checkpoint(a),
        "b": paths.checkpoint(b),
        "metrics_a": paths.metrics(a),
        "metrics_b": paths.metrics(b),
    }


def sanity_inputs(wildcards):
    """The aggregated table of every family that this experiment runs."""
    inputs = {"similarity": paths.aggregate("similarity")}
    if STITCHING_PAIRS:
        inputs["stitching"] = paths.aggregate("stitching")
    if SUBSPACE_PAIRS:
        inputs["subspace_match"] = paths.aggregate("subspace_match")
    return inputs


def benchmark_files(wildcards):
    """The `benchmark:` files of every heavy job of this run, named by stage and job."""
    jobs = [("train", m) for m in MODELS] + [("activations", m) for m in MODELS]
    jobs += [("activations", f"{m}.subspace") for m in MODELS]
    jobs += [("similarity", p) for p in SIMILARITY_PAIRS] + [("stitching", p) for p in STITCHING_PAIRS]
    jobs += [("subspace", p) for p in SUBSPACE_PAIRS]
    jobs += [("sensitivity", m) for m in SENSITIVITY_MODELS] + [("sensitivity", p) for p in SENSITIVITY_PAIRS]
    jobs += [("train", m) for m in SPECIFICITY_EXTRA] + [("activations", m) for m in SPECIFICITY_EXTRA]
    jobs += [("sensitivity", m) for m in SPECIFICITY_EXTRA] + [("sensitivity", p) for p in SPECIFICITY_DM_PAIRS]
    jobs += [("similarity", p) for p in SPECIFICITY_SIMILARITY_PAIRS if p not in SIMILARITY_PAIRS]
    return {f"{stage}/{name}": paths.benchmark(stage, name) for stage, name in jobs}


def figure_outputs(folder, names, caption, category):
    """Named figure outputs (PNG + PDF); only the PNGs go into the HTML report, each labelled."""

    def in_report(key, path):
        return report(path, caption=caption, category=category, labels={"figure": key.removesuffix("_png")})

    return {k: in_report(k, v) if k.endswith("_png") else v for k, v in paths.figures(folder, names).items()}


def final_outputs():
    """Every target of the experiment: the one list `rule all` asks for."""
    out = [paths.training_summary(), *paths.figures("training", paths.TRAINING_FIGURE_NAMES).values()]
    out += [path for m in MODELS for path in (paths.checkpoint(m), paths.metrics(m))]  # a deleted one is retrained
    out += [paths.activations(m) for m in NETWORKS]
    out += [
        paths.aggregate("similarity"),
        *paths.figures("similarity", paths.similarity_figure_names(SETTINGS.similarity.measures)).values(),
    ]
    if STITCHING_PAIRS:
        out += [paths.aggregate("stitching"), paths.stitching_distance()]
        out += paths.figures("stitching", paths.stitching_figure_names(pair_kinds(STITCHING_PAIRS))).values()
    if SUBSPACE_PAIRS:
        out += [paths.aggregate("subspace_match"), paths.subspace_simple_aggregate()]
        out += paths.figures("subspace", paths.SUBSPACE_FIGURE_NAMES).values()
    out += [paths.sanity(name) for name in paths.SANITY_TABLES]
    for m in SENSITIVITY_MODELS:
        out += [paths.sensitivity_table(m), paths.sensitivity_summary(m), *paths.sensitivity_curves(m).values()]
    if SENSITIVITY_MODELS:
        out += [paths.sensitivity_pair_table(p) for p in SENSITIVITY_PAIRS]
        out += [paths.sensitivity_units(), paths.sensitivity_specificity_points(), paths.sensitivity_overview()]
        out += [paths.sensitivity_specificity_by_layer(), paths.sensitivity_specificity_stratified()]
        out += paths.figures("sensitivity", paths.SENSITIVITY_FIGURE_NAMES).values()
    out += [paths.benchmark_summary()]
    return out
