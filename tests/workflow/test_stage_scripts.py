"""Scripts stay thin and stages take keyword arguments only.

Why: stage functions take 10-15 parameters, many of the same type (paths, setting sections);
passed by position, two swapped paths run silently on the wrong files. Each script is one rule's
entry point: it reads ``snakemake`` and calls one stage, naming every argument, with no branch
on which rule runs it (a rule that needs other behaviour gets its own stage or script).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((REPO / "scripts").glob("*.py"))


def _stage_calls(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id.endswith("_stage")]


def test_every_stage_function_takes_keyword_arguments_only():
    found, positional = [], []
    for path in sorted((REPO / "src" / "repmatch").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.endswith("_stage") and not node.name.startswith("_"):
                found.append(node.name)
                if node.args.posonlyargs or node.args.args or node.args.vararg:
                    positional.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}")
    assert len(found) >= 20 and positional == []


def test_each_script_calls_one_stage_by_keyword_and_never_branches():
    assert SCRIPTS
    for path in SCRIPTS:
        tree = ast.parse(path.read_text())
        calls = _stage_calls(tree)
        assert len(calls) == 1, f"{path.name}: {len(calls)} stage calls"
        assert calls[0].args == [], f"{path.name}: {calls[0].func.id} gets positional arguments"
        branches = [n for n in ast.walk(tree) if isinstance(n, ast.If | ast.IfExp | ast.Match | ast.For | ast.While)]
        assert branches == [], f"{path.name} branches (line {branches[0].lineno if branches else 0})"
        assert "job.rule" not in path.read_text(), f"{path.name} depends on which rule runs it"


def test_each_script_serves_exactly_one_rule():
    used: dict[str, int] = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for name in re.findall(r'"\.\./scripts/([\w.]+\.py)"', smk.read_text()):
            used[name] = used.get(name, 0) + 1
    assert {p.name: used.get(p.name, 0) for p in SCRIPTS} == dict.fromkeys((p.name for p in SCRIPTS), 1)
