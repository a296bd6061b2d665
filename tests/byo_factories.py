"""User code for the bring-your-own tests: a dataset factory, similarity measures and an image-folder
writer, importable as ``byo_factories:<name>`` (tests/ is on the path in the tests and in the
workflow copies they run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

# --- data -----------------------------------------------------------------------------------------


def write_imagefolder(root: Path, n_train: int = 6, n_test: int = 4, classes=("cat", "dog", "eel"), size: int = 12,
                      seed: int = 0) -> Path:
    """A tiny ImageFolder tree of PNGs: train/<class>/<k>.png and test/<class>/<k>.png; each class has
    its own mean colour, so a network can learn it."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(n):
                base = np.array([60 + 70 * c, 200 - 60 * c, 40 + 90 * (c % 2)], dtype=float)
                img = np.clip(base + rng.normal(0, 25, (size, size + 2 * (k % 2), 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{k:03d}.png")
    return root


class PairDataset(torch.utils.data.Dataset):
    """A torch Dataset of (tensor image (C, H, W), int label) items."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = torch.from_numpy(x), y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, k: int):
        return self.x[k], int(self.y[k])


def blobs(n_train: int = 60, n_test: int = 40, size: int = 10, as_dataset: bool = True, seed: int = 0):
    """(train, test) of two-class 1 x size x size float images: a torch Dataset each, or (x, y) array pairs."""
    rng = np.random.default_rng(seed)

    def make(n):
        y = np.arange(n) % 2
        x = (rng.normal(0, 1, (n, 1, size, size)) + 2.0 * y[:, None, None, None]).astype(np.float32)
        return x, y.astype(np.int64)

    train, test = make(n_train), make(n_test)
    return (PairDataset(*train), PairDataset(*test)) if as_dataset else (train, test)


def not_a_dataset():
    return 42, 43


# --- similarity measures: f(x, y) -> float on (n, d) float64 arrays -------------------------------


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA, written here from the formula (centred Gram products)."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    return float(np.linalg.norm(xc.T @ yc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)))


def mean_cosine(x: np.ndarray, y: np.ndarray) -> float:
    """Cosine of the two layers' mean activation vectors (zero-padded to one width): invariant to
    isotropic scaling, symmetric, 1 on identical input; not to translation or a rotation of one side."""
    mx, my = x.mean(0), y.mean(0)
    width = max(len(mx), len(my))
    mx, my = np.pad(mx, (0, width - len(mx))), np.pad(my, (0, width - len(my)))
    return float(mx @ my / (np.linalg.norm(mx) * np.linalg.norm(my)))
