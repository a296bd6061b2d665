"""Snakemake entry point: concatenate the per-pair subspace-match tables."""

from repmatch.jobs import snakemake_job
from repmatch.subspace_match.stages import aggregate_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    aggregate_stage(tables=list(job.input.tables), simple_tables=list(job.input.simple), out_table=job.output.table,
                    out_simple=job.output.simple, log=job.log)  # fmt: skip
