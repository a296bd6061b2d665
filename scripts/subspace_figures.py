"""Snakemake entry point: maximum-match similarity vs ε, and simple-match size histograms."""

from repmatch.subspace_match.plotting import subspace_figures_stage

subspace_figures_stage(
    table=snakemake.input.table,  # noqa: F821
    simple=snakemake.input.simple,  # noqa: F821
    eps_figure=snakemake.output.eps_png,  # noqa: F821
    sizes_figure=snakemake.output.sizes_png,  # noqa: F821
    log_file=snakemake.log[0],  # noqa: F821
)
