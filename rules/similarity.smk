# Similarity indices (CKA family, CCA family, Procrustes, regression R^2):
#   one job per unordered model pair (A == A included) -> aggregate -> heatmaps.
# Library: repmatch.similarity (docs/similarity.md).


rule similarity_pair:
    input:
        unpack(pair_activations),
    output:
        paths.pair_table("similarity", "{pair}"),
    log:
        paths.log("similarity", "{pair}"),
    benchmark:
        paths.benchmark("similarity", "{pair}")
    # after the stitching grids (10): the pair tables feed the longest figure job, which then runs
    # beside the remaining jobs instead of alone at the end
    priority: 5
    conda:
        "../envs/torch.yaml"
    threads: SETTINGS.similarity.threads
    params:
        similarity=result_params(SETTINGS.similarity),
        uncertainty=SETTINGS.uncertainty.bootstrap_params(),
    script:
        "../scripts/similarity_pair.py"


rule similarity_aggregate:
    input:
        [paths.pair_table("similarity", p) for p in SIMILARITY_PAIRS],
    output:
        paths.aggregate("similarity"),
    log:
        paths.log("similarity", "aggregate"),
    priority: 5
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/similarity_aggregate.py"


rule similarity_figures:
    input:
        paths.aggregate("similarity"),
    output:
        **figure_outputs(
            "similarity",
            paths.similarity_figure_names(SETTINGS.similarity.measures),
            "../report/similarity.rst",
            "Similarity indices",
        ),
    log:
        paths.log("similarity", "figures"),
    priority: 5
    conda:
        "../envs/tables.yaml"
    params:
        level=SETTINGS.uncertainty.level,
    script:
        "../scripts/similarity_figures.py"
