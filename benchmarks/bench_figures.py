"""The similarity figures (the ``similarity_figures`` job) drawn the former way vs now, in one run.

What is timed: ``repmatch.similarity.stages.figures_stage``, the function the job runs, on a
synthetic similarity table of the default run's shape (3 networks of 6 layers, the 14 measures of
``config.yaml``; symmetric measures stored once per unordered pair, the 2 asymmetric ones in both
orientations: 6 panels per "pairs" figure, 28 figures, each as PNG + PDF):

* baseline: ``save_figure(..., tight_per_format=True)``, the former saving: ``bbox_inches="tight"``
  for each format, i.e. per format the layout engine, a measuring draw and the draw;
* now: ``save_figure`` as the pipeline calls it: the layout and the tight box once per figure
  (``repmatch.plotting.freeze_layout``), one draw per format.

Both arms write every file; the script then checks that they drew the same PNGs (pixel for pixel)
and prints the seconds per arm, per figure, and the ratio.

What the in-run baseline does not cover: the other changes made with it are in both arms -- the
panels' grids pivoted once per measure instead of once per panel with ``pandas.pivot_table``,
titles at a fixed height (matplotlib re-measured the tick labels at every pass to place them) and
the per-cell value labels left out of the layout's measuring. The ratio printed is the saving
alone (1.36x with the 14 measures on the development machine, 2 shared CPU cores, 2026-12-04). The
whole change, timed on the default run's own table with the code before and after it, alternating:
``figures_stage`` 37.0-37.9 s -> 22.5-22.8 s; the same PNGs pixel for pixel.

    python benchmarks/bench_figures.py --quick     # 4 measures, ~20 s on 2 CPU cores
    python benchmarks/bench_figures.py             # the default's 14 measures, ~1 min
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

import repmatch.similarity.plots as similarity_plots
from repmatch import paths
from repmatch.io import write_table
from repmatch.plotting import plt, save_figure
from repmatch.settings import load_settings
from repmatch.similarity.registry import get_measure
from repmatch.similarity.stages import figures_stage

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc1"]


def synthetic_table(measures: list[str], n_networks: int, seed: int = 0) -> pd.DataFrame:
    """A similarity table shaped like the aggregate one: every unordered pair of networks (itself
    included) per symmetric measure, every ordered pair per asymmetric one; a band-diagonal grid
    (similar layers near the diagonal) plus noise, so colour scales and labels vary like real ones."""
    rng = np.random.default_rng(seed)
    models = [f"smallcnn_seed{k}" for k in range(n_networks)]
    n = len(LAYERS)
    ia, ib = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    rows = []
    for method in measures:
        pairs = [(a, b) for i, a in enumerate(models) for j, b in enumerate(models)
                 if i <= j or not get_measure(method).symmetric]  # fmt: skip
        for a, b in pairs:
            value = np.clip(1 - np.abs(ia - ib) / n + 0.05 * rng.standard_normal((n, n)), 0, 1)
            if a == b and get_measure(method).symmetric:
                value = (value + value.T) / 2
                np.fill_diagonal(value, 1.0)
            for i, j in zip(ia.ravel(), ib.ravel()):
                v = float(value[i, j])
                rows.append({"model_a": a, "layer_a": LAYERS[i], "index_a": int(i), "model_b": b,
                             "layer_b": LAYERS[j], "index_b": int(j), "method": method, "value": v,
                             "conv_mode": "gap", "ci_low": v - 0.02, "ci_high": v + 0.02, "n_boot": 100,
                             "p_column": np.nan, "p_row": np.nan})  # fmt: skip
    return pd.DataFrame(rows)


def run_stage(settings, table: Path, folder: Path, *, baseline: bool) -> float:
    """Seconds of one ``figures_stage`` call writing into ``folder`` (the former saving if ``baseline``)."""
    names = paths.similarity_figure_names(settings.similarity.measures)
    outputs = {f"{name}_{fmt}": folder / f"{name}.{fmt}" for name in names for fmt in ("png", "pdf")}
    folder.mkdir(parents=True, exist_ok=True)
    similarity_plots.save_figure = partial(save_figure, tight_per_format=True) if baseline else save_figure
    try:
        start = time.perf_counter()
        figures_stage(settings=settings.similarity, uncertainty=settings.uncertainty, table=table, outputs=outputs,
                      log=logging.getLogger("bench_figures"))  # fmt: skip
        return time.perf_counter() - start
    finally:
        similarity_plots.save_figure = save_figure


def same_pngs(a: Path, b: Path) -> tuple[int, int]:
    """(PNGs drawn identically, PNGs compared) between two output folders."""
    files = sorted(a.glob("*.png"))
    same = sum(np.array_equal(plt.imread(f), plt.imread(b / f.name)) for f in files)
    return same, len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the first 4 measures only (~20 s on 2 CPU cores)")
    parser.add_argument("--networks", type=int, default=3, help="networks in the table (default 3, as the default run)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per arm, alternating; the fastest counts")
    args = parser.parse_args()

    settings = load_settings(REPO / "config.yaml")
    if args.quick:
        quick = dataclasses.replace(settings.similarity, measures=tuple(settings.similarity.measures[:4]))
        settings = dataclasses.replace(settings, similarity=quick)
    measures = list(settings.similarity.measures)
    df = synthetic_table(measures, args.networks)
    n_figures = 2 * len(measures)
    n_panels = args.networks * (args.networks + 1) // 2
    print(f"{len(measures)} measures x {{pairs ({n_panels} panels), cross_seed}} = {n_figures} figures, PNG + PDF; "
          f"{args.networks} networks of {len(LAYERS)} layers, {len(df)} table rows")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_table(df, root / "similarity.parquet")
        run_stage(settings, root / "similarity.parquet", root / "warmup", baseline=False)  # imports, font cache
        times: dict[str, list[float]] = {"baseline": [], "now": []}
        for _ in range(args.repeat):
            for arm in ("baseline", "now"):
                times[arm].append(run_stage(settings, root / "similarity.parquet", root / arm, baseline=arm == "baseline"))
        same, total = same_pngs(root / "baseline", root / "now")
    t_base, t_now = min(times["baseline"]), min(times["now"])
    print(f"baseline (bbox_inches='tight' per format): {t_base:6.2f} s  ({t_base / n_figures:.3f} s per figure)")
    print(f"now (layout and tight box once):          {t_now:6.2f} s  ({t_now / n_figures:.3f} s per figure)")
    print(f"ratio baseline / now: {t_base / t_now:.2f}x;  identical PNGs: {same} of {total}")


if __name__ == "__main__":
    main()
