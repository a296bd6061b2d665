"""Snakemake entry point: concatenate the per-pair subspace-match tables."""

from repmatch.subspace_match.stage import subspace_aggregate_stage

subspace_aggregate_stage(
    tables=snakemake.input.tables,  # noqa: F821
    simple_tables=snakemake.input.simple,  # noqa: F821
    out_table=snakemake.output.table,  # noqa: F821
    out_simple=snakemake.output.simple,  # noqa: F821
    log_file=snakemake.log[0],  # noqa: F821
)
