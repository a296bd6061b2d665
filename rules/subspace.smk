# Stage: neuron activation subspace match (Wang et al., NeurIPS 2018).
#   one job per unordered pair of different networks -> tidy tables -> aggregate -> figures
# Settings: the `subspace_match` section of config.yaml (defaults in config/schema.yaml).

SUBSPACE = config.get("subspace_match", {})
SUBSPACE_PAIRS = [
    pair_id(a, b) for a, b in unordered_pairs(MODELS) if a != b or SUBSPACE.get("within_network", False)
]


rule subspace_pair:
    input:
        unpack(pair_activations),
    output:
        table=f"{RESULTS}/subspace/pairs/{{pair}}.parquet",
        simple=f"{RESULTS}/subspace/pairs/{{pair}}.simple.parquet",
    params:
        subspace=SUBSPACE,
        device=config.get("device", "auto"),
    threads: int(SUBSPACE.get("threads", 1))
    resources:
        gpu=GPUS_PER_JOB,
    log:
        f"{RESULTS}/logs/subspace/{{pair}}.log",
    conda:
        "../envs/subspace.yaml"
    script:
        "../scripts/subspace_pair.py"


rule subspace_aggregate:
    input:
        tables=expand(f"{RESULTS}/subspace/pairs/{{pair}}.parquet", pair=SUBSPACE_PAIRS),
        simple=expand(f"{RESULTS}/subspace/pairs/{{pair}}.simple.parquet", pair=SUBSPACE_PAIRS),
    output:
        table=f"{RESULTS}/subspace/subspace.parquet",
        simple=f"{RESULTS}/subspace/subspace_simple.parquet",
    log:
        f"{RESULTS}/logs/subspace/aggregate.log",
    conda:
        "../envs/subspace.yaml"
    script:
        "../scripts/subspace_aggregate.py"


rule subspace_figures:
    input:
        table=rules.subspace_aggregate.output.table,
        simple=rules.subspace_aggregate.output.simple,
    output:
        eps_png=report(
            f"{RESULTS}/figures/subspace/max_match_vs_eps.png",
            caption="../report/subspace.rst",
            category="Subspace match",
        ),
        eps_pdf=f"{RESULTS}/figures/subspace/max_match_vs_eps.pdf",
        sizes_png=report(
            f"{RESULTS}/figures/subspace/simple_match_sizes.png",
            caption="../report/subspace.rst",
            category="Subspace match",
        ),
        sizes_pdf=f"{RESULTS}/figures/subspace/simple_match_sizes.pdf",
    log:
        f"{RESULTS}/logs/subspace/figures.log",
    conda:
        "../envs/subspace.yaml"
    script:
        "../scripts/subspace_figures.py"


register_targets(rules.subspace_aggregate.output)
register_targets(rules.subspace_figures.output)
