"""Import a function the config names as ``"package.module:function"`` (a dataset factory, a
user similarity measure).

Why one helper: every place that takes user code must fail the same way, at parse time and
naming the config key, when the module cannot be imported, the attribute is missing or is not
callable; a failure inside a job (after training started) would waste the run.
"""

from __future__ import annotations

import importlib
import os
import sys
import re
from collections.abc import Callable
from typing import Any

_REF_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class UserCodeError(ValueError):
    """A ``"package.module:function"`` reference from the config cannot be resolved."""


def import_object(ref: str, key: str) -> Callable[..., Any]:
    """The callable that ``ref`` (``"package.module:function"``, nested attributes allowed after
    the colon) names; ``key`` (the config key) is named in every error."""
    if not isinstance(ref, str) or not _REF_RE.match(ref):
        raise UserCodeError(f"{key}: {ref!r} is not of the form 'package.module:function'")
    module_name, _, attr = ref.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # a workflow's own code beside its config (mypkg/nets.py: mypkg.nets:make_net)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise UserCodeError(f"{key}: cannot import module {module_name!r} of {ref!r} ({err}); is it installed or on "
                            "PYTHONPATH?") from err
    except Exception as err:  # noqa: BLE001 - user code may raise anything on import; say where
        raise UserCodeError(f"{key}: importing module {module_name!r} of {ref!r} raised {type(err).__name__}: {err}") from err
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UserCodeError(f"{key}: module {module_name!r} has no attribute {attr!r} (from {ref!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UserCodeError(f"{key}: {ref!r} is a {type(obj).__name__}, not a function")
    return obj
