# Stage 1: the fixed, seeded train / test / probe split, recorded once.


rule data_split:
    output:
        f"{RESULTS}/data/split.json",
    params:
        data=config["data"],
    log:
        f"{RESULTS}/logs/data_split.log",
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/data_split.py"
