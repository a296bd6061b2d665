"""Snakemake entry point: sensitivity over seeds, the specificity test, the summary table and figure."""

from repmatch.jobs import snakemake_job
from repmatch.sensitivity.pairs import sensitivity_layers
from repmatch.sensitivity.stages import aggregate_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    o = job.output
    aggregate_stage(list(job.input.pairs), list(job.input.networks), job.input.sanity, job.settings.uncertainty.level,
                    o.units, o.points, o.summary, o.sensitivity_vs_specificity_png, job.log,
                    similarity_tables=list(job.input.similarity), layers=sensitivity_layers(job.settings),
                    n_permutations=job.settings.uncertainty.n_permutations, seed=job.settings.uncertainty.seed,
                    by_layer_csv=o.by_layer, specificity_csv=o.specificity,
                    dm_pair_tables=list(job.input.dm_pairs))  # fmt: skip
