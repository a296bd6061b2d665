"""The configuration schema (``repmatch/schema.yaml``) and what is done with it before any
dataclass exists: coerce command-line strings, fill defaults, validate.

Why its own module: this is generic JSON-schema work on plain mappings, the same for every
section; :mod:`repmatch.settings` builds the typed sections on top of it. Foundation level:
it imports nothing from repmatch.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key."""


@functools.cache
def schema() -> dict[str, Any]:
    """The configuration schema (package data: works from an installed wheel as well)."""
    return yaml.safe_load(resources.files("repmatch").joinpath("schema.yaml").read_text())


def schema_path() -> Path:
    """A filesystem path of the schema (for ``snakemake.utils.validate`` and readers)."""
    return Path(str(resources.files("repmatch").joinpath("schema.yaml")))


_TYPE_CHECKS = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "string": lambda v: isinstance(v, str),
}


def _types(sub: Mapping[str, Any]) -> list[str]:
    t = sub.get("type", [])
    return [t] if isinstance(t, str) else list(t)


def coerce(value: Any, sub: Mapping[str, Any]) -> Any:
    """Turn command-line strings into the types the schema asks for.

    ``snakemake --config seeds=[0,1]`` gives ``["0", "1"]`` and ``--config 'stitching={tlm:
    {epochs: 5}}'`` a nested dict of strings; a string is parsed as YAML where the schema wants a
    number, boolean, null, array or object and the parsed value has that type. Anything else is
    left for the validator to report.
    """
    alternatives = sub.get("oneOf") or sub.get("anyOf")
    if alternatives:
        for alt in alternatives:
            out = coerce(value, alt)
            if not list(jsonschema.Draft202012Validator(alt).iter_errors(out)):
                return out
        return value
    types_ = _types(sub)
    if isinstance(value, str) and "string" not in types_ and types_:
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if any(_TYPE_CHECKS[t](parsed) for t in types_):
            value = parsed
    if isinstance(value, list) and isinstance(sub.get("items"), Mapping):
        return [coerce(v, sub["items"]) for v in value]
    if isinstance(value, dict) and isinstance(sub.get("properties"), Mapping):
        props = sub["properties"]
        return {k: coerce(v, props[k]) if k in props else v for k, v in value.items()}
    return value


def fill_defaults(value: Any, sub: Mapping[str, Any]) -> Any:
    """Fill missing keys of every (nested) mapping from the schema's ``default`` values."""
    if not isinstance(value, dict) or not isinstance(sub.get("properties"), Mapping):
        return value
    out = dict(value)
    for key, prop in sub["properties"].items():
        if key not in out and "default" in prop:
            out[key] = copy.deepcopy(prop["default"])
        if key in out:
            out[key] = fill_defaults(out[key], prop)
    return out


def validate(config: Mapping[str, Any], sub: Mapping[str, Any] | None = None, prefix: str = "") -> None:
    """Validation against the whole schema, or against ``sub`` (one section's schema, whose keys
    are then named ``<prefix>.<key>``); every violation is listed with its location."""
    validator = jsonschema.Draft202012Validator(schema() if sub is None else sub)
    errors = sorted(validator.iter_errors(dict(config)), key=lambda e: [str(p) for p in e.absolute_path])
    if not errors:
        return
    lines = []
    for err in errors:
        where = ".".join([prefix] * bool(prefix) + [str(p) for p in err.absolute_path]) or "<top level>"
        lines.append(f"  at {where}: {err.message}")
    raise ConfigError("invalid configuration:\n" + "\n".join(lines))

