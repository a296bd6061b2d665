"""Which sensitivity jobs exist: one per network when ``sensitivity.enabled`` (torch-free)."""

from __future__ import annotations

from collections.abc import Sequence

from ..settings import SensitivitySettings


def sensitivity_models(models: Sequence[str], sensitivity: SensitivitySettings) -> list[str]:
    """The networks that get a sensitivity job (all of them, or none when disabled)."""
    return list(models) if sensitivity.enabled else []
