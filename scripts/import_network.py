"""Snakemake entry point: bring one network from the user's factory and weights file into the pipeline."""

from repmatch.backbone.stages import import_stage
from repmatch.jobs import snakemake_job

with snakemake_job(snakemake) as job:  # noqa: F821
    s = job.settings
    import_stage(model=job.wildcards.model, data=s.data, model_settings=s.model, device_spec=s.device,
                 split_json=job.input.split, source=job.input.source, checkpoint=job.output.checkpoint,
                 metrics_json=job.output.metrics, log=job.log)  # fmt: skip
