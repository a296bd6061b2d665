"""Snakemake entry point: layer x layer heatmaps of every similarity measure."""

from repmatch.jobs import snakemake_job
from repmatch.similarity.stages import figures_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    figures_stage(job.settings.similarity, job.settings.uncertainty, job.input[0], dict(job.output.items()), job.log)
