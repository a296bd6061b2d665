"""Snakemake entry point: subspace match of one model pair over the ε sweep."""

from repmatch.jobs import snakemake_job
from repmatch.naming import parse_pair_id
from repmatch.subspace_match.stages import pair_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    model_a, model_b = parse_pair_id(job.wildcards.pair)
    pair_stage(settings=job.settings.subspace_match, device_spec=job.settings.device, model_a=model_a, model_b=model_b,
               cache_a=job.input.a, cache_b=job.input.b, out_table=job.output.table, out_simple=job.output.simple,
               log=job.log, level=job.settings.uncertainty.level)  # fmt: skip
