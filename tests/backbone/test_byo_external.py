"""Your own activations: folders of activations made elsewhere (ids + one .npy per layer) are
checked like the cache before any job (same sample ids across networks, the probe ids present) and
imported as ordinary caches of the probe sets."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from repmatch.backbone.activations import ActivationCache
from repmatch.backbone.external import ExternalActivationError, check_networks, read_external
from repmatch.backbone.external_import import check_against_split, import_stage, probe_sets
from repmatch.data import load_splits
from repmatch.io import write_json
from repmatch.logs import job_logger
from repmatch.config_checks import checked_settings
from repmatch.settings import ConfigError, section_settings

LOG = job_logger("external", None)
DATA = {"name": "mnist5k", "split_seed": 0, "n_test": 300, "n_probe": 40}
BASE = {"seeds": [0, 1], "data": DATA, "model": {"arch": "smallcnn", "layers": ["conv1", "conv3", "fc1"]},
        "train": {"epochs": 1}, "subspace_match": {"n_probe": 60}}  # fmt: skip


def write_external(folder, ids, layers=None, seed=0, ids_as="npy", layer_order=None):
    """A folder of external activations: ids + one array per layer, rows in ``ids`` order."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    layers = layers or {"conv3": (4, 3, 3), "fc1": (5,)}
    for name, shape in layers.items():
        np.save(folder / f"{name}.npy", rng.standard_normal((len(ids), *shape)).astype(np.float32))
    if ids_as == "npy":
        np.save(folder / "ids.npy", np.asarray(ids, dtype=np.int64))
    else:
        record = {"sample_ids": [int(v) for v in ids]} | ({"layers": layer_order} if layer_order else {})
        (folder / "ids.json").write_text(json.dumps(record))
    return folder


@pytest.fixture(scope="module")
def splits():
    return load_splits(section_settings("data", DATA))


def _config(networks, **extra):
    return copy.deepcopy(BASE) | {"external_activations": {"networks": {k: str(v) for k, v in networks.items()}}} | extra


def test_probe_sets_from_the_record_are_the_caches_probe_sets(splits):
    sets = probe_sets(splits.record(), 60, DATA["split_seed"])
    np.testing.assert_array_equal(sets["similarity"], splits.probe.ids)
    np.testing.assert_array_equal(sets["subspace_match"], splits.subspace_probe(60, DATA["split_seed"]).ids)
    np.testing.assert_array_equal(probe_sets(splits.record(), None, 0)["subspace_match"], splits.test.ids)


def test_a_folder_is_read_in_its_declared_or_natural_layer_order(tmp_path):
    net = read_external("a", write_external(tmp_path / "a", [5, 3, 9], {"block10": (2,), "block2": (2,), "block1.1": (3,)}))
    assert net.layers == ("block1.1", "block2", "block10") and net.shapes["block2"] == (3, 2)
    net = read_external("b", write_external(tmp_path / "b", [5, 3, 9], {"x": (2,), "y": (2,)}, ids_as="json",
                                            layer_order=["y", "x"]))  # fmt: skip
    assert net.layers == ("y", "x") and list(net.ids) == [5, 3, 9]


@pytest.mark.parametrize("fault, words", [
    ("no_ids", "must hold exactly one of"),
    ("rows", "expected (N, ...) with N = 4"),
    ("dupes", "sample id 7 appears more than once"),
    ("ints", "must be floating point"),
    ("listed", "layers ['z'] are listed"),
])  # fmt: skip
def test_malformed_folders_fail_naming_the_file(tmp_path, fault, words):
    folder = write_external(tmp_path / "n", [1, 2, 7, 8], {"x": (2,)})
    if fault == "no_ids":
        (folder / "ids.npy").unlink()
    elif fault == "rows":
        np.save(folder / "x.npy", np.zeros((5, 2), np.float32))
    elif fault == "dupes":
        np.save(folder / "ids.npy", np.array([1, 7, 7, 8]))
    elif fault == "ints":
        np.save(folder / "x.npy", np.zeros((4, 2), np.int64))
    else:
        (folder / "ids.npy").unlink()
        (folder / "ids.json").write_text(json.dumps({"sample_ids": [1, 2, 7, 8], "layers": ["x", "z"]}))
    with pytest.raises(ExternalActivationError) as err:
        read_external("n", folder)
    assert words in str(err.value) and str(folder) in str(err.value)


def test_networks_on_different_samples_fail_naming_the_folder_and_first_differing_id(tmp_path):
    a = write_external(tmp_path / "a", [10, 11, 12, 13])
    b = write_external(tmp_path / "b", [10, 11, 14, 13])
    with pytest.raises(ExternalActivationError, match=r"b \('netb'\) hold different sample ids, first at row 2: sample id 12 vs 14"):
        check_networks({"neta": a, "netb": b})
    with pytest.raises(ConfigError, match=r"at external_activations.networks: .*row 2: sample id 12 vs 14"):
        checked_settings(_config({"neta": a, "netb": b}))


def test_parse_time_check_against_the_probe_set_names_the_first_missing_id(tmp_path, splits):
    good = write_external(tmp_path / "good", splits.test.ids[::-1])  # the whole test split, any order
    short = write_external(tmp_path / "short", splits.test.ids[:100])
    s = checked_settings(_config({"good": good}))
    check_against_split(s, tmp_path / "no_split_yet.json", ["similarity", "subspace_match"])  # loads the data
    split_json = tmp_path / "split.json"
    write_json(splits.record(), split_json)
    check_against_split(s, split_json, ["similarity", "subspace_match"])
    s_short = checked_settings(_config({"short": short}))
    missing = next(int(v) for v in splits.probe.ids if int(v) not in set(splits.test.ids[:100].tolist()))
    with pytest.raises(ExternalActivationError, match=rf"short \('short'\) lacks \d+ of the 40 sample ids of the similarity "
                                                      rf"probe set .* first sample id {missing};"):  # fmt: skip
        check_against_split(s_short, split_json, ["similarity"])


