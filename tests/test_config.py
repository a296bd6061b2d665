import copy
import subprocess
import sys

import pytest
import yaml

from repmatch.config import ConfigError, load_config, validate_config


@pytest.fixture(scope="module")
def default_config(repo_root):
    return load_config(repo_root / "config.yaml")


def test_default_and_test_configs_are_valid(repo_root, default_config):
    assert default_config["model"]["arch"] == "smallcnn"
    load_config(repo_root / "tests" / "data" / "tiny_config.yaml")


def test_typo_is_rejected_naming_the_key(default_config):
    bad = copy.deepcopy(default_config)
    bad["train"]["epohcs"] = 3
    with pytest.raises(ConfigError, match="epohcs") as err:
        validate_config(bad)
    assert "train" in str(err.value)
    top = copy.deepcopy(default_config)
    top["sedes"] = [1]
    with pytest.raises(ConfigError, match="sedes"):
        validate_config(top)


def test_wrong_types_and_values_are_located(default_config):
    bad = copy.deepcopy(default_config)
    bad["model"]["arch"] = "resnet1000"
    bad["seeds"] = [0, 0]
    with pytest.raises(ConfigError) as err:
        validate_config(bad)
    assert "model.arch" in str(err.value) and "seeds" in str(err.value)


def test_snakemake_rejects_a_typo_before_running_anything(repo_root, default_config, tmp_path):
    bad = copy.deepcopy(default_config)
    bad["data"]["n_prob"] = 10
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(bad))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "-s", str(repo_root / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(cfg)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "n_prob" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()
