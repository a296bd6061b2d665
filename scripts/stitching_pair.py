"""Snakemake entry point: the whole stitching grid (DM, TLM, DM-init TLM) of one ordered model pair."""

from repmatch.jobs import snakemake_job
from repmatch.naming import parse_pair_id
from repmatch.stitching.pairs import stitching_layers
from repmatch.stitching.stages import pair_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    s = job.settings
    model_a, model_b = parse_pair_id(job.wildcards.pair)
    pair_stage(settings=s.stitching, data=s.data, layers=stitching_layers(s), device_spec=s.device, model_a=model_a,
               model_b=model_b, split_json=job.input.split, checkpoints=(job.input.a, job.input.b),
               metrics=(job.input.metrics_a, job.input.metrics_b), out=job.output[0], log=job.log,
               uncertainty=s.uncertainty)  # fmt: skip
