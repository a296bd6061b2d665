"""Snakemake entry point: layer x layer heatmaps of every similarity measure."""

from pathlib import Path

from repmatch.similarity.summary import similarity_figures_stage

similarity_figures_stage(
    table=snakemake.input[0],  # noqa: F821
    out_dir=Path(snakemake.output[0]).parent,  # noqa: F821
    measures=snakemake.params.measures,  # noqa: F821
    expected=list(snakemake.output),  # noqa: F821
    log_file=snakemake.log[0],  # noqa: F821
)
