"""The SLURM profile, checked statically (fast) and on a real single-node SLURM cluster that the
test installs (Debian packages) and starts on localhost, then stops (``pytest -m slurm``).

The cluster test runs the tiny experiment twice, locally and with ``--profile profiles/slurm``,
and checks that every non-local job went through sbatch (seen by squeue, by scontrol and by
SLURM's job-completion log), that GPU-capable jobs asked for a GPU on the ``gpu`` partition and
CPU-only jobs did not, and that both runs produced identical results.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter

import pytest
import yaml

from workflow_runs import (
    REPO,
    TINY_CONFIG,
    compare_results,
    copy_workflow,
    dry_run_jobs,
    reference_run,
    run_snakemake,
    workflow_rules,
)

SLURM_DIR = REPO / "tests" / "slurm"
PROFILE = REPO / "profiles" / "slurm" / "config.yaml"

# Overrides a test cluster needs on top of profiles/slurm (documented in the profile):
# no slurmdbd -> poll with squeue (slurm.conf keeps finished jobs: MinJobAge=3600);
# no accounts; poll soon; keep the SLURM logs for debugging; 2 jobs at a time on 2 cores.
TEST_OVERRIDES = [
    "--slurm-status-command", "squeue",
    "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks", "2",
    "--slurm-keep-successful-logs",
    "--jobs", "2",
]


# --------------------------------------------------------------------------- static checks


def _profile() -> dict:
    return yaml.safe_load(PROFILE.read_text())


def test_slurm_profile_is_not_loaded_by_default():
    """A plain `snakemake --cores N` must stay local: no default profile may select SLURM."""
    for name in ("default",):
        d = REPO / "profiles" / name
        for f in (d / "config.yaml", d / "profile.yaml"):
            if f.exists():
                assert yaml.safe_load(f.read_text()).get("executor") in (None, "local"), f"{f} selects a remote executor"
    local = yaml.safe_load((REPO / "profiles" / "local" / "config.yaml").read_text())
    assert local.get("executor") in (None, "local")
    assert local.get("resources", {}).get("gpu", 0) >= 1, "local profile must limit concurrent GPU jobs"


def test_slurm_profile_settings():
    prof = _profile()
    assert prof["executor"] == "slurm"
    assert prof["config"]["gpus_per_job"] >= 1
    defaults = prof["default-resources"]
    for key in ("runtime", "mem_mb", "cpus_per_task"):
        assert key in defaults, f"default-resources lacks {key}"
    # The plugin rejects these in slurm_extra; GPUs go through `gpu`, partitions through
    # slurm_partition / the partition file.
    extra = " ".join(str(v.get("slurm_extra", "")) for v in (prof.get("set-resources") or {}).values())
    extra += str(defaults.get("slurm_extra", ""))
    assert not re.search(r"--gres|--gpus|--mem|(^|\s)-p\s|--partition", extra)
    part_file = PROFILE.parent / prof["slurm-partition-config"]
    parts = yaml.safe_load(part_file.read_text())["partitions"]
    assert any(p.get("max_gpu", 0) >= 1 for p in parts.values()), "no partition offers GPUs"
    assert any(p.get("max_gpu", 0) == 0 for p in parts.values()), "no CPU-only partition"


def test_slurm_profile_set_resources_name_real_rules():
    """set-resources for a misspelt rule is silently ignored by Snakemake: catch it here."""
    rules = {r.name for r in workflow_rules()}
    unknown = set(_profile().get("set-resources") or {}) - rules
    assert not unknown, f"profiles/slurm set-resources names rules that do not exist: {sorted(unknown)}"


def test_slurm_profile_dry_run_requests_gpus_only_for_gpu_rules(tmp_path):
    """Under the profile, GPU-capable jobs request gpu=1 and the others none (dry run)."""
    wd = copy_workflow(tmp_path / "wf")
    jobs = dry_run_jobs(wd, "--profile", "profiles/slurm", "--configfile", TINY_CONFIG)
    gpu_rules = {j["rule"] for j in jobs if j["resources"].get("gpu") == "1"}
    cpu_rules = {j["rule"] for j in jobs if j["resources"].get("gpu", "0") == "0"}
    assert {"train", "activations"} <= gpu_rules, gpu_rules
    assert "training_summary" in cpu_rules, cpu_rules
    assert not gpu_rules & cpu_rules
    # Without the profile (laptop) nothing asks for a GPU.
    plain = dry_run_jobs(wd, "--cores", "2", "--configfile", TINY_CONFIG)
    assert all(j["resources"].get("gpu", "0") == "0" for j in plain), [j for j in plain if "gpu" in j["resources"]]


# --------------------------------------------------------------------------- live cluster


def _sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A single-node SLURM cluster on localhost, stopped at teardown even when tests fail."""
    if not sys.platform.startswith("linux"):
        pytest.skip(f"the local SLURM test cluster needs Linux (this is {sys.platform})")
    if os.geteuid() != 0:
        pytest.skip(
            f"the local SLURM test cluster needs root (uid {os.geteuid()}): it installs Debian packages, "
            "writes /etc/slurm/slurm.conf and starts munged/slurmctld/slurmd"
        )
    inst = _sh(["sh", str(SLURM_DIR / "install.sh")], timeout=900)
    if inst.returncode != 0:
        pytest.skip(f"cannot install SLURM here (tests/slurm/install.sh rc={inst.returncode}): {inst.stderr.strip()[-1500:]}")
    state = tmp_path_factory.mktemp("slurm_state")
    start = _sh(["sh", str(SLURM_DIR / "start.sh"), str(state)], timeout=180)
    try:
        if start.returncode == 5:
            pytest.skip(f"not starting a test cluster: {start.stderr.strip()}")
        if start.returncode != 0:
            pytest.skip(
                f"SLURM daemons could not start on this machine (tests/slurm/start.sh rc={start.returncode}):\n"
                f"{start.stdout}\n{start.stderr.strip()[-3000:]}"
            )
        yield state
    finally:
        stop = _sh(["sh", str(SLURM_DIR / "stop.sh"), str(state)], timeout=120)
        assert stop.returncode == 0, f"stop.sh failed: {stop.stderr}"


