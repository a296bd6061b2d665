"""Snakemake entry point: concatenate the per-pair similarity tables."""

from repmatch.jobs import snakemake_job
from repmatch.similarity.stages import aggregate_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    aggregate_stage(pair_tables=list(job.input), out=job.output[0], log=job.log)
