"""Networks from the user's code: factory + checkpoints in the config, through the whole pipeline.

A torchvision ResNet-18 (random weights, saved checkpoints, digits repeated to 3 channels) and a
user ``nn.Module`` defined in this file each run the tiny experiment end to end; a bad module
name, a factory that cannot be imported and a checkpoint that does not fit each fail
``snakemake -n`` before any job, naming the problem.
"""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from repmatch.config_checks import checked_settings
from repmatch.networks import check_factory_networks
from repmatch.settings import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def load_settings(cfg):
    """The settings as the workflow loads them: schema + semantic checks, then the factory network's own check."""
    s = checked_settings(cfg)
    check_factory_networks(s)
    return s


class UserNet(nn.Module):
    """A user's own network: a residual stage and a reused activation (hooked only where it runs once)."""

    def __init__(self, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, stride=2, padding=1), nn.ReLU())
        self.body = nn.Conv2d(width, width, 3, padding=1)
        self.act = nn.ReLU()  # used twice in forward()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        h = self.act(self.body(s) + s)
        return self.classifier(torch.flatten(self.pool(self.act(h)), 1))


def user_net(num_classes: int = 10, width: int = 8) -> UserNet:
    """The factory the config names: ``tests.networks.test_byo_networks:user_net``."""
    return UserNet(num_classes, width)


def _base_config() -> dict:
    with open("tests/data/tiny_config.yaml") as f:
        return yaml.safe_load(f)


def _write_checkpoints(folder, make, n: int = 2, wrap: bool = False) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(n):
        torch.manual_seed(k)
        state = make().state_dict()
        path = folder / f"net{k}.pt"
        torch.save({"state_dict": state} if wrap else state, path)
        files.append(str(path))
    return files


def _resnet18(**kw):
    tv = pytest.importorskip("torchvision")
    return tv.models.resnet18(num_classes=10, **kw)


def _resnet_model(files: list[str]) -> dict:
    return {"arch": None, "factory": "torchvision.models:resnet18", "kwargs": {"num_classes": 10}, "input_channels": 3,
            "checkpoints": files, "layers": ["layer1", "layer2.0", "layer3"]}


def _user_model(files: list[str]) -> dict:
    return {"arch": None, "factory": "tests.networks.test_byo_networks:user_net", "kwargs": {"width": 8}, "name": "usernet",
            "checkpoints": files, "layers": ["stem", "body", "pool"]}


# --- parse time ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet_files(tmp_path_factory):
    return _write_checkpoints(tmp_path_factory.mktemp("r18"), _resnet18)


def _config(model: dict) -> dict:
    cfg = _base_config()
    cfg["model"] = model
    cfg["stitching"]["layers"] = [model["layers"][0], model["layers"][-1]]
    return cfg


def test_a_factory_config_loads(resnet_files):
    s = load_settings(_config(_resnet_model(resnet_files)))
    assert s.model.external and s.model.prefix == "resnet18"
    from repmatch.backbone.pairs import models
    from repmatch.stitching.pairs import stitching_layers

    assert models(s) == ["resnet18_seed0", "resnet18_seed1"]
    assert stitching_layers(s) == ["layer1", "layer3"]
    assert s.model.checkpoint_for(1, s.seeds) == resnet_files[1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"layers": ["layer1", "layer2.0.rleu"]}, r"at model\.layers: 'layer2\.0\.rleu' is not a module.*nearest: \['layer2\.0\.relu'"),
        ({"layers": ["layer1", "layer2.0.relu"]}, r"at model\.layers: modules \['layer2\.0\.relu \(2 times\)'\] run more than once"),
        ({"layers": ["layer3", "layer1"]}, r"forward pass runs them in the order \['layer1', 'layer3'\]"),
        ({"layers": "all"}, r"at model\.layers: a factory network needs its layers named.*'layer1'"),
        ({"factory": "torchvison.models:resnet18"}, r"at model\.factory: factory 'torchvison\.models:resnet18': cannot import"),
        ({"factory": "torchvision.models:resnet81"}, r"has no attribute 'resnet81'"),
        ({"kwargs": {"num_classes": 7}}, r"at model\.checkpoints\[0\]: checkpoint '.*net0\.pt' does not fit.*fc\.weight \(10, 512\) vs \(7, 512\)"),
        ({"input_channels": None}, r"at model\.factory: the network fails on mnist5k inputs of shape \(1, 28, 28\)"),
        ({"checkpoints": ["missing.pt", "missing2.pt"]}, r"at model\.checkpoints\[0\]: checkpoint 'missing\.pt' does not exist"),
        ({"checkpoints": None}, r"at model\.checkpoints: a factory network is not trained"),
        ({"arch": "smallcnn"}, r"at model: give exactly one of model\.arch"),
    ],
)
def test_bad_factory_networks_fail_at_parse_time(resnet_files, change, message):
    cfg = _config(_resnet_model(resnet_files))
    cfg["model"].update(change)
    with pytest.raises(ConfigError, match=message):
        load_settings(cfg)


