"""Job logging: messages go both to the console and to the rule's log file.

Why :func:`job_log`: Snakemake answers a failed job with "check log file(s) for error
details", but an uncaught exception's traceback goes only to stderr (on SLURM into
``.snakemake/slurm_logs``), so the rule's own log was empty. Every job body runs inside
``with job_log(name, log_file) as log:``, which writes the exception's type, message and
full traceback to the job's log file (flushed) and to stderr, then re-raises so the job
still exits non-zero.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

_FORMAT = logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s")

# One handler per log file and process: a job whose script and stage function both ask for a
# logger on the same file must not truncate it twice nor write through two file offsets.
_FILE_HANDLERS: dict[str, logging.FileHandler] = {}

T = TypeVar("T")


def _file_handler(log_file: str | os.PathLike[str]) -> logging.FileHandler:
    key = os.path.abspath(log_file)
    handler = _FILE_HANDLERS.get(key)
    if handler is None or handler.stream is None or handler.stream.closed or not Path(key).exists():
        Path(key).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(key, mode="w")  # a rerun starts a fresh log
        handler.setFormatter(_FORMAT)
        _FILE_HANDLERS[key] = handler
    return handler


def job_logger(name: str, log_file: str | os.PathLike[str] | None) -> logging.Logger:
    """A logger writing to stderr and (when given) to ``log_file``.

    Asking again for the same ``log_file`` in the same process appends to it (the file is
    truncated only on the first request), so a job's script and its stage function can both
    log to it.
    """
    logger = logging.getLogger(f"repmatch.{name}")
    logger.setLevel(logging.INFO)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(_FORMAT)
    handlers: list[logging.Handler] = [stderr]
    if log_file:
        handlers.append(_file_handler(log_file))
    logger.handlers[:] = handlers
    logging.captureWarnings(True)
    return logger


def log_exception(log: logging.Logger, name: str, err: BaseException) -> None:
    """Write ``err`` (type, message, full traceback) through ``log``'s handlers and flush them."""
    tb = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    log.error("job %r failed with %s: %s\n%s", name, type(err).__name__, err, tb.rstrip())
    for handler in log.handlers:
        handler.flush()
        stream = getattr(handler, "stream", None)
        if stream is not None and hasattr(stream, "fileno") and not getattr(stream, "closed", False):
            with contextlib.suppress(OSError, ValueError):
                os.fsync(stream.fileno())  # the log must survive the process (and a node) going away


@contextlib.contextmanager
def job_log(name: str, log_file: str | os.PathLike[str] | None) -> Iterator[logging.Logger]:
    """Run a job body with its logger; log any uncaught exception to ``log_file``, then re-raise.

    ``SystemExit(0)`` / ``SystemExit(None)`` pass through silently; ``KeyboardInterrupt``
    (Snakemake's SIGINT on Ctrl-C) is logged as well. Use in every script::

        with job_log("train", snakemake.log[0]) as log:
            train_stage(..., log=log)
    """
    log = job_logger(name, log_file)
    try:
        yield log
    except SystemExit as err:
        if err.code not in (0, None):
            log_exception(log, name, err)
        raise
    except BaseException as err:
        log_exception(log, name, err)
        raise


def run_logged(fn: Callable[..., T], name: str, log_file: str | os.PathLike[str] | None, *args: Any, **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)`` inside :func:`job_log`; return its result."""
    with job_log(name, log_file):
        return fn(*args, **kwargs)


def logged_job(name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorator form: the wrapped function takes ``log_file=`` and runs inside :func:`job_log`."""

    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def wrapper(*args: Any, log_file: str | os.PathLike[str] | None = None, **kwargs: Any) -> T:
            with job_log(name, log_file):
                return fn(*args, log_file=log_file, **kwargs)

        return wrapper

    return decorate
