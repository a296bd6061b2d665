"""What every Snakemake script does before and after calling its one stage function.

Why here and not in each script: every job must read the same settings (the whole config,
checked and filled from the schema), log to its own log file, and leave the reason it failed
*in that log file* (on a cluster the scheduler's stderr is elsewhere). Each script is then one
rule's entry point that calls one stage with keyword arguments only:
``with snakemake_job(snakemake) as job: stage(settings=job.settings.<section>, ..., log=job.log)``.

The config's own similarity measures (``similarity.user_measures``) are registered here,
explicitly, for every job: loading settings changes no registry, and the similarity, sensitivity,
sanity, table and figure jobs all look measures up by name. They are registered without importing
the user's code (``load=False``: imported when a grid is first computed), so the light jobs stay
free of it and of torch; the parse-time check (:mod:`repmatch.config_checks`) has imported it once.

Layer: the scripts' runner, above the stages it runs; it imports the settings, the logs and the
measure registry's user entries only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .logs import job_log
from .settings import Settings, load_settings
from .similarity.user import register_user_measures


@dataclass(frozen=True)
class Job:
    """One running Snakemake job: its settings, logger, and Snakemake's own job object."""

    settings: Settings
    log: logging.Logger
    smk: Any

    @property
    def input(self) -> Any:
        return self.smk.input

    @property
    def output(self) -> Any:
        return self.smk.output

    @property
    def wildcards(self) -> Any:
        return self.smk.wildcards

    @property
    def rule(self) -> str:
        return str(self.smk.rule)

    @property
    def threads(self) -> int:
        return int(self.smk.threads)


@contextlib.contextmanager
def snakemake_job(smk: Any) -> Iterator[Job]:
    """Settings + a logger writing to the job's log, the config's user measures registered; an
    uncaught exception is logged there with its traceback (:func:`repmatch.logs.job_log`), then re-raised."""
    with job_log(smk.rule, smk.log[0] if len(smk.log) else None) as log:
        settings = load_settings(smk.config)
        register_user_measures(settings.similarity.user_measures, load=False)
        yield Job(settings, log, smk)
