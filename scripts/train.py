"""Snakemake entry point: train one network (resuming from its per-epoch state after a kill)."""

from repmatch import paths
from repmatch.backbone.stages import train_stage
from repmatch.jobs import snakemake_job

with snakemake_job(snakemake) as job:  # noqa: F821
    s, model = job.settings, job.wildcards.model
    train_stage(model=model, data=s.data, train=s.train, device_spec=s.device, split_json=job.input.split,
                checkpoint=job.output.checkpoint, metrics_json=job.output.metrics, log=job.log,
                state_path=paths.train_state(model))  # fmt: skip
