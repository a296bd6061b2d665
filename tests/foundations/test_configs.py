"""The shipped paper configs are paper-scale, and the documented job tables are what Snakemake plans."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_paper_config_is_paper_scale():
    cfg = yaml.safe_load((REPO / "config" / "paper_cifar10.yaml").read_text())
    assert cfg["data"]["name"] == "cifar10" and cfg["model"]["arch"] == "resnet20"
    assert len(cfg["seeds"]) == 5 and cfg["model"]["layers"] == "all"
    assert "gpus_per_job" not in cfg  # GPU requests live in the profiles
    assert cfg["subspace_match"]["eps"] == [0.15, 0.2, 0.25, 0.3, 0.5]


def _documented_counts(text: str, marker: str) -> tuple[dict[str, int], int | None]:
    """The job table between ``<!-- {marker}:start -->`` and ``<!-- {marker}:end -->``: ({rule: count}, total)."""
    import re

    m = re.search(rf"<!-- {marker}:start -->(.*?)<!-- {marker}:end -->", text, re.S)
    assert m, f"the text lacks the <!-- {marker}:start/end --> table"
    documented: dict[str, int] = {}
    total = None
    for row in re.findall(r"^\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|\s*$", m.group(1), re.M):
        names, count = row
        if names in ("job", "---") or set(names) <= {"-"}:
            continue
        n = int(re.search(r"\d+", count).group())
        if "total" in names:
            total = n
            continue
        for name in names.split(","):
            documented[re.sub(r"\s*\(.*\)", "", name).strip()] = n
    return documented, total


def _dry_run_counts(configfile: str, tmp_path: Path) -> dict[str, int]:
    """Job counts of ``snakemake -n`` with the SLURM profile (CIFAR-10 itself is not needed: only its folder)."""
    import re
    import subprocess
    import sys
    from collections import Counter

    (tmp_path / "data" / "cifar10").mkdir(parents=True)  # data_root must exist (checked at parse time)
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--profile", "profiles/slurm",
         "--configfile", configfile, "--directory", str(tmp_path), "--snakefile", str(REPO / "Snakefile")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = proc.stdout.split("Job stats:")[1].split("total")[0]
    return dict(Counter({name: int(n) for name, n in re.findall(r"^(\w+)\s+(\d+)\s*$", stats, re.M)}))


#: The docs page that prints the paper configs' job tables.
PAPER_JOB_TABLES = REPO / "docs" / "reproducing-papers.md"


def test_documented_job_counts_match_the_paper_dry_run(tmp_path):
    """docs/reproducing-papers.md prints the job counts of the SLURM dry run of the
    paper config; they must be what Snakemake plans (dry run: CIFAR-10 is not needed)."""
    documented, total = _documented_counts(PAPER_JOB_TABLES.read_text(), "job-counts")
    planned = _dry_run_counts("config/paper_cifar10.yaml", tmp_path)
    assert documented == planned, f"documented job counts {documented} != dry run {planned}"
    assert total == sum(planned.values())


#: Where the ViT-Ti config's job table is written.
VIT_JOB_TABLE = PAPER_JOB_TABLES


def test_vit_paper_config_is_the_papers_vit():
    cfg = yaml.safe_load((REPO / "config" / "paper_vit_cifar10.yaml").read_text())
    assert cfg["data"]["name"] == "cifar10" and cfg["model"] == {"arch": "vit_ti", "layers": "all"}
    assert len(cfg["seeds"]) == 5 and cfg["train"]["optimizer"] == "adamw"
    assert cfg["stitching"]["methods"] == ["dm", "tlm", "dm_tlm"] and cfg["stitching"]["dm"]["solver"] == "pinv"
    assert cfg["stitching"]["detector"]["enabled"] is False  # the OOD detectors do not take token layers


def test_vit_job_counts_match_the_dry_run(tmp_path):
    documented, total = _documented_counts(VIT_JOB_TABLE.read_text(), "vit-job-counts")
    planned = _dry_run_counts("config/paper_vit_cifar10.yaml", tmp_path)
    assert documented == planned, f"documented ViT job counts {documented} != dry run {planned}"
    assert total == sum(planned.values())