def test_config_errors_name_the_key(tmp_path):
    folder = write_external(tmp_path / "a", [1, 2])
    with pytest.raises(ConfigError, match=r"at external_activations.networks: name 'resnet_seed3' ends in _seed<N>"):
        checked_settings(_config({"resnet_seed3": folder}))
    with pytest.raises(ConfigError, match=r"at external_activations.networks: external activation folder .*nowhere"):
        checked_settings(_config({"ext": tmp_path / "nowhere"}))
    with pytest.raises(ConfigError, match=r"at external_activations.networks"):  # the schema's name pattern
        checked_settings(_config({"Bad__Name": folder}))
    other = write_external(tmp_path / "other", [1, 2], {"features": (3,)})
    with pytest.raises(ConfigError, match=r"at subspace_match.layer_pairs: 'corresponding' .*'ext'"):
        checked_settings(_config({"ext": other}))
    checked_settings(_config({"ext": other}, subspace_match={"layer_pairs": "all"}))


def test_import_writes_a_verified_cache_of_the_probe_rows(tmp_path, splits):
    ids = splits.test.ids[::-1]
    folder = write_external(tmp_path / "ext", ids)
    split_json = tmp_path / "split.json"
    write_json(splits.record(), split_json)
    out = import_stage(name="ext", folder=folder, split_json=split_json, out_dir=tmp_path / "cache", log=LOG, subspace_n_probe=None, split_seed=0,
                       probe_set="similarity", dtype="float64")  # fmt: skip
    cache = ActivationCache(out, expected_ids=splits.probe.ids)
    assert cache.layers == ["conv3", "fc1"]
    raw = np.load(folder / "fc1.npy")
    rows = [int(np.flatnonzero(ids == v)[0]) for v in splits.probe.ids]
    np.testing.assert_array_equal(cache.load("fc1"), raw[rows].astype(np.float64))  # the probe rows, in probe order
    sub = import_stage(name="ext", folder=folder, split_json=split_json, out_dir=tmp_path / "sub", log=LOG, subspace_n_probe=None, split_seed=0,
                       probe_set="subspace_match", dtype="float32")  # fmt: skip
    ActivationCache(sub, expected_ids=splits.test.ids)


def test_import_verifies_declared_checksums_and_finite_values(tmp_path, splits):
    from repmatch.backbone.activations import CacheError
    from repmatch.io import sha256_of_file

    folder = write_external(tmp_path / "ext", splits.test.ids, {"fc1": (3,)}, ids_as="json")
    record = json.loads((folder / "ids.json").read_text()) | {"sha256": {"fc1": sha256_of_file(folder / "fc1.npy")}}
    (folder / "ids.json").write_text(json.dumps(record))
    split_json = tmp_path / "split.json"
    write_json(splits.record(), split_json)
    kwargs = dict(subspace_n_probe=None, split_seed=0, probe_set="similarity", dtype="float32")
    import_stage(name="ext", folder=folder, split_json=split_json, out_dir=tmp_path / "ok", log=LOG, **kwargs)
    arr = np.load(folder / "fc1.npy")
    arr[int(np.flatnonzero(splits.test.ids == splits.probe.ids[0])[0]), 0] = np.nan
    np.save(folder / "fc1.npy", arr)
    with pytest.raises(CacheError, match="does not match its sha256"):
        import_stage(name="ext", folder=folder, split_json=split_json, out_dir=tmp_path / "bad", log=LOG, **kwargs)
    (folder / "ids.json").write_text(json.dumps({"sample_ids": record["sample_ids"]}))
    with pytest.raises(CacheError, match="NaN or Inf"):
        import_stage(name="ext", folder=folder, split_json=split_json, out_dir=tmp_path / "bad", log=LOG, **kwargs)
    assert not (tmp_path / "bad").exists()  # nothing half-written


def test_imported_token_conv_and_flat_layers_enter_the_similarity_engine(tmp_path, splits):
    """An external ViT-like network (tokens (N, 17, 8): CLS + 4 x 4 grid) against conv and flat layers."""
    from repmatch.similarity import similarity_table

    folder = write_external(tmp_path / "vit", splits.test.ids, {"block0": (17, 8), "block1": (17, 8)})
    other = write_external(tmp_path / "cnn", splits.test.ids, {"conv3": (4, 4, 4), "fc1": (5,)}, seed=1)
    split_json = tmp_path / "split.json"
    write_json(splits.record(), split_json)
    kwargs = dict(subspace_n_probe=None, split_seed=0, probe_set="similarity", dtype="float32")
    a = ActivationCache(import_stage(name="vit", folder=folder, split_json=split_json, out_dir=tmp_path / "a", log=LOG, **kwargs)).load_all()
    b = ActivationCache(import_stage(name="cnn", folder=other, split_json=split_json, out_dir=tmp_path / "b", log=LOG, **kwargs)).load_all()
    assert a["block0"].shape == (40, 17, 8)
    df = similarity_table(a, b, "vit", "cnn", ["linear_cka"])
    assert len(df) == 4 and df["value"].between(0, 1).all()
