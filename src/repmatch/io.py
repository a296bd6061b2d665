"""Atomic file output, explained I/O errors, checksummed checkpoints and tidy-table I/O.

Why: a crashed or killed job must never leave a file that *looks* finished. Every writer
here writes to a temporary name in the destination folder and renames it into place, which
is atomic on POSIX file systems. Temporary names follow one convention,
``.<final name>.<8 random chars>.tmp``, so the next run of the same job can recognise and
remove what a killed run left behind (:func:`remove_stale_temps`) without ever touching a
finished file. A failed write is re-raised naming the file and the cause (disk full,
read-only file system, permission denied) instead of e.g. numpy's bare
``OSError: 2508800 requested and 1630176 written``.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import hashlib
import io as _io
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

TEMP_SUFFIX = ".tmp"
_TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"  # tempfile's alphabet: older temp names match too
_TOKEN_LEN = 8


# --------------------------------------------------------------------------------------------
# Temporary names


def temp_name(final: str | os.PathLike[str]) -> Path:
    """A fresh temporary path next to ``final``: ``<dir>/.<name>.<8 random chars>.tmp``.

    Hidden (leading dot) so globs over results skip it; the random token keeps two writers
    apart; the fixed shape lets :func:`is_temp_of` tell it from any finished file.
    """
    final = Path(final)
    token = "".join(secrets.choice(_TOKEN_CHARS) for _ in range(_TOKEN_LEN))
    return final.parent / f".{final.name}.{token}{TEMP_SUFFIX}"


def is_temp_of(candidate: str | os.PathLike[str], final: str | os.PathLike[str]) -> bool:
    """Whether ``candidate`` is a temporary name of ``final`` (same folder, the naming convention).

    The token may not contain a dot, so a temp of ``a.b`` is never taken for a temp of ``a``.
    """
    candidate, final = Path(candidate), Path(final)
    if candidate.parent != final.parent:
        return False
    pattern = rf"\.{re.escape(final.name)}\.[{_TOKEN_CHARS}]{{{_TOKEN_LEN}}}{re.escape(TEMP_SUFFIX)}"
    return re.fullmatch(pattern, candidate.name) is not None


def remove_stale_temps(final: str | os.PathLike[str], older_than: float | None = None) -> list[Path]:
    """Remove temporary files/folders that earlier (killed) writes of ``final`` left behind.

    Only names matching the convention of :func:`temp_name` for this very ``final`` are
    touched, never ``final`` itself nor any other file. ``older_than``: a POSIX time; when
    given, only temps last modified before it are removed (for a sweep while other jobs may
    be writing, e.g. older than the Snakemake lock). Within one Snakemake run a given output
    is written by a single job, so its writer may call this with ``older_than=None``.
    Returns the removed paths.
    """
    final = Path(final)
    removed: list[Path] = []
    if not final.parent.is_dir():
        return removed
    prefix = f".{final.name}."
    for entry in final.parent.iterdir():
        if not entry.name.startswith(prefix) or not is_temp_of(entry, final):
            continue
        try:
            if older_than is not None and entry.lstat().st_mtime >= older_than:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except FileNotFoundError:  # removed meanwhile
            continue
        removed.append(entry)
    return removed


_TEMP_RE = re.compile(rf"\.(?P<final>.+)\.[{_TOKEN_CHARS}]{{{_TOKEN_LEN}}}{re.escape(TEMP_SUFFIX)}")


def remove_stale_temps_under(root: str | os.PathLike[str], older_than: float) -> list[Path]:
    """Sweep ``root`` recursively for temporary names (the convention above) older than ``older_than``.

    For a workflow-level clean-up (e.g. Snakemake ``onstart:`` with the start time of the
    previous, dead run, or simply ``time.time() - 3600``): removes what killed jobs of any
    rule left, never a file that does not match the temp naming convention. Temps inside a
    removed temp folder go with it.
    """
    root = Path(root)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            m = _TEMP_RE.fullmatch(name)
            if m is None:
                continue
            path = Path(dirpath) / name
            removed.extend(remove_stale_temps(path.parent / m["final"], older_than=older_than))
        dirnames[:] = [d for d in dirnames if (Path(dirpath) / d).exists()]
    return removed


# --------------------------------------------------------------------------------------------
# Explained I/O errors

_CAUSES = {
    _errno.ENOSPC: "disk full",
    _errno.EDQUOT: "disk quota exceeded",
    _errno.EFBIG: "file too large for the file system",
    _errno.EROFS: "read-only file system",
    _errno.EACCES: "permission denied",
    _errno.EPERM: "operation not permitted",
    _errno.EIO: "input/output error (failing disk or network file system?)",
}
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")  # numpy's tofile/np.save on a full disk


def explain_os_error(err: OSError, path: str | os.PathLike[str], action: str = "writing") -> OSError:
    """An ``OSError`` of the same errno whose message names ``path`` and the cause in words.

    E.g. ``[Errno 28] disk full while writing results/activations/m (No space left on device:
    '.../.m.k3j2h1g0.tmp/conv1.npy'); free some space ...``. numpy's short write without an
    errno (``2508800 requested and 1630176 written``) is reported as disk full, errno ENOSPC.
    Errors that are already explained, or whose cause is not an output problem (e.g. a missing
    input), are returned unchanged.
    """
    if getattr(err, "repmatch_explained", False):
        return err
    path = Path(path)
    code = err.errno
    cause = _CAUSES.get(code) if code is not None else None
    if cause is None and code is None and _SHORT_WRITE.search(str(err)):
        # numpy's bare short write: on a local disk the write stopped because space ran out.
        code, cause = _errno.ENOSPC, "disk full (or quota exceeded)"
    if cause is None:
        return err
    detail = err.strerror or str(err)
    if err.filename is not None and Path(err.filename) != path:
        detail += f": {err.filename!r}"
        if not _concerns(path, Path(err.filename)):  # e.g. an input that cannot be read
            action = f"making {path}, on {err.filename},"
    if code in (_errno.ENOSPC, _errno.EDQUOT, _errno.EFBIG):
        hint = "free some space (or point the results elsewhere) and rerun; the partial output was removed"
    elif code == _errno.EROFS:
        hint = "the results folder must be on a writable file system"
    elif code in (_errno.EACCES, _errno.EPERM):
        hint = "check the owner and permissions of the folder"
    else:
        hint = "rerun; if it persists, check the storage"
    new = OSError(code, f"{cause} while {action} {path} ({detail}); {hint}")
    new.repmatch_explained = True  # type: ignore[attr-defined]
    return new


def _concerns(final: Path, filename: Path) -> bool:
    """Whether ``filename`` is ``final``, inside it, or a temp name of it (or inside one)."""
    for candidate in (filename, *filename.parents):
        if candidate == final or is_temp_of(candidate, final):
            return True
    return False


@contextlib.contextmanager
def explained_io_errors(path: str | os.PathLike[str], action: str = "writing") -> Iterator[None]:
    """Re-raise an ``OSError`` in the block via :func:`explain_os_error` (chained to the original)."""
    try:
        yield
    except OSError as err:
        new = explain_os_error(err, path, action)
        if new is err:
            raise
        raise new from err


# --------------------------------------------------------------------------------------------
# Atomic writers


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it onto ``final`` on success.

    Leftover temps of earlier killed writes of ``final`` are removed first. On any exception
    the temporary file is removed and ``final`` is left untouched; an ``OSError`` is
    re-raised naming ``final`` and the cause (disk full, read-only, permission).
    """
    final = Path(final)
    with explained_io_errors(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(final)
        tmp = temp_name(final)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, like any file
        os.close(fd)
        try:
            yield tmp
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory next to ``final``; swap it into place on success.

    Like :func:`atomic_path`: stale temp folders of ``final`` are removed first, a failed
    write removes its own temp folder, and OSErrors name ``final`` and the cause.
    """
    final = Path(final)
    with explained_io_errors(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(final)
        tmp = temp_name(final)
        tmp.mkdir(mode=0o777)  # the umask applies
        try:
            yield tmp
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def write_bytes_atomic(data: bytes, path: str | os.PathLike[str]) -> str:
    """Write ``data`` to ``path`` atomically (fsynced before the rename); return its sha256."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# Checksums and torch zip files (saving and loading them is repmatch.networks.checkpoints': io stays torch-free)


class ChecksumError(RuntimeError):
    """A file's bytes do not match its recorded checksum (or its internal CRCs): it is corrupt."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_of_file(path: str | os.PathLike[str], chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_torch_file(path: str | os.PathLike[str], expected_sha256: str | None = None) -> bytes:
    """Read a torch zip file and check it; return its bytes.

    With ``expected_sha256`` the whole file must hash to it. In any case every zip record's
    CRC-32 is checked (``torch.load`` ignores them, so a flipped bit in the weights loads
    silently). Raises :class:`ChecksumError` naming the file; ``FileNotFoundError`` if absent.
    """
    import zipfile

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist; run the 'train' rule for this model")
    with explained_io_errors(path, "reading"):
        data = path.read_bytes()
    if expected_sha256 is not None:
        actual = sha256_bytes(data)
        if actual != expected_sha256:
            raise ChecksumError(
                f"{path} is corrupt: its sha256 is {actual} but {expected_sha256} was recorded when it was "
                "written; delete it and rerun the job that makes it"
            )
    try:
        with zipfile.ZipFile(_io.BytesIO(data)) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as err:
        raise ChecksumError(f"{path} is corrupt or truncated: not a readable torch zip file ({err}); delete it and rerun the job that makes it") from err
    if bad is not None:
        raise ChecksumError(f"{path} is corrupt: record {bad!r} fails its CRC-32 check; delete it and rerun the job that makes it")
    return data


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
