# Sanity tests of every family in one table ("more similar than itself", specificity).
# Library: repmatch.sanity (README, "Sanity tests").


def sanity_inputs(wildcards):
    inputs = {"similarity": paths.aggregate("similarity")}
    if STITCHING_PAIRS:
        inputs["stitching"] = paths.aggregate("stitching")
    if SUBSPACE_PAIRS:
        inputs["subspace_match"] = paths.aggregate("subspace_match")
    return inputs


rule sanity:
    input:
        unpack(sanity_inputs),
    output:
        **{name: paths.sanity(name) for name in paths.SANITY_TABLES},
    log:
        paths.log("sanity", "sanity"),
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/sanity.py"
