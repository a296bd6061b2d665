"""What a measure's grid function receives besides the layers: parameters and a degeneracy log."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class GridContext:
    """Parameters of the run (``rbf_sigma``, ``svcca_variance``, ``minibatch_size``, ...) and the
    list of degenerate cells a measure found.

    Measures never raise for a degenerate *pair* inside a grid: they set the cell to NaN and call
    :meth:`degenerate` with the reason; the engine then raises or warns (``on_degenerate``).
    """

    params: Mapping[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: The original probe sample of each row, when the rows are a bootstrap resample (None: all rows
    #: distinct). Rows with the same id are copies of one sample: measures built on pairs of samples
    #: (k-NN, RSA) treat a copy like the sample itself instead of as a neighbour at distance 0.
    sample_ids: Any = None

    def degenerate(self, reason: str) -> None:
        self.problems.append(reason)

    def param(self, key: str) -> Any:
        """A measure parameter; the engine fills every one from the ``similarity`` settings."""
        try:
            return self.params[key]
        except KeyError:
            raise KeyError(f"measure parameter {key!r} was not passed to the grid engine") from None
