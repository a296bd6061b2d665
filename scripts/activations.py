"""Snakemake entry point: cache the probe-set activations of one trained network."""

from repmatch.backbone.stages import activations_stage
from repmatch.jobs import snakemake_job

with snakemake_job(snakemake) as job:  # noqa: F821
    s = job.settings
    subspace = s.subspace_match if job.rule == "subspace_activations" else None  # the subspace match's own probe set
    activations_stage(job.wildcards.model, s.data, s.model, s.activations, s.device, job.input.split,
                      job.input.checkpoint, job.input.metrics, job.output[0], job.log, subspace)  # fmt: skip
