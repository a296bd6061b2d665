"""Config loading and validation outside Snakemake (tests, notebooks, benchmarks).

The Snakefile validates with ``snakemake.utils.validate`` against the same schema; this module
gives the library the same check, with an error that names the offending key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"


class ConfigError(ValueError):
    """The configuration does not match config/schema.yaml."""


def load_schema(path: str | os.PathLike[str] = SCHEMA_PATH) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


def validate_config(config: Mapping[str, Any], schema: Mapping[str, Any] | None = None) -> None:
    """Raise ``ConfigError`` listing every violation with its location (``train.epochs`` style)."""
    schema = schema or load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(dict(config)), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors:
            where = ".".join(str(p) for p in err.absolute_path) or "<top level>"
            lines.append(f"  at {where}: {err.message}")
        raise ConfigError("invalid configuration:\n" + "\n".join(lines))


def load_config(path: str | os.PathLike[str], schema_path: str | os.PathLike[str] = SCHEMA_PATH) -> dict[str, Any]:
    """Read a YAML config and validate it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file {path} does not exist")
    config = yaml.safe_load(path.read_text()) or {}
    validate_config(config, load_schema(schema_path))
    return config
