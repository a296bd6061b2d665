"""Job logging: messages go both to the console and to the rule's log file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def job_logger(name: str, log_file: str | Path | None) -> logging.Logger:
    """A logger writing to stderr and (when given) to ``log_file``."""
    logger = logging.getLogger(f"repmatch.{name}")
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    for handler in handlers:
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    logging.captureWarnings(True)
    return logger
