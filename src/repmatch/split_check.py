"""Validate a recorded split (``results/data/split.json``) on its own, without loading data.

Why: every train job depends on ``split.json``. When the file is damaged (truncated by a full
disk, edited by hand), Snakemake reruns everything downstream of it and deletes the
checkpoints before the train jobs fail on the bad split: a full retrain for a file that could
have been checked first. This check needs only the file (milliseconds, no dataset, no torch),
so the workflow can run it before it schedules anything (at parse time, or as the data step)
and stop with a message naming the file and what is wrong while the checkpoints stay.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# What ``repmatch.data.Splits.record`` writes.
REQUIRED_KEYS = (
    "dataset", "fingerprint", "num_classes", "input_shape",
    "n_train", "n_test", "n_probe", "train_ids", "test_ids", "probe_ids",
)
_ID_LISTS = (("train_ids", "n_train"), ("test_ids", "n_test"), ("probe_ids", "n_probe"))


class SplitFileError(ValueError):
    """``split.json`` is missing, unreadable or inconsistent; the message names the file and the fault."""


def _fail(path: Path, what: str) -> SplitFileError:
    return SplitFileError(
        f"recorded split {path} is corrupt: {what}. Delete it and rerun the 'data_split' rule "
        "(it is recomputed exactly from the data config; if the data config is unchanged the "
        "checkpoints stay valid)"
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_split_record(record: Any, path: str | os.PathLike[str] = "split.json") -> dict[str, Any]:
    """Check a parsed split record; return it. ``path`` only names the file in errors.

    Checks: a JSON object with every key of :data:`REQUIRED_KEYS`; a non-empty string
    ``dataset`` and ``fingerprint``; positive integer counts; ``input_shape`` a list of
    positive integers; each id list a list of distinct non-negative integers whose length is
    its count; train and test disjoint; probe a non-empty subset of test.
    """
    path = Path(path)
    if not isinstance(record, Mapping):
        raise _fail(path, f"expected a JSON object, found {type(record).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise _fail(path, f"missing keys {missing}")
    for key in ("dataset", "fingerprint"):
        if not isinstance(record[key], str) or not record[key]:
            raise _fail(path, f"'{key}' must be a non-empty string, found {record[key]!r}")
    for key in ("num_classes", "n_train", "n_test", "n_probe"):
        if not _is_int(record[key]) or record[key] < 1:
            raise _fail(path, f"'{key}' must be a positive integer, found {record[key]!r}")
    shape = record["input_shape"]
    if not isinstance(shape, list) or not shape or not all(_is_int(v) and v >= 1 for v in shape):
        raise _fail(path, f"'input_shape' must be a list of positive integers, found {shape!r}")
    sets: dict[str, set[int]] = {}
    for key, count_key in _ID_LISTS:
        ids = record[key]
        if not isinstance(ids, list):
            raise _fail(path, f"'{key}' must be a list of integer sample ids, found {type(ids).__name__}")
        bad = next((v for v in ids if not _is_int(v) or v < 0), None)
        if bad is not None:
            raise _fail(path, f"'{key}' holds {bad!r}, not a non-negative integer sample id")
        if len(ids) != record[count_key]:
            raise _fail(path, f"'{key}' has {len(ids)} ids but '{count_key}' says {record[count_key]}")
        sets[key] = set(ids)
        if len(sets[key]) != len(ids):
            raise _fail(path, f"'{key}' repeats sample ids")
    overlap = sets["train_ids"] & sets["test_ids"]
    if overlap:
        raise _fail(path, f"{len(overlap)} sample ids are in both 'train_ids' and 'test_ids' (e.g. {min(overlap)})")
    outside = sets["probe_ids"] - sets["test_ids"]
    if outside:
        raise _fail(path, f"{len(outside)} 'probe_ids' are not test ids (e.g. {min(outside)}); the probe set must be a subset of the test set")
    return dict(record)


def check_split_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check ``split.json`` (see :func:`check_split_record`); return the record.

    Raises :class:`SplitFileError` naming the file and what is wrong (not found, not UTF-8,
    not JSON (e.g. truncated), a missing key, a bad id list, overlapping or inconsistent sets).
    """
    path = Path(path)
    if not path.is_file():
        raise SplitFileError(f"recorded split {path} does not exist; run the 'data_split' rule")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise _fail(path, f"not UTF-8 text ({err})") from err
    except OSError as err:
        raise SplitFileError(f"cannot read recorded split {path} ({err.strerror or err})") from err
    if not text.strip():
        raise _fail(path, "the file is empty")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise _fail(path, f"not valid JSON, truncated? ({err})") from err
    return check_split_record(record, path)
