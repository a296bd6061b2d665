# Model stitching (DM vs TLM): one job per ordered model pair -> aggregate -> layer distance -> figures.
# Library: repmatch.stitching (docs/stitching.md).


rule stitching_pair:
    input:
        unpack(pair_checkpoints),
        split=paths.split(),
    output:
        paths.pair_table("stitching", "{pair}"),
    log:
        paths.log("stitching", "{pair}"),
    benchmark:
        paths.benchmark("stitching", "{pair}")
    priority: 10  # the longest jobs: start them first, the short ones fill the other cores around them
    conda:
        "../envs/torch.yaml"
    threads: SETTINGS.stitching.threads
    params:
        data=SETTINGS.data.result_params(),
        stitching=result_params(SETTINGS.stitching, "pairs", "layers"),
        layers=stitching_layers(SETTINGS),
        uncertainty={"level": SETTINGS.uncertainty.level, "mcnemar": SETTINGS.uncertainty.mcnemar},
    script:
        "../scripts/stitching_pair.py"


rule stitching_aggregate:
    input:
        [paths.pair_table("stitching", p) for p in STITCHING_PAIRS],
    output:
        paths.aggregate("stitching"),
    log:
        paths.log("stitching", "aggregate"),
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/stitching_aggregate.py"


rule stitching_distance:
    input:
        paths.aggregate("stitching"),
    output:
        paths.stitching_distance(),
    log:
        paths.log("stitching", "distance"),
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/stitching_distance.py"


rule stitching_figures:
    input:
        table=paths.aggregate("stitching"),
        distance=paths.stitching_distance(),
    output:
        **figure_outputs(
            "stitching",
            paths.stitching_figure_names(pair_kinds(STITCHING_PAIRS)),
            "../report/stitching.rst",
            "Model stitching",
        ),
    log:
        paths.log("stitching", "figures"),
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/stitching_figures.py"
