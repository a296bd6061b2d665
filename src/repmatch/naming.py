"""Names of models and model pairs, shared by the rules and the library."""

from __future__ import annotations

import re
from itertools import combinations_with_replacement

#: Architecture names may hold single underscores (vgg16_bn, vit_ti); "__" separates the two models of a pair id.
_MODEL_RE = re.compile(r"^(?P<arch>[a-z0-9]+(?:_[a-z0-9]+)*)_seed(?P<seed>\d+)$")


def model_id(arch: str, seed: int) -> str:
    return f"{arch}_seed{int(seed)}"


def parse_model_id(model: str) -> tuple[str, int]:
    m = _MODEL_RE.match(model)
    if not m:
        raise ValueError(f"model id {model!r} is not of the form '<arch>_seed<N>'")
    return m["arch"], int(m["seed"])


def pair_id(model_a: str, model_b: str) -> str:
    return f"{model_a}__{model_b}"


def parse_pair_id(pair: str) -> tuple[str, str]:
    parts = pair.split("__")
    if len(parts) != 2:
        raise ValueError(f"pair id {pair!r} is not of the form '<model_a>__<model_b>'")
    return parts[0], parts[1]


def unordered_pairs(models: list[str]) -> list[tuple[str, str]]:
    """All pairs (a, b) with a <= b in list order, including a == b (within-network grids)."""
    return list(combinations_with_replacement(models, 2))


def factory_name(spec: str) -> str:
    """The default model-id prefix of a factory network (``"package.module:function"``): its function
    name, lower case, letters and digits only."""
    attr = spec.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
    return re.sub(r"[^a-z0-9]", "", attr.lower()) or "net"
