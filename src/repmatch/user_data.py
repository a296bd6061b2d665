"""The user's own data: an image folder (torchvision ``ImageFolder`` layout) or a dataset factory
(``"package.module:function"`` returning ``(train, test)``), turned into plain arrays.

Why arrays: the built-in datasets are held in memory as (n, C, H, W) arrays with integer labels;
converting the user's data to the same form once, at the split, means every later stage (the
recorded split, training, the caches, stitching) is unchanged and the split is checked the same
way (a fingerprint of the arrays, the sample ids).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .datasets import list_imagefolder
from .user_code import import_object

if TYPE_CHECKING:
    from .settings import DataSettings


class UserDataError(RuntimeError):
    """The user's image folder or dataset factory gave something that is not an image dataset."""


RawSplit = tuple[np.ndarray, np.ndarray]


def read_imagefolder(data: DataSettings) -> tuple[RawSplit, RawSplit, list[str]]:
    """``(train, test, classes)`` of ``data.data_root``: uint8 (n, C, H, W) images resized to
    ``data.image_size`` squared (bilinear) in ``data.image_mode`` (RGB: 3 channels, L: 1), int64 labels."""
    from PIL import Image, UnidentifiedImageError

    try:
        listing = list_imagefolder(data.data_root or "")
    except ValueError as err:
        raise UserDataError(f"data.data_root: {err}") from err
    size = data.image_size

    def load(items: Sequence[tuple[str, int]]) -> RawSplit:
        x = np.empty((len(items), size, size, 3 if data.image_mode == "RGB" else 1), dtype=np.uint8)
        for k, (path, _) in enumerate(items):
            try:
                with Image.open(path) as img:
                    arr = np.asarray(img.convert(data.image_mode).resize((size, size), Image.Resampling.BILINEAR))
            except (OSError, UnidentifiedImageError) as err:
                raise UserDataError(f"image {path} cannot be read ({err})") from err
            x[k] = arr.reshape(size, size, -1)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2)), np.asarray([label for _, label in items], dtype=np.int64)

    return load(listing.train), load(listing.test), list(listing.classes)


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _image_chw(item: Any, where: str) -> np.ndarray:
    """One image as a (C, H, W) array: a tensor or array is (C, H, W) or (H, W); a PIL image is (H, W[, C])."""
    if hasattr(item, "getbands"):  # a PIL image: height, width, channels last
        arr = np.asarray(item)
        return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    arr = _to_numpy(item)
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim != 3:
        raise UserDataError(f"{where}: an image must be (C, H, W) or (H, W), got shape {arr.shape}")
    return arr


def _label(value: Any, where: str) -> int:
    arr = _to_numpy(value)
    if arr.size != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise UserDataError(f"{where}: a label must be one integer class index, got {value!r}")
    return int(arr.reshape(()))


def to_arrays(obj: Any, where: str) -> RawSplit:
    """(images (n, C, H, W), labels (n,) int64) from what a factory returned for one split.

    Accepted: a pair ``(x, y)`` of arrays or tensors (``x``: (n, C, H, W) or (n, H, W)), or a
    dataset (anything with ``len`` and indexing, e.g. a ``torch.utils.data.Dataset``) whose items
    are ``(image, label)``; images as tensors/arrays (C, H, W) or PIL images.
    """
    if isinstance(obj, (tuple, list)) and len(obj) == 2 and all(hasattr(v, "shape") for v in obj) \
            and len(getattr(obj[0], "shape")) >= 2 and len(getattr(obj[1], "shape")) == 1:
        x, y = _to_numpy(obj[0]), _to_numpy(obj[1])
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4:
            raise UserDataError(f"{where}: images must be (n, C, H, W) or (n, H, W), got shape {x.shape}")
        if len(x) != len(y):
            raise UserDataError(f"{where}: {len(x)} images but {len(y)} labels")
        if not np.issubdtype(y.dtype, np.integer):
            raise UserDataError(f"{where}: labels must be integer class indices, got dtype {y.dtype}")
        return x, y.astype(np.int64)
    if not (hasattr(obj, "__len__") and hasattr(obj, "__getitem__")):
        raise UserDataError(f"{where}: expected a dataset of (image, label) items or a pair (images, labels), "
                            f"got {type(obj).__name__}")
    n = len(obj)
    if n == 0:
        raise UserDataError(f"{where}: the dataset is empty")
    images, labels = [], []
    for k in range(n):
        item = obj[k]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise UserDataError(f"{where}: item {k} is not an (image, label) pair")
        images.append(_image_chw(item[0], f"{where} item {k}"))
        labels.append(_label(item[1], f"{where} item {k}"))
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise UserDataError(f"{where}: images of different shapes {sorted(shapes)[:3]}; resize them in the factory")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def read_factory(data: DataSettings) -> tuple[RawSplit, RawSplit]:
    """Call ``data.factory(**data.factory_kwargs)`` and convert its ``(train, test)`` to arrays."""
    fn = import_object(data.factory or "", "data.factory")
    out = fn(**dict(data.factory_kwargs))
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise UserDataError(f"data.factory {data.factory!r} must return (train, test), got {type(out).__name__}")
    train = to_arrays(out[0], f"data.factory {data.factory!r} train set")
    test = to_arrays(out[1], f"data.factory {data.factory!r} test set")
    if train[0].shape[1:] != test[0].shape[1:]:
        raise UserDataError(f"data.factory {data.factory!r}: train images {train[0].shape[1:]} and test images "
                            f"{test[0].shape[1:]} differ in shape")
    return train, test


def check_labels(y_train: np.ndarray, y_test: np.ndarray, where: str) -> int:
    """The number of classes (largest label + 1); labels must be non-negative."""
    low = int(min(y_train.min(), y_test.min()))
    if low < 0:
        raise UserDataError(f"{where}: labels must be class indices 0, 1, ..., found {low}")
    return int(max(y_train.max(), y_test.max()) + 1)


def to_float(x: np.ndarray) -> np.ndarray:
    """float32 images; uint8 images are scaled to [0, 1] first (as the built-in datasets)."""
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)


def standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both splits minus the training split's per-channel mean, over its per-channel std (float64 sums).

    Why the training split's: the built-in datasets use published per-channel values computed on
    their training sets; for the user's data the same is computed here, never from the test images.
    """
    mean = train.mean(axis=(0, 2, 3), dtype=np.float64).reshape(1, -1, 1, 1)
    std = train.std(axis=(0, 2, 3), dtype=np.float64).reshape(1, -1, 1, 1)
    std = np.where(std > 0, std, 1.0)  # a constant channel stays constant (zero), not NaN
    return ((train - mean) / std).astype(np.float32), ((test - mean) / std).astype(np.float32)
