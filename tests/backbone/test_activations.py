import json

import numpy as np
import pytest
import torch

from repmatch.backbone.activations import ActivationCache, CacheError, extract_activations, open_pair, write_cache
from repmatch.networks import build_model


@pytest.fixture
def cache(tmp_path):
    rng = np.random.default_rng(0)
    acts = {"conv1": rng.normal(size=(10, 4, 3, 3)).astype(np.float32), "fc1": rng.normal(size=(10, 5)).astype(np.float32)}
    ids = np.arange(100, 110)
    path = write_cache(tmp_path / "model", acts, ids, {"model": "m"})
    return path, acts, ids


def test_round_trip_is_exact_and_memory_mapped(cache):
    path, acts, ids = cache
    c = ActivationCache(path, expected_ids=ids)
    assert c.layers == ["conv1", "fc1"]
    assert c.shape("conv1") == (10, 4, 3, 3)
    loaded = c.load("conv1")
    assert isinstance(loaded, np.memmap)
    np.testing.assert_array_equal(loaded, acts["conv1"])
    np.testing.assert_array_equal(c.sample_ids, ids)
    assert not list(path.parent.glob(".*.tmp"))  # no temp leftovers


def test_flipped_byte_is_detected(cache):
    path, _, _ = cache
    f = path / "fc1.npy"
    data = bytearray(f.read_bytes())
    data[-3] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(CacheError, match="sha256"):
        ActivationCache(path).load("fc1")


def test_wrong_shape_is_detected(cache):
    path, acts, _ = cache
    np.save(path / "fc1.npy", acts["fc1"][:9])
    manifest = json.loads((path / "manifest.json").read_text())
    from repmatch.backbone.activations import sha256_file

    manifest["layers"][1]["sha256"] = sha256_file(path / "fc1.npy")  # checksum made consistent: the shape check must catch it
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CacheError, match="shape"):
        ActivationCache(path).load("fc1")


def test_reordered_ids_are_detected(cache, tmp_path):
    path, acts, ids = cache
    with pytest.raises(CacheError, match="different order"):
        ActivationCache(path, expected_ids=ids[::-1])
    other = write_cache(tmp_path / "other", acts, ids[::-1])
    with pytest.raises(CacheError, match="different order"):
        open_pair(path, other)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["sample_ids"] = manifest["sample_ids"][::-1]  # edited without its checksum
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CacheError, match="checksum"):
        ActivationCache(path)


def test_nan_activations_and_missing_cache(tmp_path, cache):
    path, acts, ids = cache
    bad = dict(acts)
    bad["fc1"] = acts["fc1"].copy()
    bad["fc1"][0, 0] = np.nan
    nan_path = write_cache(tmp_path / "nan", bad, ids)
    with pytest.raises(CacheError, match="NaN"):
        ActivationCache(nan_path).load("fc1")
    with pytest.raises(CacheError, match="manifest.json"):
        ActivationCache(tmp_path / "nowhere")
    with pytest.raises(CacheError, match="not in activation cache"):
        ActivationCache(path).load("conv9")


def test_failed_write_leaves_nothing_finished_looking(tmp_path):
    acts = {"a": np.zeros((3, 2), np.float32), "b": np.zeros((4, 2), np.float32)}  # b has the wrong row count
    with pytest.raises(CacheError, match="rows"):
        write_cache(tmp_path / "model", acts, [1, 2, 3])
    assert not (tmp_path / "model").exists()
    assert list(tmp_path.iterdir()) == []


def test_extract_matches_a_direct_forward():
    torch.manual_seed(0)
    model = build_model("smallcnn", 10, 1, 28).eval()
    x = np.random.default_rng(0).normal(size=(7, 1, 28, 28)).astype(np.float32)
    acts = extract_activations(model, x, ["conv2", "fc1"], batch_size=3)
    with torch.no_grad():
        ref = model.features(torch.from_numpy(x), ["conv2", "fc1"])
    for name in ("conv2", "fc1"):
        np.testing.assert_allclose(acts[name], ref[name].numpy(), rtol=1e-5, atol=1e-6)


def test_atomic_outputs_respect_the_umask(tmp_path):
    import os

    from repmatch.io import write_json

    write_json({"a": 1}, tmp_path / "x.json")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o666 & ~mask
