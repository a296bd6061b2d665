"""Atomic file output and tidy-table I/O.

Why: a crashed or killed job must never leave a file that *looks* finished. Every writer
here writes to a temporary name in the destination folder and renames it into place, which
is atomic on POSIX file systems.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it onto ``final`` on success.

    On any exception the temporary file is removed and ``final`` is left untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results should be as readable as any file
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory next to ``final``; swap it into place on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"expected JSON file {path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); delete it and rerun the step that makes it") from err


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def write_table(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a tidy table as parquet (or CSV when the name ends in .csv), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"expected result table {path} does not exist")
    return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)


def concat_tables(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], columns: Sequence[str]) -> pd.DataFrame:
    """Concatenate per-pair tables into one aggregated table (every family's ``aggregate`` rule).

    A table lacking one of ``columns`` (the family's, :data:`repmatch.tables.COLUMNS`) is refused
    with its path (a stale or foreign file must not be averaged in); empty tables are skipped, and
    when all are empty the result still has ``columns``, so readers downstream see the family's schema.
    """
    frames = []
    for path in paths:
        df = read_table(path)
        missing = set(columns) - set(df.columns)
        if missing:
            raise ValueError(f"result table {path} lacks columns {sorted(missing)}; delete it and rerun its job")
        if not df.empty:
            frames.append(df)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(columns))
    write_table(table, out)
    return table
