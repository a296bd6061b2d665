"""Snakemake entry point: train one (arch, seed) network."""

from repmatch.pipeline import train_stage

train_stage(
    model=snakemake.wildcards.model,  # noqa: F821
    data_cfg=snakemake.params.data,  # noqa: F821
    train_cfg=snakemake.params.train,  # noqa: F821
    device_spec=snakemake.params.device,  # noqa: F821
    split_json=snakemake.input.split,  # noqa: F821
    checkpoint=snakemake.output.checkpoint,  # noqa: F821
    metrics_json=snakemake.output.metrics,  # noqa: F821
    log_file=snakemake.log[0],  # noqa: F821
)
