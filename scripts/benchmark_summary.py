"""Snakemake entry point: wall time and peak memory of every heavy job, one table."""

from repmatch.benchmarks import benchmark_summary_stage, parse_benchmark_path
from repmatch.jobs import snakemake_job

with snakemake_job(snakemake) as job:  # noqa: F821
    benchmark_summary_stage(files={parse_benchmark_path(p): p for p in job.input}, out_csv=job.output[0], log=job.log)
