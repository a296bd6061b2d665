"""Snakemake entry point: stitched accuracy against layer distance."""

from repmatch.jobs import snakemake_job
from repmatch.stitching.stages import distance_stage

with snakemake_job(snakemake) as job:  # noqa: F821
    distance_stage(table=job.input[0], out=job.output[0], log=job.log)
