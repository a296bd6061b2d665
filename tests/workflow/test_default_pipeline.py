"""The README's main command on the default config, as a (slow) test: `pytest -m slow`."""

import pytest

from workflow_runs import copy_workflow, run_snakemake


@pytest.mark.slow
def test_default_pipeline_completes_and_is_then_up_to_date(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    run_snakemake(workdir, "--cores", "2", timeout=1800)
    assert len(list((workdir / "results" / "figures").rglob("*.png"))) >= 10
    again = run_snakemake(workdir, "-n", "--cores", "2")
    assert "Nothing to be done" in again.stdout + again.stderr
