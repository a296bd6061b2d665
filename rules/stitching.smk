# Stage: model stitching (DM vs TLM), one job per ordered model pair -> aggregate -> analyses -> figures.
# Library: repmatch.stitching (README, "Model stitching").

from repmatch.stitching.pairs import stitching_pairs  # noqa: E402

STITCH = config.get("stitching", {})
STITCH_PAIRS = stitching_pairs(MODELS, STITCH.get("pairs"))
# A pair's result depends on everything in the section but the pair selection and the thread count.
STITCH_PARAMS = {k: v for k, v in STITCH.items() if k not in ("pairs", "threads")}
STITCH_KINDS = sorted({"within" if a == b else "cross" for a, b in (p.split("__") for p in STITCH_PAIRS)})
STITCH_FIGS = f"{RESULTS}/figures/stitching"
# Figure outputs by name: {within,cross}_{png,pdf} for the grid kinds present, distance_{png,pdf}.
STITCH_FIGURES = {
    **{f"{kind}_{fmt}": f"{STITCH_FIGS}/{kind}_accuracy_grids.{fmt}" for kind in STITCH_KINDS for fmt in ("png", "pdf")},
    **{f"distance_{fmt}": f"{STITCH_FIGS}/accuracy_vs_layer_distance.{fmt}" for fmt in ("png", "pdf")},
}


rule stitching_pair:
    input:
        unpack(pair_checkpoints),
        split=f"{RESULTS}/data/split.json",
    output:
        f"{RESULTS}/stitching/pairs/{{pair}}.parquet",
    params:
        data=config["data"],
        stitching=STITCH_PARAMS,
        model_layers=config["model"].get("layers", "all"),
        device=config.get("device", "auto"),
    threads: STITCH.get("threads", 1)
    resources:
        gpu=GPUS_PER_JOB,
    log:
        f"{RESULTS}/logs/stitching/{{pair}}.log",
    conda:
        "../envs/stitching.yaml"
    script:
        "../scripts/stitching_pair.py"


rule stitching_aggregate:
    input:
        expand(f"{RESULTS}/stitching/pairs/{{pair}}.parquet", pair=STITCH_PAIRS),
    output:
        f"{RESULTS}/stitching/stitching.parquet",
    log:
        f"{RESULTS}/logs/stitching/aggregate.log",
    conda:
        "../envs/stitching.yaml"
    script:
        "../scripts/stitching_aggregate.py"


rule stitching_analysis:
    input:
        f"{RESULTS}/stitching/stitching.parquet",
    output:
        more_similar=f"{RESULTS}/sanity/stitching_more_similar_than_itself.csv",
        summary=f"{RESULTS}/sanity/stitching_more_similar_summary.csv",
        distance=f"{RESULTS}/stitching/accuracy_vs_layer_distance.csv",
    log:
        f"{RESULTS}/logs/stitching/analysis.log",
    conda:
        "../envs/stitching.yaml"
    script:
        "../scripts/stitching_analysis.py"


rule stitching_figures:
    input:
        table=f"{RESULTS}/stitching/stitching.parquet",
        distance=f"{RESULTS}/stitching/accuracy_vs_layer_distance.csv",
    output:
        **{k: report(v, caption="../report/stitching.rst", category="Model stitching") for k, v in STITCH_FIGURES.items()},
    log:
        f"{RESULTS}/logs/stitching/figures.log",
    conda:
        "../envs/stitching.yaml"
    script:
        "../scripts/stitching_figures.py"


if STITCH_PAIRS:
    register_targets(
        [
            f"{RESULTS}/stitching/stitching.parquet",
            f"{RESULTS}/sanity/stitching_more_similar_than_itself.csv",
            f"{RESULTS}/stitching/accuracy_vs_layer_distance.csv",
        ]
        + list(STITCH_FIGURES.values())
    )
