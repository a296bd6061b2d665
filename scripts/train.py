"""Snakemake entry point: train one network."""

from repmatch.backbone.stages import train_stage
from repmatch.jobs import snakemake_job

with snakemake_job(snakemake) as job:  # noqa: F821
    s = job.settings
    train_stage(job.wildcards.model, s.data, s.train, s.device, job.input.split, job.output.checkpoint, job.output.metrics, job.log)
