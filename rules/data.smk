# Stage 1: the fixed, seeded train / test / probe split, recorded once.


rule data_split:
    output:
        paths.split(),
    log:
        paths.log("data", "split"),
    conda:
        "../envs/torch.yaml"
    params:
        data=SETTINGS.data.result_params(),
    script:
        "../scripts/data_split.py"
