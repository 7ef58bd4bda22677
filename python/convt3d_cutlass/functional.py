"""``conv_transpose3d``: the functional form, with nn.functional.conv_transpose3d's arguments."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from . import _extension, fast_path, ops
from . import precision as _precision
from .fast_path import _triple


def _validate(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride, padding,
              output_padding, groups: int, dilation) -> None:
    """Raise as torch would for inputs no path can run (messages name the argument)."""
    if not isinstance(x, torch.Tensor) or x.dim() not in (4, 5):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise RuntimeError("Expected 4D (unbatched) or 5D (batched) input to conv_transpose3d, "
                           f"but got input of size: {shape}")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 5:
        raise RuntimeError("weight must be a 5-D tensor [C_in, C_out/groups, kD, kH, kW], got "
                           f"{tuple(weight.shape) if isinstance(weight, torch.Tensor) else weight!r}")
    c_in = x.shape[0] if x.dim() == 4 else x.shape[1]
    if c_in != weight.shape[0]:
        raise RuntimeError(f"Given transposed=1, weight of size {list(weight.shape)}, expected input "
                           f"{list(x.shape)} to have {weight.shape[0]} channels, but got {c_in} channels instead")
    if weight.device != x.device:
        raise RuntimeError(f"input is on {x.device} but weight is on {weight.device}")
    if bias is not None:
        if bias.device != x.device:
            raise RuntimeError(f"input is on {x.device} but bias is on {bias.device}")
        if tuple(bias.shape) != (weight.shape[1] * groups,):
            raise RuntimeError(f"bias must have shape ({weight.shape[1] * groups},), got {tuple(bias.shape)}")
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    s, p, op, d = (_triple(v, n) for v, n in ((stride, "stride"), (padding, "padding"),
                                               (output_padding, "output_padding"), (dilation, "dilation")))
    if min(s) < 1:
        raise ValueError(f"stride must be >= 1, got {stride!r}")
    if min(p) < 0:
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    if min(d) < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation!r}")
    spatial = x.shape[-3:]
    out = [(spatial[i] - 1) * s[i] - 2 * p[i] + d[i] * (weight.shape[2 + i] - 1) + op[i] + 1 for i in range(3)]
    if min(out) <= 0:
        raise RuntimeError(f"conv_transpose3d output size {out} is too small for input {list(x.shape)} "
                           f"(stride={stride}, padding={padding}, kernel={list(weight.shape[2:])})")


_resolve_precision = _extension.trace_constant(_precision.resolve)


def conv_transpose3d(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                     stride=1, padding=0, output_padding=0, groups: int = 1, dilation=1, *,
                     precision: str = "auto", strict: bool = False,
                     config: Optional[str] = None) -> torch.Tensor:
    """Transposed 3D convolution, a drop-in for ``torch.nn.functional.conv_transpose3d``.

    Args:
        input: [N, C_in, D, H, W] (or unbatched [C_in, D, H, W]); NCDHW or channels_last_3d.
        weight: [C_in, C_out / groups, kD, kH, kW].
        bias: optional [C_out].
        stride, padding, output_padding, groups, dilation: as in PyTorch.
        precision: "auto" (default), "fp32", "tf32" or "3xtf32"; see ``convt3d_cutlass.precision``.
            It holds for the backward passes too.
        strict: raise ``ValueError`` instead of falling back to PyTorch outside the fast path.
        config: force kernels by name (comma-separated, see ``configs()``); for tests and tuning.
    Returns:
        [N, C_out, Do, Ho, Wo] with Do = (D - 1) * stride - 2 * padding + kD + output_padding, in
        channels_last_3d when the input is, else contiguous NCDHW.
    """
    _precision.check(precision)
    _validate(input, weight, bias, stride, padding, output_padding, groups, dilation)
    unbatched = input.dim() == 4
    x = input.unsqueeze(0) if unbatched else input
    why = fast_path.check(x, weight, bias, stride, padding, output_padding, groups, dilation)
    if why:
        fast_path.fallback_or_raise(why, strict)
        return F.conv_transpose3d(input, weight, bias, stride, padding, output_padding, groups, dilation)
    y = ops.apply(x, weight, bias, _triple(stride, "stride")[0], _triple(padding, "padding")[0],
                  _triple(output_padding, "output_padding")[0], _resolve_precision(precision), config)
    return y.squeeze(0) if unbatched else y
