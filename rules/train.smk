# Stage 2: one deterministic training job per (architecture, seed).


rule train:
    input:
        split=f"{RESULTS}/data/split.json",
    output:
        checkpoint=f"{RESULTS}/models/{{model}}/checkpoint.pt",
        metrics=f"{RESULTS}/models/{{model}}/metrics.json",
    params:
        data=config["data"],
        train=config["train"],
        device=config.get("device", "auto"),
    threads: config["train"].get("threads", 1)
    resources:
        gpu=GPUS_PER_JOB,
    log:
        f"{RESULTS}/logs/train/{{model}}.log",
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/train.py"


register_targets(expand(f"{RESULTS}/models/{{model}}/{{file}}", model=MODELS, file=["checkpoint.pt", "metrics.json"]))
