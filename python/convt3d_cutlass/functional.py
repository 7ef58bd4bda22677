"""``conv_transpose3d``: the functional form, with nn.functional.conv_transpose3d's arguments."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from . import _extension, channel_pad, fast_path, ops
from . import precision as _precision
from .fast_path import _triple
from .problem import Problem


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

    C_in or C_out not a multiple of 4 runs as the layer padded with zero channels (``channel_pad``; the same
    values, in the same precision), unless ``CONVT3D_PAD_CHANNELS=0``.
    """
    _precision.check(precision)
    key = None if _compiling() else _call_key(input, weight, bias, stride, padding, output_padding, groups,
                                              dilation)
    hit = _fast_calls.get(key) if key is not None else None
    if hit is None:
        _validate(input, weight, bias, stride, padding, output_padding, groups, dilation)
    unbatched = input.dim() == 4
    x = input.unsqueeze(0) if unbatched else input
    if hit is None:
        why = fast_path.check(x, weight, bias, stride, padding, output_padding, groups, dilation)
        if why:
            fast_path.fallback_or_raise(why, strict)
            return F.conv_transpose3d(input, weight, bias, stride, padding, output_padding, groups, dilation)
        s, p, op = (_triple(stride, "stride")[0], _triple(padding, "padding")[0],
                    _triple(output_padding, "output_padding")[0])
        problem = Problem.of(x, weight, s, p, op)
        hit = (s, p, op, problem, channel_pad.padded_problem(problem))
        if key is not None and len(_fast_calls) < _FAST_CALLS_MAX:
            _fast_calls[key] = hit
    s, p, op, problem, padded = hit
    if padded is None or not channel_pad.enabled():
        y = ops.apply(x, weight, bias, s, p, op, _resolve_precision(precision), config, problem)
    else:
        y = _apply_padded(x, weight, bias, s, p, op, _resolve_precision(precision), config, padded)
    return y.squeeze(0) if unbatched else y


def _apply_padded(x, weight, bias, s, p, op, precision, config, padded: Problem) -> torch.Tensor:
    """The layer with its channels padded with zeros to multiples of 4 (``channel_pad``): x [N, C_in, ...] and
    weight [C_in, C_out, k, k, k] run as [N, padded.c_in, ...] and [padded.c_in, padded.c_out, k, k, k], and
    the output [N, padded.c_out, ...] is cropped back to [N, C_out, ...]."""
    xp = channel_pad.pad_channels(x, padded.c_in)
    wp = channel_pad.pad_weight(weight, padded.c_in, padded.c_out)
    bp = None if bias is None else F.pad(bias, (0, padded.c_out - bias.shape[0]))
    yp = ops.apply(xp, wp, bp, s, p, op, precision, config, padded)
    return channel_pad.crop_channels(yp, weight.shape[1])


# Eager calls already validated and found on the fast path, keyed by everything _validate and
# fast_path.check read (shapes, dtypes, devices, the arguments and their types, since 1.0 == 1 but only
# the int is a valid stride). Those two and Problem.of took 18 of the forward's ~30 us of Python, and a
# small layer's step is host-bound (docs/performance.md v0.35). Bounded: a model has a few layer shapes.
_fast_calls: dict = {}
_FAST_CALLS_MAX = 4096
# torch.compiler.is_compiling is missing from older torch; there the key is built even while dynamo traces,
# whose graph breaks at the op call below anyway (ops.apply has no custom op before torch 2.4).
_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)


def _call_key(x, weight, bias, stride, padding, output_padding, groups, dilation):
    """A hashable key for the call, or None where it has none (lists as arguments, non-tensors)."""
    if not isinstance(x, torch.Tensor) or not isinstance(weight, torch.Tensor):
        return None
    if bias is not None and not isinstance(bias, torch.Tensor):
        return None
    b = None if bias is None else (bias.shape, bias.dtype, bias.device)
    key = (x.shape, x.dtype, x.device, weight.shape, weight.dtype, weight.device, b,
           type(stride), stride, type(padding), padding, type(output_padding), output_padding,
           type(groups), groups, type(dilation), dilation)
    try:
        hash(key)
    except TypeError:
        return None
    return key
