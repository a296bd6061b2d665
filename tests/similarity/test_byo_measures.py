"""Your own measure: a similarity measure from user code, registered from the config with its
declared properties, computed by the grid engine, and checked by the same property checks as the
built-in measures (``repmatch.similarity.check_measure``)."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
from byo_factories import linear_cka, mean_cosine

from repmatch.config_checks import checked_settings
from repmatch.jobs import snakemake_job
from repmatch.settings import ConfigError, load_settings
from repmatch.similarity import MEASURES, MeasurePropertyError, check_measure, similarity, similarity_grids
from repmatch.similarity.registry import Measure
from repmatch.similarity.measure_checks import property_inputs
from repmatch.similarity.user import make_user_measure, register_user_measure

MINIMAL = {"seeds": [0, 1], "data": {"name": "mnist5k"}, "model": {"arch": "smallcnn"}, "train": {"epochs": 1}}
CKA_PROPS = {"symmetric": True, "larger_is_similar": True, "identity_value": 1.0,
             "invariances": ["orthogonal", "isotropic_scaling", "translation"]}  # fmt: skip
COSINE_PROPS = {"symmetric": True, "larger_is_similar": True, "identity_value": 1.0, "invariances": ["isotropic_scaling"]}
BUILT_IN = sorted(name for name, m in MEASURES.items() if type(m) is Measure)


@pytest.fixture(autouse=True)
def _restore_registry():
    """User measures registered by a test are removed after it (other test modules check the registry's contents)."""
    before = dict(MEASURES)
    yield
    MEASURES.clear()
    MEASURES.update(before)


def _config(user_measures, measures=("linear_cka",)):
    return copy.deepcopy(MINIMAL) | {"similarity": {"measures": list(measures), "user_measures": user_measures}}


def _run_job(config, tmp_path):
    """What a script does first: its settings and the config's user measures, through the jobs' runner."""
    smk = SimpleNamespace(rule="similarity_pair", log=[str(tmp_path / "job.log")], config=config)
    with snakemake_job(smk) as job:
        return job.settings


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_built_in_measure_passes_the_strict_property_checks(name):
    """The helper users run is the contract the built-in measures meet (strict: undeclared properties fail too)."""
    check_measure(name, strict=True)


def test_a_correct_user_measure_passes_and_equals_the_built_in_one():
    check_measure(linear_cka, CKA_PROPS, strict=True)
    check_measure(mean_cosine, COSINE_PROPS, strict=True)
    x, y, _ = property_inputs()
    assert linear_cka(x, y) == pytest.approx(similarity(x, y, "linear_cka"), abs=1e-12)


@pytest.mark.parametrize("claim, words", [
    ({"invariances": ["isotropic_scaling", "translation"]}, "invariance translation"),
    ({"invariances": ["isotropic_scaling", "orthogonal"]}, "invariance orthogonal"),
    ({"identity_value": 0.0}, "identity_value: f(x, x) = 1, declared 0.0"),
    ({"larger_is_similar": False}, "larger_is_similar false"),
])  # fmt: skip
def test_a_measure_declaring_a_property_it_lacks_fails_naming_it(claim, words):
    with pytest.raises(MeasurePropertyError, match="mean_cosine") as err:
        check_measure(mean_cosine, COSINE_PROPS | claim)
    assert words in str(err.value)


def test_asymmetric_measure_declared_symmetric_fails():
    def regression_r2(x, y):
        xc, yc = x - x.mean(0), y - y.mean(0)
        w = np.linalg.lstsq(xc[:, :3], yc, rcond=None)[0]
        return float(1 - np.linalg.norm(yc - xc[:, :3] @ w) ** 2 / np.linalg.norm(yc) ** 2)

    with pytest.raises(MeasurePropertyError, match=r"symmetric: f\(x, y\)"):
        check_measure(regression_r2, CKA_PROPS | {"invariances": [], "identity_value": 1.0})


def test_strict_mode_fails_an_undeclared_invariance():
    check_measure(linear_cka, CKA_PROPS | {"invariances": ["orthogonal"]})  # claiming less is safe
    with pytest.raises(MeasurePropertyError, match="invariant to translation but does not declare it"):
        check_measure(linear_cka, CKA_PROPS | {"invariances": ["orthogonal"]}, strict=True)


def test_loading_and_checking_settings_register_no_measure():
    """The registry changes only where a caller registers explicitly (the jobs' runner), never as a side effect."""
    cfg = _config([{"name": "user_cka", "function": "byo_factories:linear_cka", "properties": CKA_PROPS}],
                  ["linear_cka", "user_cka"])  # fmt: skip
    before = dict(MEASURES)
    load_settings(cfg)
    checked_settings(cfg)  # imports the function and checks the declared properties' names
    assert MEASURES == before


def test_a_job_registers_the_config_measure_and_the_engine_computes_it_in_every_conv_mode(tmp_path):
    _run_job(_config([{"name": "user_cka", "function": "byo_factories:linear_cka", "properties": CKA_PROPS}],
                     ["linear_cka", "user_cka"]), tmp_path)  # fmt: skip
    assert MEASURES["user_cka"].larger_is_similar and MEASURES["user_cka"].symmetric
    check_measure("user_cka", strict=True)  # through the grid engine, as in a run
    rng = np.random.default_rng(3)
    acts_a = {"conv": rng.standard_normal((40, 3, 4, 4)) + 2.0, "flat": rng.standard_normal((40, 5))}
    acts_b = {"conv": rng.standard_normal((40, 2, 4, 4)), "flat": acts_a["flat"] @ rng.standard_normal((5, 5))}
    for mode in ("gap", "flatten", "per_position", "paper"):
        fwd, _ = similarity_grids(acts_a, acts_b, ["linear_cka", "user_cka"], conv_mode=mode)
        np.testing.assert_allclose(fwd["user_cka"], fwd["linear_cka"], rtol=1e-9, atol=1e-12)


def test_a_user_measure_sees_the_uncentred_view():
    register_user_measure(make_user_measure("user_cosine", mean_cosine, COSINE_PROPS))
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((30, 6)) + 1.0, rng.standard_normal((30, 6)) + 1.0
    assert similarity(x, y, "user_cosine") == pytest.approx(mean_cosine(x, y), abs=1e-12)
    maps = rng.standard_normal((30, 4, 3, 3)) + 1.0
    assert similarity(maps, maps * 2, "user_cosine", conv_mode="gap") == pytest.approx(1.0)


def test_bad_user_measures_fail_at_parse_time_naming_the_key():
    spec = {"name": "mine", "function": "no_such_pkg.measures:cka", "properties": CKA_PROPS}
    with pytest.raises(ConfigError, match=r"at similarity.user_measures\[0\].function: cannot import module 'no_such_pkg.measures'"):
        checked_settings(_config([spec]))
    with pytest.raises(ConfigError, match=r"at similarity.user_measures\[0\].function: module 'byo_factories' has no attribute"):
        checked_settings(_config([spec | {"function": "byo_factories:cka_typo"}]))
    with pytest.raises(ConfigError, match=r"name of a built-in measure"):
        checked_settings(_config([spec | {"name": "linear_cka", "function": "byo_factories:linear_cka"}]))
    with pytest.raises(ConfigError, match=r"at similarity.user_measures\[1\].name: 'mine' is declared twice"):
        good = spec | {"function": "byo_factories:linear_cka"}
        checked_settings(_config([good, good]))
    with pytest.raises(ConfigError, match=r"at similarity.user_measures.0.properties: 'invariances' is a required property"):
        load_settings(_config([spec | {"function": "byo_factories:linear_cka",
                                       "properties": {k: v for k, v in CKA_PROPS.items() if k != "invariances"}}]))  # fmt: skip
    with pytest.raises(ConfigError, match=r"at similarity.measures: unknown measures \['not_declared'\]"):
        checked_settings(_config([], ["linear_cka", "not_declared"]))


def test_jobs_register_the_declared_properties_without_importing_the_code(tmp_path):
    """Light jobs (tables, figures) need larger_is_similar, not the user's code."""
    spec = {"name": "lazy_cka", "function": "no_such_pkg.measures:cka", "properties": CKA_PROPS}
    _run_job(_config([spec], ["linear_cka", "lazy_cka"]), tmp_path)
    assert MEASURES["lazy_cka"].larger_is_similar
    x, y, _ = property_inputs()
    with pytest.raises(ValueError, match=r"similarity measure 'lazy_cka': cannot import module 'no_such_pkg.measures'"):
        similarity(x, y, "lazy_cka")
    _run_job(_config([spec | {"function": "byo_factories:linear_cka"}], ["lazy_cka"]), tmp_path)
    assert similarity(x, y, "lazy_cka") == pytest.approx(linear_cka(x, y), abs=1e-12)
