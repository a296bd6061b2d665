"""Snakemake entry point: cache the activations of one trained network on the subspace match's own probe set."""

from repmatch.backbone.stages import subspace_activations_stage
from repmatch.jobs import snakemake_job

with snakemake_job(snakemake) as job:  # noqa: F821
    s = job.settings
    subspace_activations_stage(model=job.wildcards.model, data=s.data, model_settings=s.model, activations=s.activations,
                               subspace=s.subspace_match, device_spec=s.device, split_json=job.input.split,
                               checkpoint=job.input.checkpoint, metrics_json=job.input.metrics, out_dir=job.output[0],
                               log=job.log)  # fmt: skip
