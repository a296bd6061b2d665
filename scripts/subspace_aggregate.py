"""Snakemake entry point: concatenate the per-pair subspace-match tables."""

from repmatch.jobs import snakemake_job
from repmatch.subspace_match.stages import aggregate_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    aggregate_stage(list(job.input.tables), list(job.input.simple), job.output.table, job.output.simple, job.log)
