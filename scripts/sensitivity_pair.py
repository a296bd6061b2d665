"""Snakemake entry point: DM and TLM from the rank-r fronts of A into B, and every index (one ordered pair)."""

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
    pair_stage(model_a, model_b, s.data, sensitivity_layers(s), sensitivity, s.similarity, s.stitching, s.device,
               job.input.split, (job.input.a, job.input.b), (job.input.metrics_a, job.input.metrics_b), job.output[0],
               job.log)  # fmt: skip
