"""Snakemake entry point: record the seeded train/test/probe split."""

from repmatch.backbone.stages import split_stage
from repmatch.jobs import snakemake_job

with snakemake_job(snakemake) as job:  # noqa: F821
    split_stage(data=job.settings.data, out_json=job.output[0], log=job.log)
