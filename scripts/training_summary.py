"""Snakemake entry point: one row per trained network, and the accuracy figure."""

from repmatch.backbone.stages import training_summary_stage
from repmatch.jobs import snakemake_job

with snakemake_job(snakemake) as job:  # noqa: F821
    training_summary_stage(list(job.input.metrics), job.output.table, job.output.accuracy_png, job.log)
