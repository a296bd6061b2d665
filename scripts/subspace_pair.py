"""Snakemake entry point: subspace match of one model pair over the ε sweep."""

from repmatch.jobs import snakemake_job
from repmatch.naming import parse_pair_id
from repmatch.subspace_match.stages import pair_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    model_a, model_b = parse_pair_id(job.wildcards.pair)
    pair_stage(job.settings.subspace_match, job.settings.device, model_a, model_b, job.input.a, job.input.b,
               job.output.table, job.output.simple, job.log, level=job.settings.uncertainty.level)  # fmt: skip
