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
    start_snakemake,
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


GPU_RULES = {"train", "activations", "subspace_activations", "similarity_pair", "stitching_pair", "subspace_pair",
             "sensitivity_network", "sensitivity_pair"}


def test_slurm_profile_settings():
    prof = _profile()
    assert prof["executor"] == "slurm"
    # GPU requests are resources of the profile, never workflow config (which --config replaces).
    assert "config" not in prof, "profiles/slurm must not set workflow config"
    for name in GPU_RULES:
        assert prof["set-resources"][name]["gpu"] >= 1, name
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


def test_runtime_and_memory_grow_with_attempt():
    """Each retry gets more wall time and memory (Snakemake evaluates the profile's resource
    expressions with ``attempt`` = 1, 2, ...)."""
    prof = _profile()
    specs = [prof["default-resources"]] + list(prof["set-resources"].values())
    for spec in specs:
        for key in ("runtime", "mem_mb"):
            if key in spec:
                first, second = (eval(str(spec[key]), {"attempt": a}) for a in (1, 2))
                assert second > first > 0, (key, spec[key])
    assert prof["retries"] >= 1


def test_cpu_only_cluster_is_one_profile_line():
    """README: on a cluster without GPUs change the anchor line `&gpu {gpu: 1}` to `{gpu: 0}`."""
    lines = PROFILE.read_text().splitlines()
    hits = [i for i, line in enumerate(lines) if "&gpu {gpu: 1}" in line]
    assert len(hits) == 1
    lines[hits[0]] = lines[hits[0]].replace("&gpu {gpu: 1}", "&gpu {gpu: 0}")
    prof = yaml.safe_load("\n".join(lines))
    assert all(spec.get("gpu", 0) == 0 for spec in prof["set-resources"].values())


def test_local_profile_requests_gpus_through_set_resources():
    local = yaml.safe_load((REPO / "profiles" / "local" / "config.yaml").read_text())
    assert "config" not in local
    assert {r for r, spec in local["set-resources"].items() if spec.get("gpu", 0) >= 1} == GPU_RULES


def test_aggregation_figure_and_summary_rules_are_local():
    """Tiny jobs never queue: aggregation, sanity, figures and summaries run in the snakemake
    process; the heavy rules are submitted."""
    rules = workflow_rules()
    local = {r.name for r in rules if r.name in r.workflow._localrules or r.norun}
    expected = {r.name for r in rules if r.name.endswith(("_aggregate", "_figures", "_summary"))} | {"sanity", "stitching_distance", "all"}
    assert expected <= local, expected - local
    assert not local & GPU_RULES, local & GPU_RULES
    assert GPU_RULES <= {r.name for r in rules}


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
    # A --config override on the command line keeps the GPU requests (they are not config).
    override = dry_run_jobs(wd, "--profile", "profiles/slurm", "--configfile", TINY_CONFIG, "--config", "seeds=[0,1]")
    assert {j["rule"] for j in override if j["resources"].get("gpu") == "1"} == gpu_rules
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
@pytest.mark.xdist_group("slurm_cluster")  # one test cluster, started once, on one worker
def test_pipeline_on_slurm_matches_local_run(slurm_cluster, retry_run, tmp_path, tmp_path_factory):
    """``retry_run``: the time-limit test's workflow is started first, so that its minutes of waiting
    for SLURM's limit pass while this test's jobs run on the same cluster."""
    state = slurm_cluster
    reference = reference_run(tmp_path_factory)  # local run; the cluster runs the same code
    cluster = copy_workflow(tmp_path / "cluster", source=reference)

    args = ["--profile", "profiles/slurm", "--configfile", TINY_CONFIG, *TEST_OVERRIDES]
    # Rules without an action (e.g. `all`) and localrules run in the main process.
    rules = workflow_rules(cluster)
    no_action = {r.name for r in rules if r.norun}
    local_rules = {r.name for r in rules if r.name in r.workflow._localrules} - no_action
    assert {"similarity_aggregate", "sanity", "training_summary"} <= local_rules
    # The command line replaces config (as a user's `--config` would); GPU requests must survive.
    args += ["--config", "seeds=[0,1]"]
    all_jobs = dry_run_jobs(cluster, *args)
    planned = [j for j in all_jobs if not j["local"] and j["rule"] not in no_action | local_rules]
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

    # Aggregation, sanity, figure and summary jobs ran in the snakemake process, not through sbatch.
    assert not {j["rule"] for j in submitted} & local_rules, submitted
    # every local rule of this run was planned (the tiny config turns the sensitivity test off)
    assert {j["rule"] for j in all_jobs} & local_rules == local_rules - {"sensitivity_aggregate"}

    # GPU-capable rules asked for a GPU on the gpu partition; the others for none.
    gpu_rules = {j["rule"] for j in planned if j["resources"].get("gpu") == "1"}
    assert GPU_RULES & {j["rule"] for j in planned} == gpu_rules
    for j in submitted:
        if j["rule"] in gpu_rules:  # --gpus=1 shows as TresPerJob=gres:gpu:1
            assert j["partition"] == "gpu" and "gpu:1" in j["tres_per_job"], j
        else:
            assert j["partition"] == "cpu" and "gpu" not in j["tres_per_job"], j
    assert any(j["rule"] not in gpu_rules for j in submitted), "no CPU-only job was submitted"

    diffs = compare_results(reference / "results", cluster / "results")
    assert not diffs, "SLURM and local results differ:\n" + "\n".join(diffs)


