"""Channel counts that are not multiples of 4, run as the layer padded with zero channels.

Why: every tensor-core and tap-reuse kernel moves 16 bytes (4 floats) at a time along channels, so a layer with,
say, C_out = 1 or 3 (an output head) could only run on the stock SIMT tiles (alignment 1), which fill a 32- to
128-wide GEMM N with one to three columns: 0.15-0.3x cuDNN on such layers (H200, v0.78). Padded to the next
multiple of 4 with zero channels, the layer runs on the fast kernels, in the precision asked for. The zeros
change no sum: a padded output channel gets only products with its zero filter column (and is cropped), a
real one gets exact zeros from the padded input channels.

Costs: the padded filter (cached per weight version), the padded input's copy where C_in is padded, the
cropped output's copy, and in the backward the padded gradient of the output. ``CONVT3D_PAD_CHANNELS=0``
turns it off (the stock SIMT tiles then run such layers, exact fp32 whatever the precision flag).
"""
from __future__ import annotations

import os
from typing import Optional

import torch
import torch.nn.functional as F

from .layouts import CL, wants_channels_last
from .problem import Problem
from .weights import cached_filter

ALIGN = 4  # floats per 16-byte access along channels


def enabled() -> bool:
    return os.environ.get("CONVT3D_PAD_CHANNELS", "1") != "0"


def _round_up(c: int) -> int:
    return -(-c // ALIGN) * ALIGN


def padded_problem(p: Problem) -> Optional[Problem]:
    """p with C_in and C_out rounded up to multiples of ALIGN, or None where both already are. (Whether to run
    it is ``enabled()``, read at each call: the caller keeps this per call signature.)"""
    if p.c_in % ALIGN == 0 and p.c_out % ALIGN == 0:
        return None
    return Problem(p.n, _round_up(p.c_in), _round_up(p.c_out), p.spatial, p.k, p.stride, p.padding,
                   p.output_padding)


def _format(t: torch.Tensor):
    return CL if wants_channels_last(t) else torch.contiguous_format


class _PadChannels(torch.autograd.Function):
    """t [N, C, D, H, W] -> [N, c, D, H, W], zeros past C, in t's memory format; the gradient is the first C
    channels of the padded one, packed in t's format."""

    @staticmethod
    def forward(ctx, t, c):
        ctx.c, ctx.fmt = t.shape[1], _format(t)
        return pad_plain(t, c)

    @staticmethod
    def backward(ctx, g):
        # packed in t's format: the layer before may be ours, whose kernels want packed tensors
        return g[:, :ctx.c].contiguous(memory_format=ctx.fmt), None


class _CropChannels(torch.autograd.Function):
    """t [N, C, D, H, W] -> its first c channels, packed in t's memory format; the gradient is padded with
    zero channels back to C in t's format (so a channels_last_3d model's backward stays channels_last_3d: a
    slice's own backward would allocate NCDHW zeros)."""

    @staticmethod
    def forward(ctx, t, c):
        ctx.c_full, ctx.fmt = t.shape[1], _format(t)
        return t[:, :c].contiguous(memory_format=ctx.fmt)

    @staticmethod
    def backward(ctx, g):
        # In the padded output's format, not g's: a gradient of 1 channel is contiguous in both formats.
        return pad_plain(g, ctx.c_full, ctx.fmt), None


def pad_plain(t: torch.Tensor, c: int, fmt=None) -> torch.Tensor:
    """t [N, C, *spatial] -> [N, c, *spatial] (c >= C), zeros past C, in memory format ``fmt`` (t's by default);
    outside autograd (the padded layers' Functions call it, and bench.runner times the passes with it)."""
    out = torch.empty((t.shape[0], c) + tuple(t.shape[2:]), dtype=t.dtype, device=t.device,
                      memory_format=fmt or _format(t))
    out[:, t.shape[1]:].zero_()
    out[:, :t.shape[1]].copy_(t)
    return out


class _PadWeight(torch.autograd.Function):
    """weight [C_in, C_out, k, k, k] -> [ci, co, k, k, k] with zeros past C_in and C_out, cached per weight
    version (so the kernels' own filter caches, keyed by the tensor they are given, keep hitting); returned as
    a view, so that each call's output is a tensor of its own in the autograd graph. The gradient is the
    padded one's leading block."""

    @staticmethod
    def forward(ctx, weight, ci, co):
        ctx.shape = tuple(weight.shape[:2])

        def build():
            out = weight.new_zeros((ci, co) + tuple(weight.shape[2:]))
            out[:weight.shape[0], :weight.shape[1]].copy_(weight.detach())
            return out

        w = cached_filter(weight, ("pad-channels", ci, co), build)
        return w.view_as(w)

    @staticmethod
    def backward(ctx, g):
        return g[:ctx.shape[0], :ctx.shape[1]], None, None


def pad_weight(weight: torch.Tensor, ci: int, co: int) -> torch.Tensor:
    """weight [C_in, C_out, k, k, k] padded with zeros to [ci, co, k, k, k] (differentiable)."""
    if tuple(weight.shape[:2]) == (ci, co):
        return weight
    if _compiling():
        return F.pad(weight, (0, 0, 0, 0, 0, 0, 0, co - weight.shape[1], 0, ci - weight.shape[0]))
    return _PadWeight.apply(weight, ci, co)


def pad_channels(t: torch.Tensor, c: int) -> torch.Tensor:
    """t [N, C, D, H, W] padded with zero channels to c, in t's memory format (differentiable)."""
    if t.shape[1] == c:
        return t
    if _compiling():
        return F.pad(t, (0, 0, 0, 0, 0, 0, 0, c - t.shape[1]))
    return _PadChannels.apply(t, c)


def crop_channels(t: torch.Tensor, c: int) -> torch.Tensor:
    """t [N, C, D, H, W] -> its first c channels, packed in t's memory format (differentiable)."""
    if t.shape[1] == c:
        return t
    if _compiling():
        return t[:, :c].contiguous(memory_format=_format(t))
    return _CropChannels.apply(t, c)


_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)
