# Ding et al.'s sensitivity test (issue 12): per network, each layer's rank-r representation
# (top-r principal directions fitted on the training split) -> probe and network accuracy, and
# every index's dissimilarity rank-r vs full; rank correlations per index.
# Library: repmatch.sensitivity (docs/notes/issue12.md). Off by default (sensitivity.enabled).


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
    conda:
        "../envs/torch.yaml"
    threads: SETTINGS.sensitivity.threads
    params:
        data=SETTINGS.data.result_params(),
        layers=SETTINGS.model.layer_names,
        sensitivity=result_params(SETTINGS.sensitivity, "enabled"),
        similarity=result_params(SETTINGS.similarity),
        dm_ridge=SETTINGS.stitching.dm.ridge,
        batch_size=SETTINGS.activations.batch_size,
    script:
        "../scripts/sensitivity_network.py"
