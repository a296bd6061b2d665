"""Snakemake entry point: maximum match vs ε and simple-match sizes."""

from repmatch.jobs import snakemake_job
from repmatch.subspace_match.stages import figures_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    figures_stage(table=job.input.table, simple=job.input.simple, outputs=dict(job.output.items()), log=job.log,
                  level=job.settings.uncertainty.level)  # fmt: skip
