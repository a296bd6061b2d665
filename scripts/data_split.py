"""Snakemake entry point: record the seeded train/test/probe split."""

from repmatch.logs import job_logger
from repmatch.pipeline import make_split

splits = make_split(snakemake.params.data, snakemake.output[0])  # noqa: F821
job_logger("data_split", snakemake.log[0]).info(  # noqa: F821
    "%s: %d train, %d test, %d probe samples", splits.name, len(splits.train), len(splits.test), len(splits.probe)
)
