"""The shipped paper configs are paper-scale, and the README's job table is what Snakemake plans."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_paper_config_is_paper_scale():
    cfg = yaml.safe_load((REPO / "config" / "paper_cifar10.yaml").read_text())
    assert cfg["data"]["name"] == "cifar10" and cfg["model"]["arch"] == "resnet20"
    assert len(cfg["seeds"]) == 5 and cfg["model"]["layers"] == "all"
    assert "gpus_per_job" not in cfg  # GPU requests live in the profiles
    assert cfg["subspace_match"]["eps"] == [0.15, 0.2, 0.25, 0.3, 0.5]


def test_readme_job_counts_match_the_paper_dry_run(tmp_path):
    """README, "Reproducing the papers", prints the job counts of the SLURM dry run of the
    paper config; they must be what Snakemake plans (dry run: CIFAR-10 is not needed)."""
    import re
    import subprocess
    import sys
    from collections import Counter

    readme = (REPO / "README.md").read_text()
    m = re.search(r"<!-- job-counts:start -->(.*?)<!-- job-counts:end -->", readme, re.S)
    assert m, "README lacks the <!-- job-counts:start/end --> table"
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
    (tmp_path / "data" / "cifar10").mkdir(parents=True)  # data_root must exist (checked at parse time)
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--profile", "profiles/slurm",
         "--configfile", "config/paper_cifar10.yaml", "--directory", str(tmp_path), "--snakefile", str(REPO / "Snakefile")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = proc.stdout.split("Job stats:")[1].split("total")[0]
    planned = Counter({name: int(n) for name, n in re.findall(r"^(\w+)\s+(\d+)\s*$", stats, re.M)})
    assert documented == dict(planned), f"README job counts {documented} != dry run {dict(planned)}"
    assert total == sum(planned.values())
