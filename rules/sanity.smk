# Sanity tests of every family in one table ("more similar than itself", specificity, within vs cross seed).
# Library: repmatch.sanity (docs/uncertainty.md, "Sanity tests").


rule sanity:
    input:
        unpack(sanity_inputs),
    output:
        **{
            name: report(
                paths.sanity(name), caption="../report/sanity.rst", category="Sanity tests", labels={"table": name}
            )
            for name in paths.SANITY_TABLES
        },
    log:
        paths.log("sanity", "sanity"),
    conda:
        "../envs/tables.yaml"
    params:
        uncertainty=result_params(SETTINGS.uncertainty),
    script:
        "../scripts/sanity.py"
