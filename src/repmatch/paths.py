"""Every output's name, in one torch-free module used by the rules and by the library.

Why one module: a path spelt in a rule and again in a plotting function drifts; here each
output has one function. Arguments may be Snakemake wildcards (``checkpoint("{model}")``) or
concrete names (``checkpoint("smallcnn_seed0")``), so the rules' patterns and
``final_outputs()``'s target list come from the same code. Stage functions receive these
paths as arguments (from ``snakemake.output``) and never build them.
"""

from __future__ import annotations

from collections.abc import Iterable

RESULTS = "results"
FIGURE_FORMATS = ("png", "pdf")

#: result folder of each comparison family (``results/<folder>/``)
FAMILY_FOLDERS = {"similarity": "similarity", "stitching": "stitching", "subspace_match": "subspace"}


def _r(*parts: str) -> str:
    return "/".join((RESULTS, *parts))


# --- backbone -------------------------------------------------------------------------------
def split() -> str:
    return _r("data", "split.json")


def checkpoint(model: str) -> str:
    return _r("models", model, "checkpoint.pt")


def metrics(model: str) -> str:
    return _r("models", model, "metrics.json")


def train_state(model: str) -> str:
    """Training's per-epoch resume state (not a rule output: Snakemake leaves it in place when a
    job is killed, so the retry resumes from it; training deletes it once the model is written)."""
    return _r("models", model, "train_state.pt")


def training_summary() -> str:
    return _r("models", "training_summary.csv")


def activations(model: str) -> str:
    """The probe-set activation cache (similarity indices)."""
    return _r("activations", model)


def subspace_activations(model: str) -> str:
    """The subspace match's own probe-set cache (``subspace_match.n_probe``)."""
    return _r("activations_subspace", model)


# --- pairwise families -----------------------------------------------------------------------
def pair_table(family: str, pair: str) -> str:
    """One model pair's tidy table of ``family`` (``similarity``, ``stitching``, ``subspace_match``)."""
    return _r(FAMILY_FOLDERS[family], "pairs", f"{pair}.parquet")


def aggregate(family: str) -> str:
    """All pairs of ``family`` in one tidy table."""
    folder = FAMILY_FOLDERS[family]
    return _r(folder, f"{folder}.parquet")


def subspace_simple_table(pair: str) -> str:
    return _r("subspace", "pairs", f"{pair}.simple.parquet")


def subspace_simple_aggregate() -> str:
    return _r("subspace", "subspace_simple.parquet")


def stitching_distance() -> str:
    return _r("stitching", "accuracy_vs_layer_distance.csv")


# --- cross-family sanity tables ---------------------------------------------------------------
# --- sensitivity (one job per network) ---------------------------------------------------------
def sensitivity_table(model: str) -> str:
    """One network's layer x rank table (``repmatch.tables.COLUMNS["sensitivity"]``)."""
    return _r("sensitivity", "networks", f"{model}.parquet")


def sensitivity_summary(model: str) -> str:
    """One network's per-index rank correlations with the functional drop (CSV)."""
    return _r("sensitivity", "networks", f"{model}_correlations.csv")


def sensitivity_curves(model: str) -> dict[str, str]:
    """One network's per-layer curves (``{"curves_png": ..., "curves_pdf": ...}``)."""
    return {f"curves_{fmt}": figure("sensitivity", f"{model}_rank_curves", fmt) for fmt in FIGURE_FORMATS}


def sensitivity_pair_table(pair: str) -> str:
    """One ordered pair's rank-r front of A into B (``repmatch.tables.COLUMNS["sensitivity_pair"]``)."""
    return _r("sensitivity", "pairs", f"{pair}.parquet")


def sensitivity_units() -> str:
    """Per network pair, method and functional score: the sensitivity correlations (CSV)."""
    return _r("sensitivity", "units.csv")


def sensitivity_specificity_points() -> str:
    """The specificity test's points: per seed pair, layer and method, the distance and both functional gaps (CSV)."""
    return _r("sensitivity", "specificity_points.csv")


def sensitivity_specificity_by_layer() -> str:
    """The specificity test per (method, functional gap, layer): Spearman over that layer's seed pairs (CSV)."""
    return _r("sensitivity", "specificity_by_layer.csv")


def sensitivity_specificity_stratified() -> str:
    """The specificity test per (method, functional gap): mean of the per-layer correlations (CSV)."""
    return _r("sensitivity", "specificity.csv")


def sensitivity_overview() -> str:
    """The summary: one row per index / DM / TLM score, sensitivity and specificity with intervals (CSV)."""
    return _r("sensitivity", "summary.csv")


SENSITIVITY_FIGURE_NAMES = ("sensitivity_vs_specificity",)


def sanity(name: str) -> str:
    """``more_similar_than_itself``, ``more_similar_summary``, ``specificity`` or ``within_vs_cross`` (every family in one table)."""
    return _r("sanity", f"{name}.csv")


SANITY_TABLES = ("more_similar_than_itself", "more_similar_summary", "specificity", "within_vs_cross")


# --- figures ----------------------------------------------------------------------------------
def figure(folder: str, name: str, fmt: str) -> str:
    return _r("figures", folder, f"{name}.{fmt}")


def figures(folder: str, names: Iterable[str]) -> dict[str, str]:
    """``{"<name>_<fmt>": path}`` for every name and format (the rules' named outputs)."""
    return {f"{name}_{fmt}": figure(folder, name, fmt) for name in names for fmt in FIGURE_FORMATS}


def similarity_figure_names(measures: Iterable[str]) -> list[str]:
    return [f"{measure}_{kind}" for measure in measures for kind in ("pairs", "cross_seed")]


def stitching_figure_names(kinds: Iterable[str]) -> list[str]:
    kinds = list(kinds)
    return ([f"{kind}_accuracy_grids" for kind in kinds] + [f"{kind}_ood_grids" for kind in kinds]
            + ["accuracy_vs_layer_distance", "accuracy_vs_ood"])  # fmt: skip


SUBSPACE_FIGURE_NAMES = ("max_match_vs_eps", "simple_match_sizes")
TRAINING_FIGURE_NAMES = ("accuracy",)


# --- logs -------------------------------------------------------------------------------------
def log(stage: str, name: str) -> str:
    return _r("logs", stage, f"{name}.log")


def benchmark(stage: str, name: str) -> str:
    """Snakemake's `benchmark:` file of one heavy job (wall seconds, max RSS, ...; TSV)."""
    return _r("benchmarks", stage, f"{name}.tsv")


def benchmark_summary() -> str:
    """One row per benchmarked job: wall time and peak memory (in the report)."""
    return _r("benchmarks", "summary.csv")
