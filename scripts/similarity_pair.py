"""Snakemake entry point: every similarity measure on every layer pair of one model pair (+ bootstrap intervals)."""

from repmatch.jobs import snakemake_job
from repmatch.naming import parse_pair_id
from repmatch.sensitivity.pairs import similarity_job_uncertainty
from repmatch.similarity.stages import pair_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    model_a, model_b = parse_pair_id(job.wildcards.pair)
    pair_stage(settings=job.settings.similarity, uncertainty=similarity_job_uncertainty(job.settings, model_a, model_b),
               device_spec=job.settings.device, model_a=model_a, model_b=model_b, cache_a=job.input.a,
               cache_b=job.input.b, out=job.output[0], log=job.log)  # fmt: skip
