"""The backbone's figure: train and test accuracy of every trained network."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import read_json
from ..plotting import plt, save_figure

SUMMARY_COLUMNS = ("model", "arch", "seed", "epochs", "train_accuracy", "test_accuracy", "test_loss", "train_seconds")


def training_table(metrics_files: Sequence[str | os.PathLike[str]]) -> pd.DataFrame:
    """One row per network, from the ``metrics.json`` files of the train jobs."""
    rows = [{k: m[k] for k in SUMMARY_COLUMNS} for m in map(read_json, metrics_files)]
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS)).sort_values("seed").reset_index(drop=True)


def plot_training_accuracy(df: pd.DataFrame, path_stem: str | os.PathLike[str]) -> list[Path]:
    """Bar chart of train / test accuracy per network."""
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(df) + 2), 3.5))
    pos = np.arange(len(df))
    ax.bar(pos - 0.2, df["train_accuracy"], 0.4, label="train")
    ax.bar(pos + 0.2, df["test_accuracy"], 0.4, label="test")
    ax.set_xticks(pos, df["model"], rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="lower right")
    return save_figure(fig, path_stem)
