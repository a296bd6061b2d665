# repmatch: how similar are the internal representations of neural networks?
#
#   data split -> train (arch, seed) -> activations (model) -> pairwise comparisons -> aggregate -> figures
#
# Table of contents: each stage lives in rules/<stage>.smk; input functions and names in rules/common.smk.

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


validate(config, "config/schema.yaml")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/activations.smk"
include: "rules/similarity.smk"
include: "rules/stitching.smk"
include: "rules/subspace.smk"
include: "rules/figures.smk"


rule all:
    input:
        all_targets,
    default_target: True
