"""MkDocs hooks: the configuration reference is generated from ``src/repmatch/schema.yaml``.

Why generated: the schema is the only place a default is written, so a hand-written reference would
drift from it. ``docs/configuration.md`` holds the marker ``<!-- schema-reference -->``; at build
time it is replaced by one table per config section (every key, type, default, allowed values and
description). Wired by ``hooks:`` in ``mkdocs.yml``; ``tests/docs/test_docs.py`` checks that every
schema key reaches the built page.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "src" / "repmatch" / "schema.yaml"
DEFAULT_CONFIG = REPO / "config.yaml"
MARKER = "<!-- schema-reference -->"


def _type(node: dict[str, Any]) -> str:
    types = node.get("type", "")
    types = [types] if isinstance(types, str) else list(types)
    if "array" in types and isinstance(node.get("items"), dict) and "type" in node["items"]:
        inner = node["items"]["type"]
        inner = inner if isinstance(inner, str) else " | ".join(inner)
        types = [f"array of {inner}" if t == "array" else t for t in types]
    return " | ".join(types) or ("one of" if "oneOf" in node or "anyOf" in node else "")


def _allowed(node: dict[str, Any]) -> str:
    parts = []
    if "enum" in node:
        parts.append(", ".join(f"`{v}`" for v in node["enum"] if v is not None))
    lo, hi = node.get("minimum", node.get("exclusiveMinimum")), node.get("maximum", node.get("exclusiveMaximum"))
    if lo is not None or hi is not None:
        left = "(" if "exclusiveMinimum" in node else "["
        right = ")" if "exclusiveMaximum" in node else "]"
        parts.append(f"{left}{'' if lo is None else lo}, {'' if hi is None else hi}{right}")
    items = node.get("items")
    if isinstance(items, dict) and ("enum" in items or "minimum" in items or "maximum" in items):
        parts.append("each " + _allowed(items))
    if "pattern" in node:
        parts.append(f"matches `{node['pattern']}`")
    return "; ".join(p for p in parts if p)


def config_comments(text: str) -> dict[str, str]:
    """The default experiment's end-of-line comments by dotted key (``stitching.tlm.epochs``).

    Why: many keys are explained where a user edits them, in ``config.yaml``; the reference shows that
    explanation where the schema has no ``description``.
    """
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in text.splitlines():
        body = line.split("#", 1)[0].rstrip()
        if not body.strip() or ":" not in body or body.lstrip().startswith("-"):
            continue
        indent = len(body) - len(body.lstrip())
        key = body.strip().split(":", 1)[0].strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        if "#" in line:
            comments[".".join(k for _, k in stack)] = line.split("#", 1)[1].strip()
    return comments


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def schema_rows(node: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every leaf key of a schema section as (dotted key, schema node), in the schema's order."""
    for name, child in node.get("properties", {}).items():
        key = f"{prefix}{name}"
        if child.get("type") == "object" and "properties" in child:
            yield from schema_rows(child, key + ".")
        else:
            yield key, child


def reference_markdown(schema: dict[str, Any], comments: dict[str, str] | None = None) -> str:
    """One table per top-level section: key, type, default, allowed values, meaning."""
    comments = comments or {}
    out = []
    required = set(schema.get("required", []))
    top_leaves = [(k, n) for k, n in schema["properties"].items() if not (n.get("type") == "object" and "properties" in n)]
    sections = [(k, n) for k, n in schema["properties"].items() if n.get("type") == "object" and "properties" in n]
    head = "| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n"
    if top_leaves:
        out.append("### Top level\n\n" + head)
        for key, node in top_leaves:
            out.append(_row(key, node, key in required, comments.get(key, "")))
        out.append("\n")
    for name, node in sections:
        desc = node.get("description", "")
        out.append(f"### `{name}`\n\n{_cell(desc)}\n\n" + head if desc else f"### `{name}`\n\n" + head)
        for key, leaf in schema_rows(node, name + "."):
            out.append(_row(key, leaf, False, comments.get(key, "")))
        out.append("\n")
    return "".join(out)


def _row(key: str, node: dict[str, Any], required: bool, comment: str) -> str:
    meaning = node.get("description") or (f"{comment} *(config.yaml)*" if comment else "")
    default = "required" if required else (f"`{json.dumps(node['default'])}`" if "default" in node else "")
    return f"| `{key}` | {_cell(_type(node))} | {_cell(default)} | {_cell(_allowed(node))} | {_cell(meaning)} |\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:  # MkDocs hook
    if MARKER not in markdown:
        return markdown
    schema = yaml.safe_load(SCHEMA.read_text())
    return markdown.replace(MARKER, reference_markdown(schema, config_comments(DEFAULT_CONFIG.read_text())))
