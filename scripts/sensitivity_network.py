"""Snakemake entry point: the within-network sensitivity test (low-rank probes and indices) of one network."""

from repmatch.jobs import snakemake_job
from repmatch.sensitivity.pairs import network_job_settings, sensitivity_layers
from repmatch.sensitivity.stages import sensitivity_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    s = job.settings
    sensitivity_stage(model=job.wildcards.model, data=s.data, layer_names=sensitivity_layers(s),
                      sensitivity=network_job_settings(s, job.wildcards.model),
                      similarity=s.similarity, dm=s.stitching.dm, batch_size=s.activations.batch_size,
                      device_spec=s.device, split_json=job.input.split, checkpoint=job.input.checkpoint,
                      metrics_json=job.input.metrics, table=job.output.table, summary=job.output.summary, log=job.log,
                      curves_stem=job.output.curves_png[: -len(".png")])  # fmt: skip
