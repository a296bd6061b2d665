"""The heavy jobs' Snakemake `benchmark:` files as one small table (torch-free).

Why: the first real run on a cluster measures what each stage costs (wall time, peak memory);
the table goes into the report, so a profile's `runtime`/`mem_mb` can be sized from numbers
instead of guesses.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from .io import write_table

PathLike = str | os.PathLike[str]
COLUMNS = ("stage", "job", "wall_s", "max_rss_mb", "cpu_time_s", "attempts")


def benchmark_table(files: Mapping[tuple[str, str], PathLike]) -> pd.DataFrame:
    """One row per job from ``{(stage, job): benchmark.tsv}``.

    Snakemake writes one TSV row per run of the job (``repeat``); with retries the file holds
    the last attempt. Columns: ``s`` (wall seconds), ``max_rss`` (MB), ``cpu_time`` (seconds);
    a value Snakemake could not measure (``-``, e.g. a job too short to sample) becomes NaN.
    """
    rows = []
    for (stage, job), path in files.items():
        df = pd.read_csv(path, sep="\t")
        num = {c: pd.to_numeric(df[c], errors="coerce") if c in df else pd.Series([float("nan")] * len(df))
               for c in ("s", "max_rss", "cpu_time")}  # fmt: skip
        rows.append({"stage": stage, "job": job, "wall_s": float(num["s"].max()), "max_rss_mb": float(num["max_rss"].max()),
                     "cpu_time_s": float(num["cpu_time"].max()), "attempts": len(df)})  # fmt: skip
    return pd.DataFrame(rows, columns=list(COLUMNS)).sort_values(["stage", "job"], ignore_index=True)


def benchmark_summary_stage(*, files: Mapping[tuple[str, str], PathLike], out_csv: PathLike, log: logging.Logger) -> pd.DataFrame:
    """Write :func:`benchmark_table` atomically and log the costliest job of each stage."""
    df = benchmark_table(files)
    write_table(df, out_csv)
    for stage, g in df.groupby("stage"):
        top = g.loc[g["wall_s"].idxmax()] if g["wall_s"].notna().any() else g.iloc[0]
        log.info("%s: %d jobs, longest %s %.1f s, peak RSS %.0f MB", stage, len(g), top["job"], top["wall_s"], g["max_rss_mb"].max())
    return df


def parse_benchmark_path(path: PathLike) -> tuple[str, str]:
    """``results/benchmarks/<stage>/<job>.tsv`` -> ``(stage, job)`` (the layout of repmatch.paths.benchmark)."""
    p = Path(path)
    return p.parent.name, p.stem
