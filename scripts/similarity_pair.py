"""Snakemake entry point: every similarity measure on every layer pair of one model pair (+ bootstrap intervals)."""

from repmatch.jobs import snakemake_job
from repmatch.naming import parse_pair_id
from repmatch.similarity.stages import pair_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    model_a, model_b = parse_pair_id(job.wildcards.pair)
    pair_stage(job.settings.similarity, job.settings.uncertainty, job.settings.device, model_a, model_b, job.input.a,
               job.input.b, job.output[0], job.log)  # fmt: skip
