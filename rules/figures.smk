# Stage 5: figures that summarise the backbone (the per-family figures live in their stage files).


rule training_summary:
    input:
        metrics=expand(f"{RESULTS}/models/{{model}}/metrics.json", model=MODELS),
    output:
        table=f"{RESULTS}/models/training_summary.csv",
        figure=report(
            f"{RESULTS}/figures/training/accuracy.png",
            caption="../report/training.rst",
            category="Training",
        ),
    log:
        f"{RESULTS}/logs/training_summary.log",
    conda:
        "../envs/figures.yaml"
    script:
        "../scripts/training_summary.py"


register_targets(rules.training_summary.output)
