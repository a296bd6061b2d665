"""Snakemake entry point: the within-network sensitivity test (low-rank probes and indices) of one network."""

import dataclasses

from repmatch.jobs import snakemake_job
from repmatch.sensitivity.pairs import sensitivity_layers, specificity_extra_models
from repmatch.sensitivity.stages import sensitivity_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    s = job.settings
    sensitivity = s.sensitivity
    if job.wildcards.model in specificity_extra_models(s):  # trained for the specificity test: its full-rank scores only
        sensitivity = dataclasses.replace(sensitivity, ranks=())
    sensitivity_stage(model=job.wildcards.model, data=s.data, layer_names=sensitivity_layers(s), sensitivity=sensitivity,
                      similarity=s.similarity, dm=s.stitching.dm, batch_size=s.activations.batch_size,
                      device_spec=s.device, split_json=job.input.split, checkpoint=job.input.checkpoint,
                      metrics_json=job.input.metrics, table=job.output.table, summary=job.output.summary, log=job.log,
                      curves_stem=job.output.curves_png[: -len(".png")])  # fmt: skip
