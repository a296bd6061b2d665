"""Snakemake entry point: cache the probe-set activations of one trained network."""

from repmatch.backbone.stages import activations_stage
from repmatch.jobs import snakemake_job

with snakemake_job(snakemake) as job:  # noqa: F821
    s = job.settings
    activations_stage(model=job.wildcards.model, data=s.data, model_settings=s.model, activations=s.activations,
                      device_spec=s.device, split_json=job.input.split, checkpoint=job.input.checkpoint,
                      metrics_json=job.input.metrics, out_dir=job.output[0], log=job.log)  # fmt: skip
