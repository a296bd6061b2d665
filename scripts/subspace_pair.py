"""Snakemake entry point: subspace match (maximum + simple matches) of one pair of networks."""

from repmatch.subspace_match.stage import subspace_pair_stage

subspace_pair_stage(
    pair=snakemake.wildcards.pair,  # noqa: F821
    path_a=snakemake.input.a,  # noqa: F821
    path_b=snakemake.input.b,  # noqa: F821
    cfg=snakemake.params.subspace,  # noqa: F821
    device_spec=snakemake.params.device,  # noqa: F821
    out_table=snakemake.output.table,  # noqa: F821
    out_simple=snakemake.output.simple,  # noqa: F821
    log_file=snakemake.log[0],  # noqa: F821
)
