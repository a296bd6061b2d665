"""Snakemake entry point: the whole stitching grid (DM, TLM, DM-init TLM) of one ordered model pair."""

from repmatch.stitching.stages import pair_stage

pair_stage(
    pair=snakemake.wildcards.pair,  # noqa: F821
    data_cfg=snakemake.params.data,  # noqa: F821
    stitch_cfg=snakemake.params.stitching,  # noqa: F821
    device_spec=snakemake.params.device,  # noqa: F821
    split_json=snakemake.input.split,  # noqa: F821
    checkpoint_a=snakemake.input.a,  # noqa: F821
    checkpoint_b=snakemake.input.b,  # noqa: F821
    out=snakemake.output[0],  # noqa: F821
    log_file=snakemake.log[0],  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
    model_layers=snakemake.params.model_layers,  # noqa: F821
)
