"""repmatch.settings: the schema is the one place a default is written; the loader coerces
command-line strings, fills defaults and validates, and repmatch.config_checks runs the semantic
checks, each error naming the key."""

from __future__ import annotations

import copy
import dataclasses
import os
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from repmatch import settings as S
from repmatch.config_checks import checked_settings
from repmatch.settings import ConfigError, Settings, load_settings, schema, section_settings

REPO = Path(__file__).resolve().parents[2]
MINIMAL = {"seeds": [0, 1], "data": {"name": "mnist5k"}, "model": {"arch": "smallcnn"}, "train": {"epochs": 1}}


def _defaults(sub: dict) -> dict:
    """The schema's defaults of one object, nested objects included (what an empty section becomes)."""
    out = {}
    for key, prop in sub["properties"].items():
        if "default" in prop:
            value = copy.deepcopy(prop["default"])
            out[key] = _defaults(prop) | value if prop.get("properties") and isinstance(value, dict) else value
        elif prop.get("properties") and not prop.get("required"):
            out[key] = _defaults(prop)
    return out


def _plain(obj):
    return S._plain(dataclasses.asdict(obj)) if dataclasses.is_dataclass(obj) else S._plain(obj)


@pytest.mark.parametrize("section", sorted(S.SECTIONS))
def test_every_section_built_from_an_empty_config_holds_the_schema_defaults(section):
    sub = schema()["properties"][section]
    required = {k: {"data": "mnist5k", "model": "smallcnn", "train": 3}[section] for k in sub.get("required", [])}
    built = section_settings(section, {k: v for k, v in required.items()})
    expected = _defaults(sub) | required
    assert _plain(built) == expected
    # every field of the dataclass is a schema key and vice versa: nothing is defined twice
    assert [f.name for f in dataclasses.fields(S.SECTIONS[section])] == list(sub["properties"])


