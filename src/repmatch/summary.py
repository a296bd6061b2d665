"""Training summary: one row per trained network, and a bar chart of train/test accuracy."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .io import read_json, write_table
from .plotting import plt, save_figure


def training_table(metrics_files: Sequence[str | os.PathLike[str]]) -> pd.DataFrame:
    rows = []
    for path in metrics_files:
        m = read_json(path)
        rows.append({k: m[k] for k in ("model", "arch", "seed", "epochs", "train_accuracy", "test_accuracy", "test_loss", "train_seconds")})
    return pd.DataFrame(rows).sort_values("seed").reset_index(drop=True)


def training_summary(metrics_files: Sequence[str | os.PathLike[str]], table_path: str | os.PathLike[str], figure_path: str | os.PathLike[str]) -> pd.DataFrame:
    df = training_table(metrics_files)
    write_table(df, table_path)
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(df) + 2), 3.5))
    pos = np.arange(len(df))
    ax.bar(pos - 0.2, df["train_accuracy"], 0.4, label="train")
    ax.bar(pos + 0.2, df["test_accuracy"], 0.4, label="test")
    ax.set_xticks(pos, df["model"], rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="lower right")
    stem, fmt = os.path.splitext(str(figure_path))
    save_figure(fig, stem, formats=(fmt.lstrip("."),))
    return df