def test_checkpoint_count_and_stitching_layers_are_checked(resnet_files):
    cfg = _config(_resnet_model(resnet_files[:1]))
    with pytest.raises(ConfigError, match=r"1 files for 2 seeds"):
        load_settings(cfg)
    cfg = _config(_resnet_model(resnet_files))
    cfg["stitching"]["layers"] = ["layer1", "layer4"]
    with pytest.raises(ConfigError, match=r"at stitching\.layers: layers \['layer4'\] are not in model\.layers"):
        load_settings(cfg)


def test_arch_short_form_rejects_factory_keys():
    cfg = _base_config()
    cfg["model"]["kwargs"] = {"num_classes": 10}
    with pytest.raises(ConfigError, match=r"at model\.kwargs: only for a factory network"):
        load_settings(cfg)


def test_builtin_architecture_as_a_factory(tmp_path):
    """``repmatch.networks.zoo:smallcnn`` is an ordinary factory; its block names give the sequential fast path."""
    from repmatch.networks import StitchableNet, build, smallcnn, wrap

    files = _write_checkpoints(tmp_path, lambda: smallcnn(1, 10))
    cfg = _config({"factory": "repmatch.networks.zoo:smallcnn", "kwargs": {"in_channels": 1, "num_classes": 10},
                   "checkpoints": files, "layers": ["conv1", "conv3", "fc1"]})
    s = load_settings(cfg)
    assert s.model.prefix == "smallcnn"
    net = build(s.model.factory, s.model.kwargs)
    assert isinstance(wrap(net, ["conv1", "fc1"]), StitchableNet)
    mixed = wrap(net, ["conv1", "blocks.conv2.0"])  # a block and a module inside one: hooks
    assert mixed.paths == {"conv1": "blocks.conv1", "blocks.conv2.0": "blocks.conv2.0"}


def test_checkpoint_roundtrip_records_the_factory(tmp_path, mnist_splits):
    """import_stage writes a repmatch checkpoint that load_trained rebuilds (sha256 verified) into the same network."""
    import logging

    from repmatch.backbone.stages import import_stage
    from repmatch.networks import HookedNet
    from repmatch.io import write_json
    from repmatch.networks import load_trained

    files = _write_checkpoints(tmp_path / "src", user_net, wrap=True)
    s = load_settings(_config(_user_model(files)))
    split = tmp_path / "split.json"
    write_json(mnist_splits.record(), split)
    ckpt, metrics = tmp_path / "out" / "checkpoint.pt", tmp_path / "out" / "metrics.json"
    from repmatch.settings import section_settings

    data = section_settings("data", {"name": "mnist5k", "split_seed": 0, "n_test": 1000, "n_probe": 100})  # the fixture's split
    m = import_stage(model="usernet_seed1", data=data, model_settings=s.model, device_spec="cpu", split_json=split,
                     source=files[1], checkpoint=ckpt, metrics_json=metrics, log=logging.getLogger("t"))
    assert m["epochs"] == 0 and 0 <= m["test_accuracy"] <= 1 and m["layers"] == ["stem", "body", "pool"]
    net = load_trained(ckpt, metrics)
    assert isinstance(net, HookedNet)
    ref = user_net().eval()
    ref.load_state_dict(torch.load(files[1])["state_dict"])
    x = torch.from_numpy(mnist_splits.test.x[:16])
    with torch.no_grad():
        assert torch.equal(net(x), ref(x))
        assert torch.equal(net.forward_until(x, "body"), ref.body(ref.stem(x)))
    assert json.loads(metrics.read_text())["checkpoint_sha256"]


# --- the workflow ---------------------------------------------------------------------------------


