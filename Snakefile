# repmatch: how similar are the internal representations of neural networks?
#
#   config -> settings -> data split -> train (arch, seed) -> activations (model)
#          -> pairwise comparisons (similarity, stitching, subspace match) -> aggregate -> sanity, figures
#
# Table of contents: each stage lives in rules/<stage>.smk; settings, names, input functions and
# the target list (final_outputs) in rules/common.smk; every default in src/repmatch/schema.yaml.

from time import monotonic

from snakemake.utils import min_version

STARTED = monotonic()  # the end-of-run report gives this invocation's wall time

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/activations.smk"
include: "rules/similarity.smk"
include: "rules/stitching.smk"
include: "rules/subspace.smk"
include: "rules/sensitivity.smk"
include: "rules/sanity.smk"


# Seconds of pandas/matplotlib each: run in the snakemake process itself, never queued on a
# cluster (docs/cluster-and-gpu.md).
localrules:
    all,
    training_summary,
    benchmark_summary,
    similarity_aggregate,
    similarity_figures,
    stitching_aggregate,
    stitching_distance,
    stitching_figures,
    subspace_aggregate,
    subspace_figures,
    sanity,
    sensitivity_aggregate,


rule all:
    default_target: True
    input:
        final_outputs(),


# After the last job: wall and CPU seconds per stage and in total (repmatch.benchmarks).
onsuccess:
    from repmatch.benchmarks import stage_time_report

    print(stage_time_report(paths.benchmark_summary(), monotonic() - STARTED))
