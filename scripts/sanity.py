"""Snakemake entry point: "more similar than itself", specificity and within vs cross seed of every family."""

from repmatch.jobs import snakemake_job
from repmatch.sanity import sanity_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    sanity_stage(data=job.settings.data, uncertainty=job.settings.uncertainty, tables=dict(job.input.items()),
                 outputs=dict(job.output.items()), log=job.log)  # fmt: skip