def _workflow(tmp_path, model_fn, make, wrap=False):
    from workflow_runs import copy_workflow  # imported here: the workflow imports this module for user_net

    wd = copy_workflow(tmp_path / "wf")
    files = _write_checkpoints(wd / "nets", make, wrap=wrap)
    rel = [f"nets/{f.rsplit('/', 1)[-1]}" for f in files]
    cfg = _config(model_fn(rel))
    # the pipeline's path through user networks is under test, not the cost of its optional extras
    cfg["subspace_match"].update(n_coords=300, chance_permutations=0, simple_eps=None)
    cfg["stitching"]["detector"] = {"enabled": False}
    # the import job evaluates every training image, the stitching jobs every test image (ResNet-18 on one core)
    cfg["data"].update(n_train=500, n_test=250, n_probe=100)
    cfg["stitching"]["tlm"].update(n_train=128)  # 16 steps: the path under test, not convergence
    (wd / "byo.yaml").write_text(yaml.safe_dump(cfg))
    return wd, cfg


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"layers": ["stem", "bodyy", "pool"]}, r"at model\.layers: 'bodyy' is not a module .*nearest: \['body'"),
        ({"factory": "tests.no_such_module:user_net"}, r"at model\.factory: factory 'tests\.no_such_module:user_net': cannot import"),
        ({"kwargs": {"width": 16}}, r"at model\.checkpoints\[0\]: checkpoint 'nets/net0\.pt' does not fit the network"),
    ],
)
def test_dry_run_fails_before_any_job(tmp_path, change, message):
    import re

    from workflow_runs import run_snakemake

    wd, cfg = _workflow(tmp_path, _user_model, user_net)
    cfg["model"].update(change)
    (wd / "bad.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(wd, "-n", "--cores", "1", "--configfile", "bad.yaml", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(message, out), out[-3000:]
    assert not (wd / "results").exists()


@pytest.mark.parametrize("which", ["user", "torchvision"])
def test_whole_pipeline_with_networks_from_user_code(tmp_path, which):
    from workflow_runs import run_snakemake

    model_fn, make = (_user_model, user_net) if which == "user" else (_resnet_model, _resnet18)
    wd, cfg = _workflow(tmp_path, model_fn, make, wrap=which == "user")
    run_snakemake(wd, "--cores", "2", "--configfile", "byo.yaml", timeout=1500)
    res = wd / "results"
    prefix = "usernet" if which == "user" else "resnet18"
    layers = cfg["model"]["layers"]
    for seed in (0, 1):
        m = json.loads((res / "models" / f"{prefix}_seed{seed}" / "metrics.json").read_text())
        assert m["epochs"] == 0 and 0 <= m["test_accuracy"] <= 1 and m["checkpoint_sha256"]
        assert m["layers"] == layers
    logs = sorted(p.name for p in (res / "logs" / "train").iterdir())
    assert f"{prefix}_seed0.log" in logs
    summary = pd.read_csv(res / "models" / "training_summary.csv")
    assert list(summary["model"]) == [f"{prefix}_seed0", f"{prefix}_seed1"]
    sim = pd.read_parquet(res / "similarity" / "similarity.parquet")
    assert set(sim["layer_a"]) == set(layers)
    same = sim[(sim.method == "linear_cka") & (sim.model_a == sim.model_b) & (sim.layer_a == sim.layer_b)]
    assert len(same) == 2 * len(layers) and (same.value - 1).abs().max() < 1e-6
    st = pd.read_parquet(res / "stitching" / "stitching.parquet")
    grid = cfg["stitching"]["layers"]
    assert set(st["layer_a"]) == set(grid) and set(st["index_a"]) == {layers.index(g) for g in grid}
    acc = st[(st.metric == "accuracy")]
    assert acc["value"].between(0, 1).all() and len(acc) == 2 * 3 * len(grid) ** 2  # 2 pairs x 3 methods
    assert len(pd.read_parquet(res / "subspace" / "subspace.parquet")) > 0
    proc = run_snakemake(wd, "-n", "--cores", "2", "--configfile", "byo.yaml")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_default_config_copy_is_untouched():
    """The tiny built-in config still loads with arch as the short form (no factory keys set)."""
    s = load_settings(copy.deepcopy(_base_config()))
    assert s.model.arch == "smallcnn" and not s.model.external and s.model.factory is None
