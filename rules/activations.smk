# Stage 3: the probe-set activations of every configured layer, cached once per model.


rule activations:
    input:
        split=paths.split(),
        checkpoint=paths.checkpoint("{model}"),
        metrics=paths.metrics("{model}"),  # the checkpoint's recorded sha256
    output:
        directory(paths.activations("{model}")),
    log:
        paths.log("activations", "{model}"),
    benchmark:
        paths.benchmark("activations", "{model}")
    conda:
        "../envs/torch.yaml"
    params:
        data=SETTINGS.data.result_params(),
        layers=SETTINGS.model.layer_names,
        activations=result_params(SETTINGS.activations),
    script:
        "../scripts/activations.py"


rule subspace_activations:
    input:
        split=paths.split(),
        checkpoint=paths.checkpoint("{model}"),
        metrics=paths.metrics("{model}"),
    output:
        directory(paths.subspace_activations("{model}")),
    log:
        paths.log("activations", "{model}.subspace"),
    benchmark:
        paths.benchmark("activations", "{model}.subspace")
    conda:
        "../envs/torch.yaml"
    params:
        data=SETTINGS.data.result_params(),
        layers=SETTINGS.model.layer_names,
        activations=result_params(SETTINGS.activations),
        n_probe=SETTINGS.subspace_match.n_probe,
    script:
        "../scripts/subspace_activations.py"


# External networks (external_activations.networks): activations made elsewhere, imported as
# caches of the same probe sets; they take part in similarity and subspace only.


rule external_activations:
    input:
        split=paths.split(),
        files=lambda wildcards: EXTERNAL_NETWORKS[wildcards.external].files,
    output:
        directory(paths.activations("{external}")),
    log:
        paths.log("activations", "{external}.external"),
    wildcard_constraints:
        external=EXTERNAL_RE,
    conda:
        "../envs/torch.yaml"
    params:
        data=SETTINGS.data.result_params(),
        dtype=SETTINGS.activations.dtype,
    script:
        "../scripts/external_activations.py"


rule external_subspace_activations:
    input:
        split=paths.split(),
        files=lambda wildcards: EXTERNAL_NETWORKS[wildcards.external].files,
    output:
        directory(paths.subspace_activations("{external}")),
    log:
        paths.log("activations", "{external}.external.subspace"),
    wildcard_constraints:
        external=EXTERNAL_RE,
    conda:
        "../envs/torch.yaml"
    params:
        data=SETTINGS.data.result_params(),
        dtype=SETTINGS.activations.dtype,
        n_probe=SETTINGS.subspace_match.n_probe,
    script:
        "../scripts/external_subspace_activations.py"
