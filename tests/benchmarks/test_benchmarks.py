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


def test_stage_times_sum_per_stage_in_pipeline_order_and_the_report_names_every_stage(tmp_path):
    from repmatch.benchmarks import format_stage_times, stage_time_report, stage_times

    table = benchmark_table({})
    assert stage_times(table).empty
    files = {}
    for stage, job, wall, cpu in [("stitching", "a__b", 200.0, 190.0), ("train", "m0", 20.0, 18.0), ("train", "m1", 30.0, 25.0),
                                  ("zeta", "x", 1.0, 0.5)]:
        path = tmp_path / stage / f"{job}.tsv"
        path.parent.mkdir(exist_ok=True)
        path.write_text(HEADER + f"{wall}\t0:00:00\t1\t1\t1\t1\t1\t1\t1\t{cpu}\n")
        files[(stage, job)] = path
    per_stage = stage_times(benchmark_table(files)).set_index("stage")
    assert list(per_stage.index) == ["train", "stitching", "zeta"]  # pipeline order, unknown stages last
    assert per_stage.loc["train", "jobs"] == 2 and per_stage.loc["train", "wall_s"] == 50.0
    assert per_stage.loc["train", "cpu_time_s"] == 43.0 and per_stage.loc["train", "longest_job"] == "m1"
    text = format_stage_times(benchmark_table(files), elapsed_s=125.0)
    assert "total" in text and "233.5" in text and "2 min 05.0 s" in text
    # minutes are whole minutes, never rounded up: 7 min 53.6 s is not "8 min 53.6 s"
    assert "7 min 53.6 s" in format_stage_times(benchmark_table(files), elapsed_s=473.6)
    assert "was not made" in stage_time_report(tmp_path / "missing.csv")
    summary = tmp_path / "summary.csv"
    benchmark_table(files).to_csv(summary, index=False)
    assert "stitching" in stage_time_report(summary, 1.0)
