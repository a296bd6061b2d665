"""Snakemake entry point: "more similar than itself" and specificity of every family, in one table."""

from repmatch.jobs import snakemake_job
from repmatch.sanity import sanity_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    sanity_stage(job.settings.data, dict(job.input.items()), dict(job.output.items()), job.log)
