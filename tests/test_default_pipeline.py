"""The README's main command on the default config, as a (slow) test: `pytest -m slow`."""

import pytest

from pipeline_helpers import REPO, snakemake


@pytest.mark.slow
def test_default_pipeline_completes_and_is_then_up_to_date(tmp_path):
    proc = snakemake(tmp_path, "--cores", "2", configfile=REPO / "config.yaml", timeout=1800)
    assert proc.returncode == 0, proc.stderr[-5000:]
    figures = list((tmp_path / "results" / "figures").rglob("*.png"))
    assert len(figures) >= 5
    again = snakemake(tmp_path, "-n", "--cores", "2", configfile=REPO / "config.yaml")
    assert "Nothing to be done" in again.stdout + again.stderr
