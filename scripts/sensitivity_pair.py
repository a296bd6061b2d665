"""Snakemake entry point: the cross-network sensitivity test, DM and TLM from the rank-r layers of A into B,
and every index (one ordered pair)."""

from repmatch.jobs import snakemake_job
from repmatch.naming import parse_pair_id
from repmatch.sensitivity.pairs import pair_job_settings, sensitivity_layers
from repmatch.sensitivity.stages import pair_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    s = job.settings
    model_a, model_b = parse_pair_id(job.wildcards.pair)
    pair_stage(model_a=model_a, model_b=model_b, data=s.data, layer_names=sensitivity_layers(s),
               sensitivity=pair_job_settings(s, job.wildcards.pair),
               similarity=s.similarity, stitching=s.stitching, device_spec=s.device, split_json=job.input.split,
               checkpoints=(job.input.a, job.input.b), metrics=(job.input.metrics_a, job.input.metrics_b),
               table=job.output[0], log=job.log)  # fmt: skip
