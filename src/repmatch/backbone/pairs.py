"""Which backbone jobs exist: one network per configured seed (torch-free: read while Snakemake parses)."""

from __future__ import annotations

from ..naming import model_id
from ..settings import Settings


def models(settings: Settings) -> list[str]:
    """The ids of the experiment's networks, in the config's seed order."""
    return [model_id(settings.model.prefix, seed) for seed in settings.seeds]
