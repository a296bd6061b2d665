"""Snakemake entry point: bring one network from the user's factory and weights file into the pipeline."""

from repmatch.backbone.stages import import_stage
from repmatch.jobs import snakemake_job

with snakemake_job(snakemake) as job:  # noqa: F821
    s = job.settings
    import_stage(job.wildcards.model, s.data, s.model, s.device, job.input.split, job.input.source,
                 job.output.checkpoint, job.output.metrics, job.log)  # fmt: skip