def _slurm_jobs(run_id: str) -> list[dict]:
    out = _sh(["squeue", "--states=all", "--noheader", "--name", run_id, "--format=%i|%T|%k|%P"], check=True).stdout
    jobs = []
    for line in out.splitlines():
        jobid, state, comment, partition = line.strip().split("|")
        detail = _sh(["scontrol", "show", "job", "-o", jobid], check=True).stdout
        m = re.search(r"TresPerJob=(\S+)", detail)
        m_rule = re.match(r"rule_(\w+?)(_wildcards_.*)?$", comment)
        assert m_rule, f"unexpected job comment {comment!r} (job {jobid})"
        jobs.append(
            {"id": jobid, "state": state, "rule": m_rule.group(1), "partition": partition,
             "tres_per_job": m.group(1) if m else ""}
        )
    return jobs


@pytest.mark.slurm
def test_pipeline_on_slurm_matches_local_run(slurm_cluster, tmp_path, tmp_path_factory):
    state = slurm_cluster
    reference = reference_run(tmp_path_factory)  # local run; the cluster runs the same code
    cluster = copy_workflow(tmp_path / "cluster", source=reference)

    args = ["--profile", "profiles/slurm", "--configfile", TINY_CONFIG, *TEST_OVERRIDES]
    # Rules without an action (e.g. `all`) and localrules run in the main process.
    no_action = {r.name for r in workflow_rules(cluster) if r.norun}
    planned = [j for j in dry_run_jobs(cluster, *args) if not j["local"] and j["rule"] not in no_action]
    assert planned, "the dry run plans no cluster jobs"
    proc = run_snakemake(cluster, *args, timeout=1500)
    log = proc.stdout + proc.stderr
    m = re.search(r"SLURM run ID: (\S+)", log)
    assert m, f"no SLURM run ID in the snakemake output:\n{log[-3000:]}"
    submitted = _slurm_jobs(m.group(1))

    # Every planned job went through sbatch, once, and finished.
    assert Counter(j["rule"] for j in submitted) == Counter(j["rule"] for j in planned), (submitted, planned)
    assert all(j["state"] == "COMPLETED" for j in submitted), submitted
    # SLURM's own completion log: exactly the planned number of jobs of this run, all COMPLETED.
    jobcomp = re.findall(r"JobId=(\d+) .*?Name=(\S+) JobState=(\S+)", (state / "jobcomp.log").read_text())
    of_run = {jid: st for jid, name, st in jobcomp if name == m.group(1)}
    assert len(of_run) == len(planned) and set(of_run.values()) == {"COMPLETED"}, of_run
    assert {j["id"] for j in submitted} == set(of_run), "squeue and the completion log disagree"
    sbatch_lines = re.findall(r"_slurm_rpc_submit_batch_job: JobId=(\d+)", (state / "slurmctld.log").read_text())
    assert {j["id"] for j in submitted} <= set(sbatch_lines)

    # GPU-capable rules asked for a GPU on the gpu partition; the others for none.
    gpu_rules = {j["rule"] for j in planned if j["resources"].get("gpu") == "1"}
    assert {"train", "activations"} <= gpu_rules
    for j in submitted:
        if j["rule"] in gpu_rules:  # --gpus=1 shows as TresPerJob=gres:gpu:1
            assert j["partition"] == "gpu" and "gpu:1" in j["tres_per_job"], j
        else:
            assert j["partition"] == "cpu" and "gpu" not in j["tres_per_job"], j
    assert any(j["rule"] not in gpu_rules for j in submitted), "no CPU-only job was submitted"

    diffs = compare_results(reference / "results", cluster / "results")
    assert not diffs, "SLURM and local results differ:\n" + "\n".join(diffs)
