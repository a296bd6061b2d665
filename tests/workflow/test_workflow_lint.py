"""The Snakefile and every rules/*.smk must be `snakemake --lint` clean."""

import re

from workflow_runs import REPO, run_snakemake


def test_snakemake_lint_is_clean():
    proc = run_snakemake(REPO, "--lint", timeout=180)
    out = proc.stdout + proc.stderr
    assert "Congratulations, your workflow is in a good condition!" in out, out


def test_every_rule_is_a_thin_script_with_a_log():
    """Rules call scripts/ (logic lives in src/repmatch), and each writes a log."""
    text = "\n".join(p.read_text() for p in sorted((REPO / "rules").glob("*.smk")))
    rules = re.split(r"^rule ", text, flags=re.M)[1:]
    assert len(rules) >= 10
    for body in rules:
        name = body.split(":", 1)[0]
        assert "log:" in body, name
        assert "script:" in body, name
        assert "shell:" not in body and "run:" not in body, name
