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


#: Pipeline order of the benchmarked stages (the end-of-run report lists them so; others follow by name).
STAGE_ORDER = ("train", "activations", "similarity", "stitching", "subspace", "sensitivity")


def stage_times(table: pd.DataFrame) -> pd.DataFrame:
    """Per stage of a :func:`benchmark_table`: jobs, summed wall and CPU seconds, the longest job's wall.

    Why CPU time beside wall: on a shared or busy machine a job's wall time includes waiting for a
    core; its CPU time is what the stage costs, and the sum over stages is the run's compute.
    """
    cols = ["stage", "jobs", "wall_s", "cpu_time_s", "longest_job", "longest_wall_s"]
    if table.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for stage, g in table.groupby("stage"):
        top = g.loc[g["wall_s"].idxmax()] if g["wall_s"].notna().any() else g.iloc[0]
        rows.append({"stage": stage, "jobs": len(g), "wall_s": float(g["wall_s"].sum()), "cpu_time_s": float(g["cpu_time_s"].sum()),
                     "longest_job": top["job"], "longest_wall_s": float(top["wall_s"])})  # fmt: skip
    rank = {s: k for k, s in enumerate(STAGE_ORDER)}
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values("stage", key=lambda s: s.map(lambda v: (rank.get(v, len(rank)), v)), ignore_index=True)


def format_stage_times(table: pd.DataFrame, elapsed_s: float | None = None) -> str:
    """The end-of-run report: one line per stage (jobs, wall and CPU seconds summed, longest job), a total,
    and ``elapsed_s`` (this invocation's wall time, which also covers the unbenchmarked light jobs)."""
    per_stage = stage_times(table)
    lines = [f"{'stage':<13}{'jobs':>5}{'wall s':>10}{'CPU s':>10}  longest job"]
    for r in per_stage.itertuples():
        lines.append(f"{r.stage:<13}{r.jobs:>5}{r.wall_s:>10.1f}{r.cpu_time_s:>10.1f}  {r.longest_job} ({r.longest_wall_s:.1f} s)")
    lines.append(f"{'total':<13}{int(per_stage['jobs'].sum()):>5}{per_stage['wall_s'].sum():>10.1f}{per_stage['cpu_time_s'].sum():>10.1f}")
    if elapsed_s is not None:
        minutes, seconds = divmod(elapsed_s, 60.0)
        lines.append(f"this run took {int(minutes)} min {seconds:04.1f} s wall")
    return "\n".join(lines)


def stage_time_report(summary_csv: PathLike, elapsed_s: float | None = None) -> str:
    """:func:`format_stage_times` of the run's ``summary.csv`` (:func:`benchmark_summary_stage`'s output).

    A missing summary (a run that asked for another target) gives one line saying so, not an error:
    the report is printed after the work succeeded and must not turn that into a failure.
    """
    path = Path(summary_csv)
    if not path.exists():
        return f"per-stage times: {path} was not made by this run"
    return "per-stage times (Snakemake benchmark files, seconds):\n" + format_stage_times(pd.read_csv(path), elapsed_s)
