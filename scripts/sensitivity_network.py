"""Snakemake entry point: the sensitivity test (low-rank probes and indices) of one network."""

import dataclasses

from repmatch.jobs import snakemake_job
from repmatch.sensitivity.pairs import sensitivity_layers, specificity_extra_models
from repmatch.sensitivity.stages import sensitivity_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    s = job.settings
    sensitivity = s.sensitivity
    if job.wildcards.model in specificity_extra_models(s):  # trained for the specificity test: its full-rank scores only
        sensitivity = dataclasses.replace(sensitivity, ranks=())
    sensitivity_stage(job.wildcards.model, s.data, sensitivity_layers(s), sensitivity, s.similarity, s.stitching.dm,
                      s.activations.batch_size, s.device, job.input.split, job.input.checkpoint, job.input.metrics,
                      job.output.table, job.output.summary, job.log,
                      curves_stem=job.output.curves_png[: -len(".png")])  # fmt: skip
