"""The torch-free steps of the similarity stage: aggregate, sanity tables, figures.

Why separate from :mod:`.stage`: these run in the light figures environment (no torch), and
read only the tidy tables.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..io import concat_tables, read_table, write_table
from ..logs import job_logger
from .figures import similarity_figures
from .registry import check_measures
from .sanity import more_similar_than_itself, specificity

PathLike = str | os.PathLike[str]


def similarity_aggregate_stage(pair_tables: Sequence[PathLike], out: PathLike) -> pd.DataFrame:
    """Concatenate the per-pair tables into ``similarity.parquet``."""
    return concat_tables(pair_tables, out)


def similarity_sanity_stage(table: PathLike, specificity_out: PathLike, self_out: PathLike, measures: Sequence[str],
                            log_file: PathLike | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Specificity accuracy and "more similar than itself" counts, as CSV tables."""
    log = job_logger("similarity_sanity", log_file)
    check_measures(measures)
    df = read_table(table)
    spec = specificity(df, measures)
    msti = more_similar_than_itself(df, measures)
    write_table(spec, specificity_out)
    write_table(msti, self_out)
    for row in spec.itertuples():
        log.info("specificity %-20s %d/%d = %.3f (chance %.3f)", row.method, row.n_correct, row.n_total, row.accuracy, row.chance)
    return spec, msti


def similarity_figures_stage(table: PathLike, out_dir: PathLike, measures: Sequence[str],
                             expected: Sequence[PathLike] = (), log_file: PathLike | None = None) -> list[Path]:
    """Heatmaps of every measure; checks that the files the rule declared were all written."""
    log = job_logger("similarity_figures", log_file)
    check_measures(measures)
    paths = similarity_figures(read_table(table), out_dir, measures)
    missing = sorted({str(p) for p in expected} - {str(p) for p in paths})
    if missing:
        raise RuntimeError(f"similarity figures not produced: {missing}")
    log.info("wrote %d figure files to %s", len(paths), out_dir)
    return paths
