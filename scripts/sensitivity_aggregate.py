"""Snakemake entry point: sensitivity over seeds, the specificity test, the summary table and figure."""

from repmatch.jobs import snakemake_job
from repmatch.sensitivity.pairs import sensitivity_layers
from repmatch.sensitivity.stages import aggregate_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    o = job.output
    aggregate_stage(pair_tables=list(job.input.pairs), network_tables=list(job.input.networks),
                    sanity_specificity=job.input.sanity, level=job.settings.uncertainty.level, units_csv=o.units,
                    points_csv=o.points, summary_csv=o.summary, figure_png=o.sensitivity_vs_specificity_png,
                    log=job.log, similarity_tables=list(job.input.similarity), layers=sensitivity_layers(job.settings),
                    n_permutations=job.settings.uncertainty.n_permutations, seed=job.settings.uncertainty.seed,
                    by_layer_csv=o.by_layer, specificity_csv=o.specificity,
                    dm_pair_tables=list(job.input.dm_pairs))  # fmt: skip
