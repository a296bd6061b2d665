"""Snakemake entry point: concatenate the per-pair similarity tables."""

from repmatch.logs import job_logger
from repmatch.similarity.summary import similarity_aggregate_stage

df = similarity_aggregate_stage(list(snakemake.input), snakemake.output[0])  # noqa: F821
job_logger("similarity_aggregate", snakemake.log[0]).info("aggregated %d rows", len(df))  # noqa: F821
