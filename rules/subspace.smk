# Neuron activation subspace match (Wang et al., NeurIPS 2018):
#   one job per unordered pair of different networks -> aggregate -> figures.
# Library: repmatch.subspace_match (docs/subspace-match.md).


rule subspace_pair:
    input:
        unpack(pair_subspace_activations),
    output:
        table=paths.pair_table("subspace_match", "{pair}"),
        simple=paths.subspace_simple_table("{pair}"),
    log:
        paths.log("subspace", "{pair}"),
    benchmark:
        paths.benchmark("subspace", "{pair}")
    conda:
        "../envs/torch.yaml"
    threads: SETTINGS.subspace_match.threads
    params:
        subspace=result_params(SETTINGS.subspace_match, "within_network"),
        level=SETTINGS.uncertainty.level,
    script:
        "../scripts/subspace_pair.py"


rule subspace_aggregate:
    input:
        tables=[paths.pair_table("subspace_match", p) for p in SUBSPACE_PAIRS],
        simple=[paths.subspace_simple_table(p) for p in SUBSPACE_PAIRS],
    output:
        table=paths.aggregate("subspace_match"),
        simple=paths.subspace_simple_aggregate(),
    log:
        paths.log("subspace", "aggregate"),
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/subspace_aggregate.py"


rule subspace_figures:
    input:
        table=paths.aggregate("subspace_match"),
        simple=paths.subspace_simple_aggregate(),
    output:
        **figure_outputs("subspace", paths.SUBSPACE_FIGURE_NAMES, "../report/subspace.rst", "Subspace match"),
    log:
        paths.log("subspace", "figures"),
    conda:
        "../envs/tables.yaml"
    params:
        level=SETTINGS.uncertainty.level,
    script:
        "../scripts/subspace_figures.py"
