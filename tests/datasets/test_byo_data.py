"""Your own data: an image folder (ImageFolder layout) and a dataset factory become the same
in-memory arrays and the same recorded split as the built-in datasets; bad folders and factories
fail at parse time naming the key."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from byo_factories import write_imagefolder
from PIL import Image

from repmatch.data import DataError, check_split, load_splits
from repmatch.config_checks import checked_settings
from repmatch.settings import ConfigError, section_settings
from repmatch.split_check import check_split_record

MINIMAL = {"seeds": [0, 1], "model": {"arch": "smallcnn"}, "train": {"epochs": 1}}


def _config(data: dict) -> dict:
    return copy.deepcopy(MINIMAL) | {"data": data}


@pytest.fixture()
def folder(tmp_path):
    return write_imagefolder(tmp_path / "imgs")


def test_imagefolder_loads_as_resized_standardised_arrays(folder):
    data = section_settings("data", {"name": "imagefolder", "data_root": str(folder), "image_size": 8, "n_probe": 5})
    s = load_splits(data)
    assert s.train.x.shape == (18, 3, 8, 8) and s.test.x.shape == (12, 3, 8, 8) and s.train.x.dtype == np.float32
    assert s.num_classes == 3 and s.in_channels == 3 and s.image_size == 8
    # ImageFolder's order: classes sorted, files sorted; labels = class positions.
    np.testing.assert_array_equal(s.train.y, np.repeat([0, 1, 2], 6))
    np.testing.assert_array_equal(s.test.ids, np.arange(12) + 18)  # test ids offset by the training size
    # Standardised with the training split's per-channel statistics.
    np.testing.assert_allclose(s.train.x.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(s.train.x.std(axis=(0, 2, 3)), 1, atol=1e-4)
    # A naive reference for one image: PIL resize, /255, the training statistics.
    raw = np.stack([np.asarray(Image.open(p).convert("RGB").resize((8, 8), Image.Resampling.BILINEAR))
                    for p in sorted((folder / "train").glob("*/*.png"))]).astype(np.float64) / 255  # fmt: skip
    mean, std = raw.mean(axis=(0, 1, 2)), raw.std(axis=(0, 1, 2))
    first_test = np.asarray(Image.open(folder / "test" / "cat" / "000.png").convert("RGB").resize((8, 8), Image.Resampling.BILINEAR)) / 255
    np.testing.assert_allclose(s.test.x[0], ((first_test - mean) / std).transpose(2, 0, 1), atol=1e-5)
    assert set(s.probe.ids) <= set(s.test.ids) and len(s.probe) == 5
    check_split_record(s.record())  # the same recorded split format as the built-in datasets


def test_imagefolder_split_is_deterministic_and_a_changed_image_is_caught(folder):
    data = section_settings("data", {"name": "imagefolder", "data_root": str(folder), "n_probe": 4, "image_mode": "L"})
    a, b = load_splits(data), load_splits(data)
    assert a.in_channels == 1
    assert a.record() == b.record()
    img = folder / "train" / "dog" / "002.png"
    Image.fromarray(np.zeros((12, 12, 3), dtype=np.uint8)).save(img)
    with pytest.raises(DataError, match="fingerprint"):
        check_split(load_splits(data), a.record())


@pytest.mark.parametrize("as_dataset", [True, False])
def test_factory_datasets_and_arrays_give_the_same_split(as_dataset):
    data = section_settings("data", {"name": "factory", "factory": "byo_factories:blobs", "n_probe": 10, "n_train": 50,
                                     "factory_kwargs": {"as_dataset": as_dataset, "size": 9}, "standardise": False})
    s = load_splits(data)
    from byo_factories import blobs

    (x_tr, y_tr), (x_te, y_te) = blobs(size=9, as_dataset=False)
    assert s.num_classes == 2 and s.train.x.shape == (50, 1, 9, 9) and len(s.test) == 40
    np.testing.assert_array_equal(s.test.x, x_te)  # standardise: false keeps the factory's values
    np.testing.assert_array_equal(s.train.x, x_tr[s.train.ids])
    np.testing.assert_array_equal(s.train.y, y_tr[s.train.ids])
    check_split_record(s.record())


def test_factory_that_returns_nonsense_fails_naming_it():
    with pytest.raises(DataError, match="byo_factories:not_a_dataset"):
        load_splits(section_settings("data", {"name": "factory", "factory": "byo_factories:not_a_dataset"}))


def test_bad_image_folders_fail_at_parse_time_naming_the_path(tmp_path, folder):
    with pytest.raises(ConfigError, match=r"at data.data_root: image folder .*nowhere.* does not exist"):
        checked_settings(_config({"name": "imagefolder", "data_root": str(tmp_path / "nowhere")}))
    with pytest.raises(ConfigError, match=r"at data.data_root: .*imagefolder"):
        checked_settings(_config({"name": "imagefolder"}))
    (tmp_path / "flat" / "train").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"at data.data_root: .*flat/train holds no class folders"):
        checked_settings(_config({"name": "imagefolder", "data_root": str(tmp_path / "flat")}))
    (folder / "test" / "owl").mkdir()
    with pytest.raises(ConfigError, match=r"classes \['owl'\]"):
        checked_settings(_config({"name": "imagefolder", "data_root": str(folder)}))
    (folder / "test" / "owl").rmdir()
    (folder / "train" / "emu").mkdir()
    with pytest.raises(ConfigError, match=r"train/emu holds no images"):
        checked_settings(_config({"name": "imagefolder", "data_root": str(folder)}))
    (folder / "train" / "emu").rmdir()
    with pytest.raises(ConfigError, match=r"at data.n_probe: 500 probe samples do not fit the test set of 12"):
        checked_settings(_config({"name": "imagefolder", "data_root": str(folder)}))
    checked_settings(_config({"name": "imagefolder", "data_root": str(folder), "n_probe": 12}))


def test_bad_factories_fail_at_parse_time_naming_the_key():
    with pytest.raises(ConfigError, match=r"at data.factory: cannot import module 'no_such_module'"):
        checked_settings(_config({"name": "factory", "factory": "no_such_module:make", "n_probe": 10}))
    with pytest.raises(ConfigError, match=r"at data.factory: module 'byo_factories' has no attribute 'nope'"):
        checked_settings(_config({"name": "factory", "factory": "byo_factories:nope", "n_probe": 10}))
    with pytest.raises(ConfigError, match=r"at data.factory: data.name is 'factory'"):
        checked_settings(_config({"name": "factory", "n_probe": 10}))
    with pytest.raises(ConfigError, match=r"at data.factory: set, but data.name is 'mnist5k'"):
        checked_settings(_config({"name": "mnist5k", "factory": "byo_factories:blobs"}))
    with pytest.raises(ConfigError, match=r"at data.factory"):  # the schema's pattern
        checked_settings(_config({"name": "factory", "factory": "byo_factories.blobs"}))
    checked_settings(_config({"name": "factory", "factory": "byo_factories:blobs", "n_probe": 10}))


def test_user_data_keys_do_not_change_a_builtin_datasets_rerun_trigger():
    base = section_settings("data", {"name": "mnist5k"})
    assert set(base.result_params()) == {"name", "split_seed", "n_test", "n_train", "n_probe"}
    folder = section_settings("data", {"name": "imagefolder", "data_root": "/x"}).result_params()
    assert {"image_size", "image_mode", "standardise"} <= set(folder) and "factory" not in folder
