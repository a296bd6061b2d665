"""Snakemake entry point: layer x layer heatmaps of every similarity measure."""

from repmatch.jobs import snakemake_job
from repmatch.similarity.stages import figures_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    figures_stage(settings=job.settings.similarity, uncertainty=job.settings.uncertainty, table=job.input[0],
                  outputs=dict(job.output.items()), log=job.log)  # fmt: skip
