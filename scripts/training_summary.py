"""Snakemake entry point: one row per trained network, and the accuracy figure."""

from repmatch.backbone.stages import training_summary_stage
from repmatch.jobs import snakemake_job

with snakemake_job(snakemake) as job:  # noqa: F821
    training_summary_stage(metrics_files=list(job.input.metrics), table=job.output.table, figure_png=job.output.accuracy_png,
                           log=job.log)  # fmt: skip
