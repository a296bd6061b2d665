"""repmatch.similarity: CKA / CCA / Procrustes / regression similarity indices over layer grids.

Layout (as every family): ``pairs`` (which jobs), the maths (``registry``, ``grid``, ``stats``,
``linalg``, ``preprocess``, ``cka``, ``cca``, ``procrustes``, ``regression``; the bootstrap:
``resampled``, ``bootstrap``), ``stages`` (what the scripts call), ``plots`` (figures). Each
measure's module holds its point form (the grid function) and, where one exists, its resampled
form (B bootstrap resamples at once). Public API: :func:`similarity` (one pair),
:func:`similarity_grids` (raw grids), :func:`similarity_table` (tidy table of a model pair),
:func:`bootstrap_similarity_grids` (replicates of every grid) with :func:`uncertainty_table`, the
registry (:data:`MEASURES`, :func:`register`, :class:`Measure`), user measures (``user``:
:func:`check_measure`, :func:`register_user_measure`) and the error classes.
"""

from .._exports import lazy

__getattr__, __all__ = lazy(__name__, {
    "bootstrap": ["BootstrapGrids", "bootstrap_similarity_grids", "interval_table", "uncertainty_table"],
    "errors": ["DegenerateInputError", "DegenerateWarning", "SimilarityInputError"],
    "grid": ["TABLE_COLUMNS", "similarity", "similarity_grids", "similarity_table"],
    "preprocess": ["CONV_MODES"],
    "registry": ["INVARIANCES", "MEASURES", "Measure", "check_measures", "get_measure", "register"],
    "measure_checks": ["check_measure"],
    "user": ["MeasurePropertyError", "UserMeasure", "make_user_measure", "register_user_measure"],
})  # fmt: skip
