"""Snakemake entry point: maximum match vs ε and simple-match sizes."""

from repmatch.jobs import snakemake_job
from repmatch.subspace_match.stages import figures_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    figures_stage(job.input.table, job.input.simple, dict(job.output.items()), job.log, level=job.settings.uncertainty.level)
