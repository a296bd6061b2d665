"""Snakemake entry point: "more similar than itself" counts and accuracy vs layer distance."""

from repmatch.logs import job_logger
from repmatch.stitching.stages import analysis_stage

analysis_stage(
    table=snakemake.input[0],  # noqa: F821
    more_similar_csv=snakemake.output.more_similar,  # noqa: F821
    distance_csv=snakemake.output.distance,  # noqa: F821
    summary_csv=snakemake.output.summary,  # noqa: F821
)
job_logger("stitching_analysis", snakemake.log[0]).info("wrote %s", ", ".join(snakemake.output))  # noqa: F821
