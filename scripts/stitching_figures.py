"""Snakemake entry point: stitching accuracy grids and accuracy-vs-layer-distance curves (PNG + PDF)."""

from repmatch.jobs import snakemake_job
from repmatch.stitching.stages import figures_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    figures_stage(table=job.input.table, distance_csv=job.input.distance, outputs=dict(job.output.items()), log=job.log)
