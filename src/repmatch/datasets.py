"""Facts about the datasets that the configuration checks need, without numpy or torch.

Why apart from :mod:`repmatch.data`: the settings are checked while Snakemake parses the
workflow and inside the light table/figure jobs; they must not import the data loaders.
Besides the built-in datasets, a user's image folder (``data.name: imagefolder``, torchvision's
``ImageFolder`` layout) is listed here, so a missing folder or an empty class fails at parse time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATASETS = ("mnist5k", "mnist", "fashionmnist", "cifar10", "cifar100")
#: Datasets the user brings: an image folder, or a factory function returning (train, test).
USER_DATASETS = ("imagefolder", "factory")
MNIST5K_SIZE = 5_000
#: (training, test) images of the torchvision datasets' official splits.
TORCHVISION_SIZES = {"mnist": (60_000, 10_000), "fashionmnist": (60_000, 10_000), "cifar10": (50_000, 10_000),
                     "cifar100": (50_000, 10_000)}  # fmt: skip
#: (channels, height, width) of an input and number of classes of each built-in dataset (the
#: parse-time forward check of a network from the user's code, repmatch.networks).
DATASET_INPUTS: dict[str, tuple[tuple[int, int, int], int]] = {
    "mnist5k": ((1, 28, 28), 10), "mnist": ((1, 28, 28), 10), "fashionmnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10), "cifar100": ((3, 32, 32), 100),
}  # fmt: skip
#: File endings an image folder's images may have (torchvision's ``IMG_EXTENSIONS``).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGEFOLDER_SPLITS = ("train", "test")


def dataset_sizes(name: str, n_test: int) -> tuple[int, int]:
    """(training, test) set sizes of built-in dataset ``name`` before any subsampling (``n_test``: mnist5k's test size)."""
    if name == "mnist5k":
        return MNIST5K_SIZE - n_test, n_test
    return TORCHVISION_SIZES[name]


@dataclass(frozen=True)
class ImageFolderListing:
    """The images of an ``ImageFolder`` tree: class names (sorted; label = position) and, per split,
    ``(path, label)`` in ImageFolder's order (by class, then by file name)."""

    root: Path
    classes: tuple[str, ...]
    train: tuple[tuple[str, int], ...]
    test: tuple[tuple[str, int], ...]


def _class_folders(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _images(folder: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        out += [os.path.join(dirpath, f) for f in sorted(filenames) if f.lower().endswith(IMAGE_EXTENSIONS)]
    return out


def list_imagefolder(root: str | os.PathLike[str]) -> ImageFolderListing:
    """List ``root/train/<class>/*`` and ``root/test/<class>/*``; a ``ValueError`` names the path that is wrong.

    Classes come from ``train/`` (sorted, as torchvision's ImageFolder); ``test/`` may lack a class
    but must not have one that ``train/`` lacks (its label would mean nothing to the networks).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ValueError(f"image folder {str(root)!r} does not exist")
    listed: dict[str, list[tuple[str, int]]] = {}
    classes: list[str] = []
    for split in IMAGEFOLDER_SPLITS:
        folder = root / split
        if not folder.is_dir():
            raise ValueError(f"image folder {str(root)!r} has no {split}/ subfolder (expected {root}/{split}/<class>/<image>)")
        names = _class_folders(folder)
        if not names:
            raise ValueError(f"{folder} holds no class folders (expected {folder}/<class>/<image>)")
        if split == "train":
            classes = names
        else:
            extra = sorted(set(names) - set(classes))
            if extra:
                raise ValueError(f"{folder} has classes {extra} that {root / 'train'} lacks")
        items: list[tuple[str, int]] = []
        for name in names:
            files = _images(folder / name)
            if not files:
                raise ValueError(f"class folder {folder / name} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            label = classes.index(name)
            items += [(f, label) for f in files]
        listed[split] = items
    return ImageFolderListing(root, tuple(classes), tuple(listed["train"]), tuple(listed["test"]))
