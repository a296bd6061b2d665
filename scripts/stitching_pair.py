"""Snakemake entry point: the whole stitching grid (DM, TLM, DM-init TLM) of one ordered model pair."""

from repmatch.jobs import snakemake_job
from repmatch.naming import parse_pair_id
from repmatch.stitching.pairs import stitching_layers
from repmatch.stitching.stages import pair_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    s = job.settings
    model_a, model_b = parse_pair_id(job.wildcards.pair)
    pair_stage(s.stitching, s.data, stitching_layers(s), s.device, model_a, model_b, job.input.split,
               (job.input.a, job.input.b), (job.input.metrics_a, job.input.metrics_b), job.output[0], job.log, s.uncertainty)  # fmt: skip
