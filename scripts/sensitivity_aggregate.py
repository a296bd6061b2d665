"""Snakemake entry point: sensitivity over seeds, the specificity test, the summary table and figure."""

from repmatch.jobs import snakemake_job
from repmatch.sensitivity.stages import aggregate_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    o = job.output
    aggregate_stage(list(job.input.pairs), list(job.input.networks), job.input.sanity, job.settings.uncertainty.level,
                    o.units, o.points, o.summary, o.sensitivity_vs_specificity_png, job.log)  # fmt: skip
