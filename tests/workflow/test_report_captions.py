"""Every report caption renders cleanly: rendered as ``snakemake --report`` does (Jinja2 with
the validated config, then docutils' HTML writer), no caption may produce a docutils system
message (those show up in the report as "Docutils System Messages" error boxes, e.g. ``|X*|``
read as a reST substitution reference). Fast: no workflow run."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CAPTIONS = sorted((REPO / "report").glob("*.rst"))
CONFIGS = [REPO / "config.yaml", REPO / "tests" / "data" / "tiny_config.yaml", *sorted((REPO / "config").glob("*.yaml"))]


def _config(path: Path) -> dict:
    """The config as the workflow sees it: validated against the schema, defaults filled in."""
    from repmatch.settings import load_settings

    return load_settings(yaml.safe_load(path.read_text())).to_config()


def render_caption(text: str, config: dict) -> tuple[str, str]:
    """(HTML body, docutils messages) of one caption, rendered like Snakemake's report does."""
    from docutils.core import publish_parts
    from jinja2 import Environment, StrictUndefined

    env = Environment(trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined)
    rst = env.from_string(text).render(snakemake=SimpleNamespace(config=config), categories={}, files={})
    messages = io.StringIO()
    parts = publish_parts(
        rst, writer="html",
        settings_overrides={"report_level": 1, "halt_level": 5, "warning_stream": messages},  # collect every level
    )
    return parts["body"], messages.getvalue()


def test_there_are_captions_and_configs():
    assert {p.name for p in CAPTIONS} >= {"workflow.rst", "subspace.rst", "similarity.rst", "stitching.rst", "training.rst"}
    assert len(CONFIGS) >= 2


@pytest.mark.parametrize("caption", CAPTIONS, ids=lambda p: p.name)
@pytest.mark.parametrize("config_path", CONFIGS, ids=lambda p: p.name)
def test_every_caption_renders_without_docutils_system_messages(caption, config_path):
    body, messages = render_caption(caption.read_text(), _config(config_path))
    assert messages == "", f"{caption.name} with {config_path.name}: docutils says\n{messages}"
    assert "System Message" not in body and "problematic" not in body, f"{caption.name}: error box in the rendered HTML"
    assert len(body) > 100


def test_the_check_catches_a_substitution_like_caption():
    """The check itself can fail: a caption with a bad reference gives a system message."""
    _, messages = render_caption("the similarity is (|X*| + |Y*|) / (d_A + d_B).", {})
    assert "Undefined substitution referenced" in messages