# A one-rule workflow whose first attempt runs past its 1-minute limit, so SLURM kills it; the
# retry is submitted with 3 minutes (the profile's `runtime` grows with `attempt`, as
# profiles/slurm's does) and finishes at once. What is under test is the profile and Snakemake's
# resubmission (the limit each attempt is given, and the failed attempt's log naming the cause),
# not that SLURM honours a limit, so the retry need not use its longer limit; sleeping through it
# would only add minutes.
RETRY_SNAKEFILE = """
rule slow:
    output: "done.txt"
    shell: "if [ {resources.runtime} -lt 2 ]; then sleep 600; fi; echo {resources.runtime} > {output}"
"""


@pytest.fixture(scope="module")
def retry_run(slurm_cluster, tmp_path_factory):
    """The time-limit workflow, started in the background as soon as the cluster is up: its first
    attempt spends one to two minutes waiting for SLURM to kill it (the executor's status polls back
    off meanwhile), time in which the pipeline test's jobs can use the cluster. Yields the workflow
    folder, the snakemake process and its log file; stopped at teardown if still running."""
    wd = tmp_path_factory.mktemp("retry")
    (wd / "profiles" / "retry").mkdir(parents=True)
    (wd / "Snakefile").write_text(RETRY_SNAKEFILE)
    prof = _profile()
    prof.pop("set-resources")
    prof.update({"retries": 1, "latency-wait": 5, "jobs": 1})
    prof["default-resources"] = {"runtime": "1+2*(attempt-1)", "mem_mb": "500*attempt", "cpus_per_task": 1}
    (wd / "profiles" / "retry" / "config.yaml").write_text(yaml.safe_dump(prof))
    (wd / "profiles" / "retry" / "partitions.yaml").write_text((PROFILE.parent / prof["slurm-partition-config"]).read_text())
    log = wd / "snakemake.log"
    proc = start_snakemake(wd, "--profile", "profiles/retry", *TEST_OVERRIDES, log=log)
    try:
        yield wd, proc, log
    finally:
        if proc.poll() is None:
            proc.terminate()  # snakemake cancels its SLURM jobs on SIGTERM
            proc.wait(timeout=60)


@pytest.mark.slurm
@pytest.mark.xdist_group("slurm_cluster")  # one test cluster, started once, on one worker
def test_job_over_its_time_limit_is_retried_with_more_time(retry_run):
    wd, proc, log_file = retry_run
    rc = proc.wait(timeout=900)
    log = log_file.read_text()
    assert rc == 0, f"the time-limit workflow failed (rc={rc}) in {wd}:\n{log[-6000:]}"
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    out = _sh(["squeue", "--states=all", "--noheader", "--name", run_id, "--format=%i|%T|%l"], check=True).stdout
    jobs = sorted((int(i), state, limit) for i, state, limit in (line.strip().split("|") for line in out.splitlines()))
    assert [(state, limit) for _, state, limit in jobs] == [("TIMEOUT", "1:00"), ("COMPLETED", "3:00")], jobs
    assert (wd / "done.txt").read_text().strip() == "3"
    # The failed attempt says why, both in Snakemake's output and in its own SLURM log.
    timed_out = str(jobs[0][0])
    assert re.search(rf"SLURM-job '{timed_out}' failed, SLURM status is: 'TIMEOUT'", log), log[-3000:]
    job_logs = list((wd / ".snakemake" / "slurm_logs").rglob(f"{timed_out}.log"))
    assert job_logs, f"no SLURM log of job {timed_out} under {wd / '.snakemake' / 'slurm_logs'}"
    assert "DUE TO TIME LIMIT" in job_logs[0].read_text(), job_logs[0].read_text()[-2000:]
