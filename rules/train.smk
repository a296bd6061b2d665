# Stage 2: one deterministic training job per (architecture, seed), and the training summary.
# Networks from the user's code (model.factory + model.checkpoints) are not trained: one light
# import_network job per checkpoint file measures their accuracy and writes the same checkpoint
# + metrics, so every rule downstream is the same.


if SETTINGS.model.external:

    rule import_network:
        input:
            split=paths.split(),
            source=network_source,
        output:
            checkpoint=paths.checkpoint("{model}"),
            metrics=paths.metrics("{model}"),
        log:
            paths.log("train", "{model}"),
        benchmark:
            paths.benchmark("train", "{model}")
        conda:
            "../envs/torch.yaml"
        params:
            data=SETTINGS.data.result_params(),
            model=result_params(SETTINGS.model),
        script:
            "../scripts/import_network.py"

    ruleorder: import_network > train


rule train:
    input:
        split=paths.split(),
    output:
        checkpoint=paths.checkpoint("{model}"),
        metrics=paths.metrics("{model}"),
    log:
        paths.log("train", "{model}"),
    benchmark:
        paths.benchmark("train", "{model}")
    conda:
        "../envs/torch.yaml"
    threads: SETTINGS.train.threads
    params:
        data=SETTINGS.data.result_params(),
        train=result_params(SETTINGS.train),
    script:
        "../scripts/train.py"


rule training_summary:
    input:
        metrics=[paths.metrics(m) for m in MODELS],
    output:
        **figure_outputs("training", paths.TRAINING_FIGURE_NAMES, "../report/training.rst", "Training"),
        table=paths.training_summary(),
    log:
        paths.log("train", "summary"),
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/training_summary.py"


rule benchmark_summary:
    input:
        unpack(benchmark_files),
    output:
        report(
            paths.benchmark_summary(),
            caption="../report/benchmarks.rst",
            category="Benchmarks",
            labels={"table": "wall time and peak memory"},
        ),
    log:
        paths.log("benchmarks", "summary"),
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/benchmark_summary.py"
