"""The docs: the site builds strictly, the README stays one screen with current pictures, and nothing is
named after a development ticket."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_site_builds_strictly_with_every_schema_key(tmp_path):
    """`mkdocs build --strict`: no broken link, no missing page; the configuration reference holds every key."""
    if shutil.which("mkdocs") is None and importlib.util.find_spec("mkdocs") is None:
        pytest.fail("mkdocs is not installed: it is part of the test extra (pip install -e '.[test]')")
    site = tmp_path / "site"
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)],
                         cwd=REPO, capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stdout + run.stderr
    page = (site / "configuration" / "index.html").read_text()
    hooks = _load_tool("docs_hooks")
    schema = yaml.safe_load((REPO / "src" / "repmatch" / "schema.yaml").read_text())
    keys = [k for section, node in schema["properties"].items()
            for k in ([section] if "properties" not in node else [key for key, _ in hooks.schema_rows(node, section + ".")])]
    assert len(keys) > 100
    missing = [k for k in keys if f"<code>{k}</code>" not in page]
    assert not missing, f"keys missing from the configuration reference: {missing}"


def test_config_comments_follow_nesting():
    hooks = _load_tool("docs_hooks")
    comments = hooks.config_comments("a:\n  b: 1  # bee\n  c:\n    d: x # dee\ne: 2 # e\n")
    assert comments == {"a.b": "bee", "a.c.d": "dee", "e": "e"}


def test_readme_is_one_screen_with_pictures_that_exist():
    readme = (REPO / "README.md").read_text()
    lines = readme.splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; keep it under 200 and move detail to docs/"
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    assert images, "the README shows the default run's figures"
    first = next(i for i, line in enumerate(lines) if "![" in line)
    assert first < 40, "the first picture is near the top"
    for image in images:
        assert (REPO / image).is_file(), image
    commands = re.findall(r"^pip install .*$", readme, flags=re.M)
    assert len(commands) == 2, f"exactly two set-up-and-go commands, found {commands}"
    assert (REPO / ".ci" / "run").read_text().count(commands[1].strip()) == 1, ".ci/run runs the README's test command"


def test_doc_figures_are_current():
    """The copies in docs/img come from the default run drawn by the code and settings as they are now."""
    tool = _load_tool("refresh_doc_figures")
    recorded = json.loads(tool.MANIFEST.read_text())
    expected = tool.expected_manifest()
    assert set(recorded) == set(expected), "docs/img/figures.json lists other figures than the tool: refresh them"
    for name, entry in expected.items():
        got = recorded[name]
        stale = [k for k in ("source", "code_sha256", "settings_sha256") if got.get(k) != entry[k]]
        assert not stale, (f"docs/img/{name} is stale ({', '.join(stale)} changed): run the default pipeline, "
                           "then `python tools/refresh_doc_figures.py`")
        image = tool.IMG / name
        assert hashlib.sha256(image.read_bytes()).hexdigest() == got["image_sha256"], f"docs/img/{name} was edited by hand"


def test_stale_figure_is_detected(tmp_path):
    """The freshness check can fail: a changed plotting module changes the recorded digest."""
    tool = _load_tool("refresh_doc_figures")
    for name in ("config.yaml", "src/repmatch/schema.yaml", "src/repmatch/plotting.py", "src/repmatch/stitching/plots.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / name, tmp_path / name)
    before = tool.code_digest(("src/repmatch/stitching/plots.py",), tmp_path)
    with (tmp_path / "src/repmatch/stitching/plots.py").open("a") as f:
        f.write("\n# a change\n")
    assert tool.code_digest(("src/repmatch/stitching/plots.py",), tmp_path) != before
    settings = tool.settings_digest(tmp_path)
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text() + "\n# only a comment\n")
    assert tool.settings_digest(tmp_path) == settings, "comments do not make a figure stale"


TICKET = re.compile(r"\bissues?[ _-]?\d+|\bissue\d+", re.I)


def test_nothing_is_named_after_a_ticket():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    checked = [p for p in tracked if p.startswith(("docs/", "src/", "config", "rules/", "scripts/", "README", "mkdocs"))]
    names = [p for p in checked if TICKET.search(Path(p).name)]
    assert not names, f"files named after a ticket: {names}"
    mentions = [f"{p}:{i}" for p in checked if not p.endswith((".png", ".pdf"))
                for i, line in enumerate((REPO / p).read_text(errors="replace").splitlines(), 1) if TICKET.search(line)]
    assert not mentions, f"references to tickets: {mentions}"
