"""Snakemake entry point: stitching accuracy grids and accuracy-vs-layer-distance curves (PNG + PDF)."""

from repmatch.logs import job_logger
from repmatch.stitching.stages import figures_stage

written = figures_stage(
    table=snakemake.input.table,  # noqa: F821
    distance_csv=snakemake.input.distance,  # noqa: F821
    outputs=dict(snakemake.output.items()),  # noqa: F821
)
job_logger("stitching_figures", snakemake.log[0]).info("wrote %d figure files", len(written))  # noqa: F821
