"""Snakemake entry point: train one network (resuming from its per-epoch state after a kill)."""

from repmatch import paths
from repmatch.backbone.stages import train_stage
from repmatch.jobs import snakemake_job

with snakemake_job(snakemake) as job:  # noqa: F821
    s, model = job.settings, job.wildcards.model
    train_stage(model, s.data, s.train, s.device, job.input.split, job.output.checkpoint, job.output.metrics, job.log, paths.train_state(model))