def test_settings_dataclasses_mirror_the_schema_and_are_frozen():
    top = schema()["properties"]
    assert [f.name for f in dataclasses.fields(Settings)] == list(top)
    s = load_settings(MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.train.epochs = 5  # type: ignore[misc]
    assert isinstance(s.seeds, tuple) and isinstance(s.similarity.measures, tuple)
    assert isinstance(s.similarity.rbf_sigma, float)


def test_no_config_default_is_written_outside_the_schema():
    """No `.get("<config key>", <default>)` anywhere in the library, scripts or rules."""
    keys = set()

    def walk(sub):
        for key, prop in sub.get("properties", {}).items():
            keys.add(key)
            walk(prop)

    walk(schema())
    pattern = re.compile(r"""\.get\(\s*["']([a-z_]+)["']\s*,""")
    offenders = []
    for path in [*(REPO / "src").rglob("*.py"), *(REPO / "scripts").glob("*.py"), *(REPO / "rules").glob("*.smk")]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for key in pattern.findall(line):
                if key in keys:
                    offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not offenders, "config defaults outside the schema:\n" + "\n".join(offenders)


def test_command_line_strings_are_coerced_to_the_schema_types():
    cfg = copy.deepcopy(MINIMAL) | {"seeds": ["0", "1"]}
    cfg["stitching"] = {"tlm": {"epochs": "5", "lr": "0.01", "n_train": "null"}, "dm": {"ridge": "0"}}
    cfg["subspace_match"] = {"eps": "[0.2, 0.5]", "within_network": "true", "simple_eps": "null"}
    s = load_settings(cfg)
    assert s.seeds == (0, 1)
    assert (s.stitching.tlm.epochs, s.stitching.tlm.lr, s.stitching.tlm.n_train) == (5, 0.01, None)
    assert s.stitching.dm.ridge == 0.0 and isinstance(s.stitching.dm.ridge, float)
    assert s.subspace_match.eps == (0.2, 0.5) and s.subspace_match.within_network is True
    assert s.subspace_match.simple_eps is None
    with pytest.raises(ConfigError, match="at seeds.0"):
        load_settings(copy.deepcopy(MINIMAL) | {"seeds": ["zero"]})


def test_schema_errors_name_the_key():
    bad = copy.deepcopy(MINIMAL)
    bad["train"]["epohcs"] = 3
    bad["sedes"] = [1]
    with pytest.raises(ConfigError) as err:
        load_settings(bad)
    assert "epohcs" in str(err.value) and "at train" in str(err.value) and "sedes" in str(err.value)
    with pytest.raises(ConfigError, match=r"at model.arch"):
        load_settings(copy.deepcopy(MINIMAL) | {"model": {"arch": "resnet1000"}})
    with pytest.raises(ConfigError, match=r"at seeds"):
        load_settings(copy.deepcopy(MINIMAL) | {"seeds": [0, 0]})


SEMANTIC = {
    "model.layers": ({"model": {"arch": "smallcnn", "layers": ["conv1", "conv9"]}}, "conv9"),
    "stitching.layers": ({"stitching": {"layers": ["fc2"]}}, "fc2"),
    "data.data_root": ({"data": {"name": "cifar10", "data_root": "/no/such/folder"}}, "/no/such/folder"),
    "data.n_probe": ({"data": {"name": "mnist5k", "n_test": 100, "n_probe": 101}}, "101"),
    "similarity.measures": ({"similarity": {"measures": ["linear_cka", "cka_typo"]}}, "cka_typo"),
    "stitching.pairs.cross": ({"seeds": [0], "stitching": {"pairs": {"cross": "first"}}}, "two seeds"),
    "uncertainty.bootstrap_measures": ({"uncertainty": {"bootstrap_measures": ["linear_cka", "cka_typ0"]}}, "cka_typ0"),
}


@pytest.mark.parametrize("key", sorted(SEMANTIC))
def test_semantic_checks_name_the_key(key):
    change, words = SEMANTIC[key]
    with pytest.raises(ConfigError) as err:
        checked_settings(copy.deepcopy(MINIMAL) | change)
    assert f"at {key}" in str(err.value) and words in str(err.value)


def test_loading_checks_the_schema_only():
    """The semantic checks ask packages above the settings; loading alone must not run them."""
    bad = copy.deepcopy(MINIMAL) | SEMANTIC["model.layers"][0]
    assert load_settings(bad).model.layers == ("conv1", "conv9")
    with pytest.raises(ConfigError, match="at model.layers"):
        checked_settings(bad)


# What the settings may import: the foundations below every package (the layer order in
# docs/ARCHITECTURE.md). Imports inside functions count too (they hide cycles).
FOUNDATIONS = {"repmatch", "repmatch.schema", "repmatch.settings", "repmatch.naming", "repmatch.architectures"}


@pytest.mark.parametrize("module", ["settings", "schema"])
def test_settings_import_only_foundations_also_inside_functions(module):
    tree = ast.parse((REPO / "src" / "repmatch" / f"{module}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            imported.add(".".join(["repmatch", *filter(None, [node.module])]))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("repmatch"):
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported |= {a.name for a in node.names if a.name.startswith("repmatch")}
    assert imported <= FOUNDATIONS, sorted(imported - FOUNDATIONS)
    code = f"import sys, repmatch.{module}; print(sorted(m for m in sys.modules if m.startswith(('repmatch', 'torch'))))"
    env = os.environ | {"PYTHONPATH": str(REPO / "src")}  # this checkout's code, not an installed copy
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert set(ast.literal_eval(loaded)) <= FOUNDATIONS, loaded


def _dry_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "-s", str(REPO / "Snakefile"), "--directory",
         str(tmp_path), *args], capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_every_semantic_check_fails_snakemake_dry_run_naming_the_key(tmp_path):
    """One dry run with every semantic error at once: nothing runs, every key is named."""
    bad = yaml.safe_load((REPO / "config.yaml").read_text())
    for change, _ in SEMANTIC.values():
        for section, value in change.items():
            bad[section] = {**bad[section], **value} if isinstance(value, dict) else value
    bad["data"] = {"name": "cifar10", "data_root": "/no/such/folder", "n_probe": 20000}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    proc = _dry_run(tmp_path, "--configfile", str(tmp_path / "bad.yaml"))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    for key in SEMANTIC:
        assert f"at {key}" in out, (key, out[-3000:])
    assert not (tmp_path / "results").exists()


def test_readme_config_overrides_work_on_the_command_line(tmp_path):
    """README: `--config seeds=[0,1]` and a nested number (the TLM epochs) plan the right jobs."""
    proc = _dry_run(tmp_path, "--config", "seeds=[0,1]", "stitching={tlm: {epochs: 5}}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 2 networks of the experiment + 2 trained only for the specificity test (sensitivity.specificity_seeds: 4)
    assert re.search(r"^train\s+4\s*$", proc.stdout, re.M), proc.stdout[-2000:]
    assert re.search(r"^stitching_pair\s+2\s*$", proc.stdout, re.M), proc.stdout[-2000:]  # first within + first cross


def test_shipped_configs_load(repo_root):
    for path in [repo_root / "config.yaml", repo_root / "tests" / "data" / "tiny_config.yaml"]:
        checked_settings(path)
    for path in sorted((repo_root / "config").glob("*.yaml")):  # their data_root lives on a cluster
        s = load_settings(path)
        assert s.data.name != "mnist5k" and s.data.data_root


def test_knn_k_beyond_the_probe_set_is_refused_before_any_job():
    """k nearest neighbours need k <= n_probe - 2 (the sample and one copy of it are never neighbours):
    a larger k is a config error naming the key, not a failure inside every pair job."""
    base = yaml.safe_load((REPO / "config.yaml").read_text())
    base["data"]["n_probe"] = 50
    base["similarity"]["knn_k"] = 48
    checked_settings(base)  # the largest k that fits
    base["similarity"]["knn_k"] = 49
    with pytest.raises(ConfigError, match=r"at similarity.knn_k: 49 .*\[1, 48\]"):
        checked_settings(base)
    base["similarity"]["measures"] = ["linear_cka"]  # no k-NN measure: k is never used
    base["sensitivity"]["measures"] = None
    checked_settings(base)


def test_bootstrap_skip_leaves_out_only_the_listed_measures():
    """The default run skips the k-NN measures' and RSA's intervals; every other measure, a user's own
    included, keeps them, and bootstrap_measures still restricts the rest."""
    base = yaml.safe_load((REPO / "config.yaml").read_text())
    s = checked_settings(base)
    assert set(s.uncertainty.bootstrap_skip) == {"mutual_knn", "jaccard_knn", "second_order_cosine", "rsa"}
    got = s.uncertainty.bootstrapped(["linear_cka", "rsa", "mutual_knn", "my_measure"])
    assert got == ["linear_cka", "my_measure"]
    base["uncertainty"].update(bootstrap_measures=["linear_cka", "rsa"], bootstrap_skip=["rsa"])
    assert checked_settings(base).uncertainty.bootstrapped(["linear_cka", "rsa", "procrustes"]) == ["linear_cka"]
    base["uncertainty"]["bootstrap_skip"] = ["no_such_measure"]
    with pytest.raises(ConfigError, match="at uncertainty.bootstrap_skip"):
        checked_settings(base)
