"""The package's layer order holds: import-linter's contracts, no import cycle, every module importable alone.

Why: the layer order (docs/architecture.md, ``[tool.importlinter]`` in pyproject.toml) is what lets a
newcomer add a measure or a network kind without reading across packages. It holds only while it is
checked: an upward import or a cycle hidden inside a function would otherwise come back unnoticed.
grimp (import-linter's graph) records imports inside functions and under TYPE_CHECKING too, so the
cycle check below counts them. Importing each module in a fresh ``repmatch`` state catches a module
that works only because another one was imported first (an order-dependent registry, a missing import
that a sibling happened to provide). The light modules (parse time, tables, figures) must not import
torch: the light jobs run in the light environment and Snakemake parses the workflow without torch.
"""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"

# The modules that must stay torch-free at import: read while Snakemake parses the workflow (settings,
# paths, naming, the pairs modules, the config checks), or imported by the table and figure jobs (the
# stages modules hold the aggregate and figure stages and import their heavy parts inside the torch
# stages), the plots and the cross-family sanity tests.
LIGHT_MODULES = [
    "repmatch.settings", "repmatch.config_checks", "repmatch.jobs", "repmatch.paths", "repmatch.naming",
    "repmatch.io", "repmatch.tables", "repmatch.plotting", "repmatch.sanity", "repmatch.benchmarks",
    "repmatch.backbone.pairs", "repmatch.similarity.pairs", "repmatch.stitching.pairs",
    "repmatch.subspace_match.pairs", "repmatch.sensitivity.pairs",
    "repmatch.backbone.plots", "repmatch.similarity.plots", "repmatch.stitching.plots",
    "repmatch.subspace_match.plots", "repmatch.sensitivity.plots",
    "repmatch.backbone.stages", "repmatch.similarity.stages", "repmatch.stitching.stages",
    "repmatch.subspace_match.stages", "repmatch.sensitivity.stages",
    "repmatch.similarity.registry", "repmatch.similarity.user", "repmatch.similarity.measure_checks",
    "repmatch.stitching.analysis", "repmatch.sensitivity.aggregate", "repmatch.uncertainty.intervals",
    "repmatch.uncertainty.significance",
]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)}


def _all_modules() -> list[str]:
    import repmatch

    return ["repmatch", *(m.name for m in pkgutil.walk_packages(repmatch.__path__, "repmatch."))]


def test_lint_imports_keeps_every_contract():
    """``lint-imports`` (the contracts in pyproject.toml) passes; on failure its report is the message."""
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, f"lint-imports failed (rc={run.returncode}):\n{run.stdout}\n{run.stderr}"
    assert "0 broken" in run.stdout, run.stdout


def _import_graph() -> dict[str, set[str]]:
    """Module -> the repmatch modules it imports (grimp: module level, inside functions, TYPE_CHECKING)."""
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent("""
            import json, grimp
            g = grimp.build_graph("repmatch", include_external_packages=False)
            print(json.dumps({m: sorted(g.find_modules_directly_imported_by(m)) for m in g.modules}))
        """)],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return {m: set(deps) for m, deps in json.loads(run.stdout).items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node, or with a self-loop (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph.get(node, ()):
                        cycles.append(sorted(component))
    return cycles


def test_find_cycles_finds_a_hidden_circle_and_nothing_in_a_chain():
    """The checker itself: a three-module circle and a self-import are found, a chain and a diamond are not."""
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"a"}}) == [["a"]]
    assert find_cycles({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) == []


def test_import_graph_has_no_cycle():
    """No circle among repmatch's modules, counting the imports inside functions."""
    graph = _import_graph()
    assert "repmatch.similarity.registry" in graph["repmatch.sanity"]  # a function-level import is in the graph
    assert find_cycles(graph) == []


def test_every_module_imports_alone_and_light_modules_stay_torch_free():
    """Each module imports in a fresh ``repmatch`` state; the light ones do so without importing torch.

    One subprocess: the light modules first (torch is never imported, so each is checked alone), then
    every module, with ``repmatch.*`` purged from ``sys.modules`` before each import."""
    modules = _all_modules()
    script = textwrap.dedent("""
        import importlib, json, sys, traceback
        light, modules = json.loads(sys.argv[1]), json.loads(sys.argv[2])
        report = {"torch": [], "failed": {}}

        def fresh_import(name):
            for key in [k for k in sys.modules if k == "repmatch" or k.startswith("repmatch.")]:
                del sys.modules[key]
            try:
                importlib.import_module(name)
            except Exception:
                report["failed"][name] = traceback.format_exc()

        for name in light:
            fresh_import(name)
            if "torch" in sys.modules:
                report["torch"].append(name)
                break
        for name in modules:
            fresh_import(name)
        print(json.dumps(report))
    """)
    run = subprocess.run(
        [sys.executable, "-c", script, json.dumps(LIGHT_MODULES), json.dumps(modules)],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["failed"] == {}, "\n".join(f"{m}:\n{tb}" for m, tb in report["failed"].items())
    assert report["torch"] == [], f"imports torch, but runs in light jobs / at parse time: {report['torch']}"
    assert set(LIGHT_MODULES) <= set(modules)  # the list names real modules


# The heavy pair jobs' stage modules: importing scipy.stats costs ~0.7 s of CPU per job (x ~40 jobs of
# the default run); these modules and what they import at module level must not need it.
SCIPY_STATS_FREE = [
    "repmatch.similarity.stages", "repmatch.similarity.registry", "repmatch.similarity.grid",
    "repmatch.similarity.bootstrap", "repmatch.similarity.rsa", "repmatch.stitching.grid",
    "repmatch.sensitivity.cross_network", "repmatch.sensitivity.within_network", "repmatch.subspace_match.stages",
    "repmatch.backbone.stages", "repmatch.uncertainty.intervals", "repmatch.uncertainty.significance",
]  # fmt: skip


def test_pair_job_modules_do_not_import_scipy_stats():
    script = "import importlib, json, sys\n" \
             "bad = []\n" \
             "for name in json.loads(sys.argv[1]):\n" \
             "    importlib.import_module(name)\n" \
             "    if 'scipy.stats' in sys.modules:\n" \
             "        bad.append(name)\n" \
             "        break\n" \
             "print(json.dumps(bad))"
    run = subprocess.run([sys.executable, "-c", script, json.dumps(SCIPY_STATS_FREE)], cwd=REPO, env=_env(),
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1]) == [], "imports scipy.stats at module level"


def test_test_file_names_are_unique():
    """Test modules keep unique file names: tests/ has no ``__init__.py`` (pytest's default import mode
    imports each by its basename, and workflow_runs.py / byo_factories.py are imported by name)."""
    names = [p.name for p in (REPO / "tests").rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})
