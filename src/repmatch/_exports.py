"""The one ``__init__`` convention of repmatch's packages: public names resolved lazily (PEP 562).

Why lazy: the torch-free parts of a package (``pairs``, ``registry``, ``plots``) are imported
while Snakemake parses the workflow and by the light figure jobs; importing the package must
not import torch. Each ``__init__`` lists its public names by module and calls :func:`lazy`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy(package: str, exports: Mapping[str, Sequence[str]]) -> tuple[Callable[[str], Any], list[str]]:
    """``(__getattr__, __all__)`` for ``package`` exporting ``{module: [names]}``."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name in where:
            return getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, sorted(where)
