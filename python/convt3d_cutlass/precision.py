"""The precision flag: "fp32" (IEEE fp32 FMA), "tf32" (tensor cores), "3xtf32" (fp32 accuracy on
tensor cores) or "auto" (tf32 when ``torch.backends.cudnn.allow_tf32``, else fp32, as cuDNN does).

Precedence: a call's ``precision=`` > the module's ``precision`` > :func:`set_precision` >
``CONVT3D_PRECISION`` > "auto". "auto" at any level means "no preference here".
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Optional

import torch

from .kernel_table import PRECISIONS

CHOICES = ("auto",) + PRECISIONS
_state = threading.local()


def check(precision: Optional[str], arg: str = "precision") -> Optional[str]:
    if precision is None:
        return None
    if precision not in CHOICES:
        raise ValueError(f"{arg} must be one of {CHOICES}, got {precision!r}")
    return precision


def _global() -> str:
    stack = getattr(_state, "stack", None)
    if stack:
        return stack[-1]
    return check(os.environ.get("CONVT3D_PRECISION", "auto") or "auto", "CONVT3D_PRECISION")


def resolve(*levels: Optional[str]) -> str:
    """The precision that runs, from the most specific level to the least."""
    for p in levels:
        if check(p) not in (None, "auto"):
            return p
    p = _global()
    if p != "auto":
        return p
    return "tf32" if torch.backends.cudnn.allow_tf32 else "fp32"


@contextlib.contextmanager
def set_precision(precision: str):
    """Context manager setting the default precision of this thread.

    Example: ``with convt3d_cutlass.set_precision("3xtf32"): loss = model(x).sum()``.
    The backward passes run in the precision that the forward resolved.
    """
    check(precision)
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    stack.append(precision)
    try:
        yield
    finally:
        stack.pop()
