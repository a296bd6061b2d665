"""The sensitivity package's module structure and its one sign convention.

Why: the within-network and cross-network tests once imported each other (and a private batch
helper); what they share now lives in modules both import. These tests keep it so, counting
imports inside functions too, and pin the sign convention both tests' tables rely on.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import repmatch.sensitivity as sensitivity

PACKAGE = Path(sensitivity.__file__).parent


def _sibling_imports() -> dict[str, set[tuple[str, str]]]:
    """``{module: {(sibling module, imported name)}}`` for every ``from .x import y`` anywhere in the module."""
    out: dict[str, set[tuple[str, str]]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        edges = out.setdefault(path.stem, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                edges.update((node.module, alias.name) for alias in node.names)
    return out


def test_no_module_of_the_package_imports_another_in_a_circle():
    graph = {m: {target for target, _ in edges} for m, edges in _sibling_imports().items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                pytest.fail(f"import circle: {' -> '.join([*path, m, t])}")
            if t not in state:
                visit(t, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    assert "cross_network" not in graph["within_network"] and "within_network" not in graph["cross_network"]


def test_no_private_name_crosses_modules():
    crossing = sorted((m, t, n) for m, edges in _sibling_imports().items() for t, n in edges if n.startswith("_"))
    assert crossing == []


def test_every_lazy_export_resolves_to_its_own_module():
    for name in sensitivity.__all__:
        obj = getattr(sensitivity, name)
        module = getattr(obj, "__module__", None)
        if module is not None and callable(obj):  # functions and classes: defined where the export says
            assert module.startswith("repmatch.sensitivity."), (name, module)
            assert getattr(importlib.import_module(module), name) is obj


def test_every_value_becomes_a_dissimilarity_with_one_sign_convention():
    from repmatch.sensitivity.dissimilarity import index_dissimilarity, pair_distance, rank_dissimilarity
    from repmatch.similarity.registry import MEASURES

    cka, procrustes = MEASURES["linear_cka"], MEASURES["procrustes_distance"]
    assert cka.larger_is_similar and not procrustes.larger_is_similar
    # a similarity: identity value minus the value; a distance: the value itself (both 0 at identity)
    assert index_dissimilarity("linear_cka", 0.75) == pytest.approx(cka.identity_value - 0.75)
    assert index_dissimilarity("linear_cka", cka.identity_value) == 0.0
    assert index_dissimilarity("procrustes_distance", 0.3) == 0.3
    # within one network: functional scores and DM accuracy drop from the full-rank value
    assert rank_dissimilarity("probe_accuracy", 0.6, 0.9) == pytest.approx(0.3)
    assert rank_dissimilarity("network_accuracy", 0.9, 0.9) == 0.0
    assert rank_dissimilarity("dm_accuracy", 0.5, 0.8) == pytest.approx(0.3)
    assert rank_dissimilarity("dm_repr_diff", 0.2, 0.0) == 0.2
    assert rank_dissimilarity("linear_cka", 0.75, 1.0) == index_dissimilarity("linear_cka", 0.75)
    # across networks: stitched accuracy below B's own accuracy, structural scores as is
    assert pair_distance("tlm_accuracy", 0.7, 0.9) == pytest.approx(0.2)
    assert pair_distance("dm_repr_diff", 0.4, 0.9) == 0.4
    assert pair_distance("procrustes_distance", 0.3, 0.9) == 0.3
    with pytest.raises(KeyError):
        index_dissimilarity("no_such_measure", 0.5)
