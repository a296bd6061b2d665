# Sanity tests of every family in one table ("more similar than itself", specificity, within vs cross seed).
# Library: repmatch.sanity (README, "Sanity tests").


rule sanity:
    input:
        unpack(sanity_inputs),
    output:
        **{name: paths.sanity(name) for name in paths.SANITY_TABLES},
    params:
        uncertainty=result_params(SETTINGS.uncertainty),
    log:
        paths.log("sanity", "sanity"),
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/sanity.py"
