"""`snakemake --report report.html` on a finished run of the tiny experiment: one
self-contained HTML file that embeds every figure under results/figures (byte for byte), each
with a rendered caption, and the top-level description from report/workflow.rst."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from workflow_runs import REPO, TINY_CONFIG, reference_run, run_snakemake

FIGURE_SUFFIXES = {".png", ".pdf", ".svg"}


def _js_value(html: str, var: str):
    """The JSON literal assigned by ``var NAME = ...;`` in the report's scripts."""
    # The embedded JS libraries reuse some names (`var results = new Array(...)`): take the
    # assignment whose value is a JSON literal.
    for m in re.finditer(rf"\bvar {var} = ", html):
        try:
            value, _ = json.JSONDecoder().raw_decode(html, m.end())
        except json.JSONDecodeError:
            continue
        return value
    raise AssertionError(f"report has no JSON `var {var}` (Snakemake report layout changed?)")


def test_snakefile_declares_the_report_description():
    text = (REPO / "Snakefile").read_text()
    assert re.search(r'^report:\s*"report/workflow.rst"', text, re.M), (
        'the Snakefile must declare  report: "report/workflow.rst"  (top-level report description)'
    )
    assert (REPO / "report" / "workflow.rst").is_file()


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, str]:
    workdir = reference_run(tmp_path_factory)
    out = tmp_path_factory.mktemp("report") / "report.html"
    run_snakemake(workdir, "--report", str(out), "--configfile", TINY_CONFIG, timeout=600)
    assert out.is_file() and out.stat().st_size > 0
    return workdir, out.read_text()


def test_report_embeds_every_figure_with_a_caption(report):
    workdir, html = report
    results = _js_value(html, "results")
    figures = sorted(
        p.relative_to(workdir).as_posix()
        for p in (workdir / "results" / "figures").rglob("*")
        if p.is_file() and p.suffix in FIGURE_SUFFIXES
    )
    assert figures, "the run produced no figures"
    # Every figure is in the report (as PNG or as PDF: one of its formats is enough).
    in_report = {Path(k).with_suffix("").as_posix() for k in results}
    missing = sorted({Path(f).with_suffix("").as_posix() for f in figures} - in_report)
    assert not missing, f"figures absent from the report: {missing}"
    for key, entry in results.items():
        path = workdir / key
        if path.suffix not in FIGURE_SUFFIXES:
            continue
        # Embedded bytes are the figure's bytes: nothing is linked to a file outside the report.
        uri = entry.get("data_uri", "")
        assert uri.startswith("data:") and ";base64," in uri, f"{key}: not embedded"
        assert base64.b64decode(uri.split(";base64,", 1)[1]) == path.read_bytes(), f"{key}: embedded bytes differ"
        caption = re.sub(r"<[^>]+>", " ", entry.get("caption") or "")
        assert len(caption.split()) >= 5, f"{key}: no caption"
        assert "{{" not in caption and "{%" not in caption, f"{key}: caption template not rendered: {caption!r}"


def test_report_is_self_contained_with_the_workflow_description(report):
    _, html = report
    desc = _js_value(html, "workflow_desc")
    assert "how similar are the internal representations" in desc
    assert "{{" not in desc and "{%" not in desc, "report/workflow.rst template not rendered"
    assert "smallcnn" in desc and "mnist5k" in desc, "description does not name the run's config"
    # Nothing fetched from elsewhere when opened: no external scripts, stylesheets or images.
    assert not re.search(r"<script[^>]+\bsrc=", html), "report loads an external script"
    assert not re.search(r"<link[^>]+\bhref=[\"']https?:", html), "report loads an external stylesheet"
    assert not re.search(r"<img[^>]+\bsrc=[\"']https?:", html), "report loads an external image"


def test_report_holds_the_benchmark_table(report):
    """Wall time and peak memory of every heavy job (rule benchmark_summary) are in the report."""
    workdir, html = report
    results = _js_value(html, "results")
    key = "results/benchmarks/summary.csv"
    assert key in results, sorted(results)
    assert (workdir / key).read_text().startswith("stage,job,wall_s,max_rss_mb")
    caption = re.sub(r"<[^>]+>", " ", results[key].get("caption") or "")
    assert "peak" in caption and "wall" in caption.lower(), caption


def test_report_items_are_labelled_png_only_with_the_sanity_tables(report):
    """Every item has labels; figures enter as PNG only (the PDFs stay in results/figures); the
    cross-family sanity tables are in the report."""
    _, html = report
    results = _js_value(html, "results")
    assert not [k for k in results if k.endswith(".pdf")], "PDFs in the report"
    unlabelled = [k for k, entry in results.items() if not entry.get("labels")]
    assert not unlabelled, f"report items without labels: {unlabelled}"
    for name in ("more_similar_than_itself", "more_similar_summary", "specificity"):
        assert f"results/sanity/{name}.csv" in results, sorted(results)
