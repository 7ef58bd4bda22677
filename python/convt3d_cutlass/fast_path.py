"""Decides whether a call runs on CUTLASS or falls back to PyTorch, and why.

The fast path (docs/design.md): float32 CUDA tensors on compute capability >= 8.0, cubic kernel
k in 1..7 (odd or even), one stride 1..4 for all axes, one padding 0..k-1 for all axes, one
output_padding below the stride for all axes, dilation 1, groups 1, bias optional.
Outside it the call runs through ``torch.nn.functional.conv_transpose3d`` with one warning per
reason (``strict=True`` raises ``ValueError`` naming the argument instead).
"""
from __future__ import annotations

import warnings
from typing import List, Optional, Tuple

import torch

from . import _extension

KERNEL_SIZES = (1, 2, 3, 4, 5, 6, 7)
STRIDES = (1, 2, 3, 4)
_warned = set()


def _triple(v, name: str) -> Tuple[int, int, int]:
    if isinstance(v, int):
        return (v, v, v)
    t = tuple(v)
    if len(t) == 1:
        return (t[0],) * 3
    if len(t) != 3:
        raise ValueError(f"{name} must be an int or a tuple of 3 ints, got {v!r}")
    return t


def _uniform(t: Tuple[int, int, int]) -> bool:
    return t[0] == t[1] == t[2]


def check(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride, padding,
          output_padding, groups: int, dilation) -> List[Tuple[str, str]]:
    """[] when the fast path applies, else [(argument, reason), ...].

    ``x`` is 5-D here (the caller adds the batch dimension of unbatched input). Kept free of
    object construction so torch.compile traces it without graph breaks.
    """
    stride, padding = _triple(stride, "stride"), _triple(padding, "padding")
    output_padding, dilation = _triple(output_padding, "output_padding"), _triple(dilation, "dilation")
    ks = tuple(weight.shape[2:])
    why = []
    if groups != 1:
        why.append(("groups", f"groups={groups}; the fast path supports groups=1"))
    if dilation != (1, 1, 1):
        why.append(("dilation", f"dilation={dilation}; the fast path supports dilation 1"))
    if not _uniform(output_padding) or (_uniform(stride) and not 0 <= output_padding[0] < stride[0]):
        why.append(("output_padding", f"output_padding={output_padding}; the fast path supports one "
                                      "output_padding in 0..stride-1 for all axes"))
    if not _uniform(ks):
        why.append(("kernel_size", f"kernel_size={ks} is not cubic"))
    elif ks[0] not in KERNEL_SIZES:
        why.append(("kernel_size", f"kernel_size={ks[0]}; the fast path supports {KERNEL_SIZES}"))
    if not _uniform(stride) or stride[0] not in STRIDES:
        why.append(("stride", f"stride={stride}; the fast path supports one stride in {STRIDES} for all axes"))
    if not _uniform(padding) or (_uniform(ks) and not 0 <= padding[0] <= ks[0] - 1):
        why.append(("padding", f"padding={padding}; the fast path supports one padding in 0..k-1 for all axes"))
    tensors = [("input", x), ("weight", weight)] + ([("bias", bias)] if bias is not None else [])
    for name, t in tensors:
        if t.dtype != torch.float32:
            why.append((name, f"{name} dtype {t.dtype}; the fast path supports torch.float32"))
    if not x.is_cuda:
        why.append(("input", "input is not a CUDA tensor"))
    else:
        reason = _extension.gpu_reason(x.device.index)
        if reason:
            why.append(("input", reason))
    return why


def fallback_or_raise(why: List[Tuple[str, str]], strict: bool) -> None:
    """Raise (strict) or warn once per reason that the call falls back to PyTorch."""
    if strict:
        arg, msg = why[0]
        raise ValueError(f"convt3d_cutlass (strict): argument '{arg}' is outside the fast path: {msg}")
    for arg, msg in why:
        if (arg, msg) not in _warned:
            _warned.add((arg, msg))
            warnings.warn(f"convt3d_cutlass: falling back to torch's conv_transpose3d: {msg}",
                          stacklevel=4)
