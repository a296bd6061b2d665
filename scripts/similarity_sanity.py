"""Snakemake entry point: specificity and "more similar than itself" sanity tables."""

from repmatch.similarity.summary import similarity_sanity_stage

similarity_sanity_stage(
    table=snakemake.input[0],  # noqa: F821
    specificity_out=snakemake.output.specificity,  # noqa: F821
    self_out=snakemake.output.more_similar_than_itself,  # noqa: F821
    measures=snakemake.params.measures,  # noqa: F821
    log_file=snakemake.log[0],  # noqa: F821
)
