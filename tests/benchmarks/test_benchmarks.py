"""Benchmark files of the heavy rules and their summary table."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from workflow_runs import workflow_rules

from repmatch import paths
from repmatch.benchmarks import benchmark_table, parse_benchmark_path

HEAVY = {"train", "activations", "similarity_pair", "stitching_pair", "subspace_pair"}
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def test_every_heavy_rule_writes_a_benchmark_file_named_by_repmatch_paths():
    rules = {r.name: r for r in workflow_rules()}
    for name in HEAVY:
        bench = rules[name].benchmark
        assert bench is not None, f"rule {name} has no benchmark:"
        assert str(bench).startswith(paths.benchmark("", "")[: -len("/.tsv")]), bench
    assert "benchmark_summary" in rules


def test_benchmark_table_reads_snakemake_tsv(tmp_path):
    a = tmp_path / "train" / "smallcnn_seed0.tsv"
    b = tmp_path / "similarity" / "x__y.tsv"
    a.parent.mkdir()
    b.parent.mkdir()
    a.write_text(HEADER + "12.5\t0:00:12\t300.1\t900\t280\t290\t1\t2\t95.0\t11.9\n")
    b.write_text(HEADER + "0.4\t0:00:00\t-\t-\t-\t-\t-\t-\t-\t-\n")  # too short to sample memory
    df = benchmark_table({parse_benchmark_path(p): p for p in (a, b)})
    assert list(df["stage"]) == ["similarity", "train"]
    row = df.set_index("stage").loc["train"]
    assert row["job"] == "smallcnn_seed0" and row["wall_s"] == 12.5 and row["max_rss_mb"] == pytest.approx(300.1)
    assert np.isnan(df.set_index("stage").loc["similarity", "max_rss_mb"])


def test_summary_stage_writes_csv(tmp_path, caplog):
    from repmatch.benchmarks import benchmark_summary_stage

    a = tmp_path / "train" / "m.tsv"
    a.parent.mkdir()
    a.write_text(HEADER + "3\t0:00:03\t100\t1\t1\t1\t1\t1\t1\t2\n")
    out = tmp_path / "summary.csv"
    with caplog.at_level(logging.INFO):
        benchmark_summary_stage(files={("train", "m"): a}, out_csv=out, log=logging.getLogger("b"))
    assert out.read_text().splitlines()[0] == "stage,job,wall_s,max_rss_mb,cpu_time_s,attempts"
    assert "train: 1 jobs" in caplog.text
