# Stage: similarity indices (CKA family, CCA family, Procrustes, regression R^2).
#   one job per unordered model pair (A == A included: within-network grids) -> tidy tables
#   -> aggregate -> sanity tables (specificity, "more similar than itself") -> heatmaps
# Settings: the `similarity` section of config.yaml (defaults in config/schema.yaml). The measure
# names are checked against the registry here, at parse time (repmatch.similarity.registry is
# torch-free), so a typo fails before any job runs.

from repmatch.similarity.registry import DEFAULT_CONFIG as SIMILARITY_DEFAULTS, check_measures  # noqa: E402

SIMILARITY = {**SIMILARITY_DEFAULTS, **config.get("similarity", {})}
SIMILARITY_MEASURES = [m.name for m in check_measures(SIMILARITY["measures"])]
SIMILARITY_FIGURES = [
    f"{RESULTS}/figures/similarity/{measure}_{kind}.{ext}"
    for measure in SIMILARITY_MEASURES
    for kind in ("pairs", "cross_seed")
    for ext in ("png", "pdf")
]


rule similarity_pair:
    input:
        unpack(pair_activations),
    output:
        f"{RESULTS}/similarity/pairs/{{pair}}.parquet",
    params:
        similarity=SIMILARITY,
        device=config.get("device", "auto"),
    threads: int(SIMILARITY.get("threads", 1))
    resources:
        gpu=GPUS_PER_JOB,
    log:
        f"{RESULTS}/logs/similarity/{{pair}}.log",
    conda:
        "../envs/similarity.yaml"
    script:
        "../scripts/similarity_pair.py"


rule similarity_aggregate:
    input:
        expand(f"{RESULTS}/similarity/pairs/{{pair}}.parquet", pair=UNORDERED_PAIRS),
    output:
        f"{RESULTS}/similarity/similarity.parquet",
    log:
        f"{RESULTS}/logs/similarity/aggregate.log",
    conda:
        "../envs/similarity.yaml"
    script:
        "../scripts/similarity_aggregate.py"


rule similarity_sanity:
    input:
        rules.similarity_aggregate.output,
    output:
        specificity=f"{RESULTS}/sanity/similarity_specificity.csv",
        more_similar_than_itself=f"{RESULTS}/sanity/similarity_more_similar_than_itself.csv",
    params:
        measures=SIMILARITY_MEASURES,
    log:
        f"{RESULTS}/logs/similarity/sanity.log",
    conda:
        "../envs/figures.yaml"
    script:
        "../scripts/similarity_sanity.py"


rule similarity_figures:
    input:
        rules.similarity_aggregate.output,
    output:
        [
            report(path, caption="../report/similarity.rst", category="Similarity indices")
            for path in SIMILARITY_FIGURES
        ],
    params:
        measures=SIMILARITY_MEASURES,
    log:
        f"{RESULTS}/logs/similarity/figures.log",
    conda:
        "../envs/figures.yaml"
    script:
        "../scripts/similarity_figures.py"


register_targets(rules.similarity_aggregate.output)
register_targets(rules.similarity_sanity.output)
register_targets(rules.similarity_figures.output)
