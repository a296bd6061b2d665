"""Snakemake entry point: import one external network's activations as the subspace match's probe set's cache."""

from repmatch.backbone.external_import import import_stage
from repmatch.jobs import snakemake_job

with snakemake_job(snakemake) as job:  # noqa: F821
    s, name = job.settings, job.wildcards.external
    import_stage(name=name, folder=s.external_activations.networks[name], split_json=job.input.split,
                 out_dir=job.output[0], log=job.log, subspace_n_probe=s.subspace_match.n_probe,
                 split_seed=s.data.split_seed, probe_set="subspace_match", dtype=s.activations.dtype)  # fmt: skip
