"""Facts about the built-in datasets that the configuration checks need, without numpy or torch.

Why apart from :mod:`repmatch.data`: the settings are checked while Snakemake parses the
workflow and inside the light table/figure jobs; they must not import the data loaders.
"""

from __future__ import annotations

DATASETS = ("mnist5k", "mnist", "fashionmnist", "cifar10", "cifar100")
MNIST5K_SIZE = 5_000
#: (training, test) images of the torchvision datasets' official splits.
TORCHVISION_SIZES = {"mnist": (60_000, 10_000), "fashionmnist": (60_000, 10_000), "cifar10": (50_000, 10_000),
                     "cifar100": (50_000, 10_000)}  # fmt: skip


def dataset_sizes(name: str, n_test: int) -> tuple[int, int]:
    """(training, test) set sizes of dataset ``name`` before any subsampling (``n_test``: mnist5k's test size)."""
    if name == "mnist5k":
        return MNIST5K_SIZE - n_test, n_test
    return TORCHVISION_SIZES[name]
