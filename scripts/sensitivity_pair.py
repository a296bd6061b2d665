"""Snakemake entry point: the cross-network sensitivity test, DM and TLM from the rank-r layers of A into B,
and every index (one ordered pair)."""

import dataclasses

from repmatch.jobs import snakemake_job
from repmatch.naming import parse_pair_id
from repmatch.sensitivity.pairs import sensitivity_layers, specificity_dm_pairs
from repmatch.sensitivity.stages import pair_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    s = job.settings
    model_a, model_b = parse_pair_id(job.wildcards.pair)
    sensitivity = s.sensitivity
    if job.wildcards.pair in specificity_dm_pairs(s):  # for the specificity test only: DM at full rank
        sensitivity = dataclasses.replace(sensitivity, ranks=(), stitch_methods=("dm",), measures=())
    pair_stage(model_a=model_a, model_b=model_b, data=s.data, layer_names=sensitivity_layers(s), sensitivity=sensitivity,
               similarity=s.similarity, stitching=s.stitching, device_spec=s.device, split_json=job.input.split,
               checkpoints=(job.input.a, job.input.b), metrics=(job.input.metrics_a, job.input.metrics_b),
               table=job.output[0], log=job.log)  # fmt: skip
