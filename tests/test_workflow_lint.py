"""The Snakefile and every rules/*.smk must be `snakemake --lint` clean."""

import subprocess
import sys

from pipeline_helpers import REPO


def test_snakemake_lint_is_clean():
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint", "-s", str(REPO / "Snakefile"), "--directory", str(REPO)],
        capture_output=True, text=True, timeout=180, cwd=REPO,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Congratulations, your workflow is in a good condition!" in out, out


def test_every_rule_is_a_thin_script_with_log_and_conda_env():
    """Rules call scripts/ (logic lives in src/repmatch), and each names a log and an env."""
    import re

    text = "\n".join(p.read_text() for p in sorted((REPO / "rules").glob("*.smk")))
    rules = re.split(r"^rule ", text, flags=re.M)[1:]
    assert rules
    for body in rules:
        name = body.split(":", 1)[0]
        assert "conda:" in body, name
        assert "log:" in body, name
        assert "script:" in body, name
        assert "shell:" not in body and "run:" not in body, name
