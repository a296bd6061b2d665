"""Snakemake entry point: every similarity measure on every layer pair of one model pair (+ bootstrap intervals)."""

import dataclasses

from repmatch.jobs import snakemake_job
from repmatch.naming import parse_pair_id
from repmatch.sensitivity.pairs import specificity_extra_models
from repmatch.similarity.stages import pair_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    model_a, model_b = parse_pair_id(job.wildcards.pair)
    uncertainty = job.settings.uncertainty
    if {model_a, model_b} & set(specificity_extra_models(job.settings)):  # a specificity-only pair: no intervals needed
        uncertainty = dataclasses.replace(uncertainty, bootstrap=0)
    pair_stage(settings=job.settings.similarity, uncertainty=uncertainty, device_spec=job.settings.device,
               model_a=model_a, model_b=model_b, cache_a=job.input.a, cache_b=job.input.b, out=job.output[0],
               log=job.log)  # fmt: skip
