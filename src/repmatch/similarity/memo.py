"""One per-object cache of derived products, shared by the layer statistics and the resampling sets.

Why one mixin: :class:`~repmatch.similarity.stats.LayerStats` (per layer), and
:class:`~repmatch.similarity.resampled.ResampleSet` / :class:`~repmatch.similarity.resampled.ResampleChunk`
(per bootstrap run and chunk) each let a measure compute a product once and share it with every other
measure and layer pair that needs it; the caching rule is the same for all three.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any


class Memo:
    """``memo(key, compute)``: ``compute()`` once per key and object, then the cached value."""

    _memo: dict[Hashable, Any]

    def memo(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        cache = self.__dict__.setdefault("_memo", {})
        if key not in cache:
            cache[key] = compute()
        return cache[key]
