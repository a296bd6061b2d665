"""Snakemake entry point: concatenate the per-pair stitching tables."""

from repmatch.logs import job_logger
from repmatch.stitching.stages import aggregate_stage

table = aggregate_stage(list(snakemake.input), snakemake.output[0])  # noqa: F821
job_logger("stitching_aggregate", snakemake.log[0]).info("%d rows from %d pair tables", len(table), len(snakemake.input))  # noqa: F821
