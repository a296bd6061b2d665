"""Snakemake entry point: cache the probe-set activations of one trained network."""

from repmatch.pipeline import activations_stage

activations_stage(
    model=snakemake.wildcards.model,  # noqa: F821
    data_cfg=snakemake.params.data,  # noqa: F821
    layers_cfg=snakemake.params.layers,  # noqa: F821
    act_cfg=snakemake.params.activations,  # noqa: F821
    device_spec=snakemake.params.device,  # noqa: F821
    split_json=snakemake.input.split,  # noqa: F821
    checkpoint=snakemake.input.checkpoint,  # noqa: F821
    out_dir=snakemake.output[0],  # noqa: F821
    log_file=snakemake.log[0],  # noqa: F821
)
