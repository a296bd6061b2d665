"""Snakemake entry point: every similarity measure on every layer pair of one model pair."""

from repmatch.naming import parse_pair_id
from repmatch.similarity.stage import similarity_pair_stage

model_a, model_b = parse_pair_id(snakemake.wildcards.pair)  # noqa: F821
similarity_pair_stage(
    cache_a=snakemake.input.a,  # noqa: F821
    cache_b=snakemake.input.b,  # noqa: F821
    model_a=model_a,
    model_b=model_b,
    cfg=snakemake.params.similarity,  # noqa: F821
    device_spec=snakemake.params.device,  # noqa: F821
    out=snakemake.output[0],  # noqa: F821
    log_file=snakemake.log[0],  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
)
