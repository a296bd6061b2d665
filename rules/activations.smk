# Stage 3: the probe-set activations of every configured layer, cached once per model.


rule activations:
    input:
        split=f"{RESULTS}/data/split.json",
        checkpoint=f"{RESULTS}/models/{{model}}/checkpoint.pt",
    output:
        directory(f"{RESULTS}/activations/{{model}}"),
    params:
        data=config["data"],
        layers=config["model"].get("layers", "all"),
        activations=config["activations"],
        device=config.get("device", "auto"),
    resources:
        gpu=GPUS_PER_JOB,
    log:
        f"{RESULTS}/logs/activations/{{model}}.log",
    conda:
        "../envs/activations.yaml"
    script:
        "../scripts/activations.py"


register_targets(expand(f"{RESULTS}/activations/{{model}}", model=MODELS))
