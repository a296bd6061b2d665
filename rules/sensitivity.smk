# Ding et al.'s sensitivity and specificity tests. Library: repmatch.sensitivity
# (docs/sensitivity.md). Off by default in the schema (sensitivity.enabled).
# sensitivity_network: per network, each layer's rank-r representation (top-r principal directions
# fitted on the training split) -> probe and network accuracy, every index rank-r vs full.
# sensitivity_pair: per ordered network pair (A = B included), DM and TLM from A's rank-r layer into
# B's layer, and every index A rank-r vs B full. sensitivity_aggregate: sensitivity over seeds with
# t intervals, the specificity test per layer (indices from the similarity pair jobs of every pair of
# sensitivity.specificity_seeds networks, DM/TLM from the pair jobs), one summary table and the figure.
# Networks trained only for the specificity test get a full-rank-only network job (their probe and
# network accuracy at each layer; scripts/sensitivity_network.py), and the pairs of specificity
# networks that no pair job covers a DM-only, full-rank-only pair job (scripts/sensitivity_pair.py).


rule sensitivity_network:
    input:
        split=paths.split(),
        checkpoint=paths.checkpoint("{model}"),
        metrics=paths.metrics("{model}"),
    output:
        **paths.sensitivity_curves("{model}"),
        table=paths.sensitivity_table("{model}"),
        summary=paths.sensitivity_summary("{model}"),
    log:
        paths.log("sensitivity", "{model}"),
    benchmark:
        paths.benchmark("sensitivity", "{model}")
    conda:
        "../envs/torch.yaml"
    threads: SETTINGS.sensitivity.threads
    params:
        data=SETTINGS.data.result_params(),
        layers=sensitivity_layers(SETTINGS),
        sensitivity=result_params(
            SETTINGS.sensitivity,
            "enabled",
            "pairs",
            "layers",
            "stitch_methods",
            "tlm_epochs",
            "tlm_n_train",
            "specificity_seeds",
        ),
        similarity=result_params(SETTINGS.similarity),
        dm_ridge=SETTINGS.stitching.dm.ridge,
        batch_size=SETTINGS.activations.batch_size,
    script:
        "../scripts/sensitivity_network.py"


rule sensitivity_pair:
    input:
        unpack(pair_checkpoints),
        split=paths.split(),
    output:
        paths.sensitivity_pair_table("{pair}"),
    log:
        paths.log("sensitivity", "{pair}"),
    benchmark:
        paths.benchmark("sensitivity", "{pair}")
    conda:
        "../envs/torch.yaml"
    threads: SETTINGS.sensitivity.threads
    params:
        data=SETTINGS.data.result_params(),
        layers=sensitivity_layers(SETTINGS),
        sensitivity=result_params(
            SETTINGS.sensitivity,
            "enabled",
            "pairs",
            "layers",
            "probe_epochs",
            "probe_lr",
            "probe_batch_size",
            "probe_weight_decay",
            "specificity_seeds",
        ),
        similarity=result_params(SETTINGS.similarity),
        stitching=result_params(SETTINGS.stitching, "pairs", "layers", "methods", "detector"),
    script:
        "../scripts/sensitivity_pair.py"


rule sensitivity_aggregate:
    input:
        pairs=[paths.sensitivity_pair_table(p) for p in SENSITIVITY_PAIRS],
        networks=[paths.sensitivity_table(m) for m in SENSITIVITY_MODELS + SPECIFICITY_EXTRA],
        similarity=[paths.pair_table("similarity", p) for p in SPECIFICITY_SIMILARITY_PAIRS],
        dm_pairs=[paths.sensitivity_pair_table(p) for p in SPECIFICITY_DM_PAIRS],
        sanity=paths.sanity("specificity"),
    output:
        **figure_outputs(
            "sensitivity",
            paths.SENSITIVITY_FIGURE_NAMES,
            "../report/sensitivity.rst",
            "Sensitivity and specificity",
        ),
        units=paths.sensitivity_units(),
        points=paths.sensitivity_specificity_points(),
        by_layer=paths.sensitivity_specificity_by_layer(),
        specificity=paths.sensitivity_specificity_stratified(),
        summary=paths.sensitivity_overview(),
    log:
        paths.log("sensitivity", "aggregate"),
    conda:
        "../envs/tables.yaml"
    params:
        level=SETTINGS.uncertainty.level,
        layers=sensitivity_layers(SETTINGS),
        n_permutations=SETTINGS.uncertainty.n_permutations,
        seed=SETTINGS.uncertainty.seed,
    script:
        "../scripts/sensitivity_aggregate.py"
