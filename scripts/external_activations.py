"""Snakemake entry point: import one external network's activations as an activation cache (one probe set)."""

from repmatch.backbone.external_import import import_stage
from repmatch.jobs import snakemake_job

with snakemake_job(snakemake) as job:  # noqa: F821
    s, name = job.settings, job.wildcards.external
    probe_set = "subspace_match" if job.rule == "external_subspace_activations" else "similarity"
    import_stage(name, s.external_activations.networks[name], job.input.split, job.output[0], job.log, dtype=s.activations.dtype,
                 subspace_n_probe=s.subspace_match.n_probe, split_seed=s.data.split_seed, probe_set=probe_set)  # fmt: skip
