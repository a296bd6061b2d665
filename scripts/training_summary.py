"""Snakemake entry point: table and bar chart of every trained network's accuracy."""

from repmatch.summary import training_summary

training_summary(snakemake.input.metrics, snakemake.output.table, snakemake.output.figure)  # noqa: F821
