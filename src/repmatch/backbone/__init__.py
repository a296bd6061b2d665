"""The backbone: the recorded split, deterministic training, the verified activation cache.

Layout (as every family): ``pairs`` (which jobs), ``training`` / ``activations`` (the work),
``stages`` (what the scripts call), ``plots`` (the training figure).
"""

from .._exports import lazy

__getattr__, __all__ = lazy(__name__, {
    "activations": ["ActivationCache", "CacheError", "check_same_samples", "extract_activations", "open_pair", "write_cache"],
    "pairs": ["models"],
    "training": ["evaluate", "set_determinism", "train_model", "train_new_model"],
})  # fmt: skip
