# Stage 1: the fixed, seeded train / test / probe split, recorded once.


rule data_split:
    output:
        paths.split(),
    params:
        data=SETTINGS.data.result_params(),
    log:
        paths.log("data", "split"),
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/data_split.py"
