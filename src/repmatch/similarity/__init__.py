"""repmatch.similarity: CKA / CCA / Procrustes / regression similarity indices over layer grids.

Public API:
  - :func:`similarity_table` (tidy table for a model pair, used by the pipeline),
  - :func:`similarity_grids` (raw numpy grids), :func:`similarity` (one pair),
  - :data:`MEASURES`, :func:`get_measure`, :func:`check_measures`, :func:`register`, :class:`Measure`,
  - :data:`CONV_MODES` and the error classes,
  - :func:`specificity`, :func:`more_similar_than_itself` (sanity tables).

Attributes are imported lazily (PEP 562) so that torch-free users (the registry check at
Snakefile parse time, the sanity tables and figures) do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "DegenerateInputError": "errors", "DegenerateWarning": "errors", "SimilarityInputError": "errors",
    "TABLE_COLUMNS": "grid", "similarity": "grid", "similarity_grids": "grid", "similarity_table": "grid",
    "CONV_MODES": "preprocess",
    "INVARIANCES": "registry", "MEASURES": "registry", "Measure": "registry", "check_measures": "registry",
    "get_measure": "registry", "register": "registry",
    "specificity": "sanity", "more_similar_than_itself": "sanity",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
