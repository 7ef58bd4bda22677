"""Memory formats around the NDHWC kernels."""
from __future__ import annotations

import functools

import torch

from . import _extension

CL = torch.channels_last_3d


def wants_channels_last(x: torch.Tensor) -> bool:
    """Output format rule: channels_last_3d in, channels_last_3d out; anything else gives NCDHW."""
    return x.is_contiguous(memory_format=CL) and not x.is_contiguous()


def aligned16(t: torch.Tensor) -> torch.Tensor:
    """t itself when its data starts on a 16-byte boundary, else a copy that does (same strides).

    The kernels move 16 bytes at a time (cp.async, TMA boxes, float4 epilogue loads of the bias), and
    a view into a flat buffer (FSDP's flat parameters, ``as_strided``, slices of a packed bias) may
    start at any element; a misaligned 16-byte access would be a fatal CUDA error, not a wrong value."""
    return t if t.data_ptr() % 16 == 0 else t.clone()


@functools.lru_cache(maxsize=None)
def _has_op(name: str) -> bool:
    """Whether the loaded extension registers op ``name`` (fixed for the process's life)."""
    if not _extension.load()[0]:
        return False
    try:
        return hasattr(torch.ops.convt3d_cutlass, name)
    except (AttributeError, RuntimeError):
        return False


def _fast_transpose(t: torch.Tensor) -> bool:
    """Whether our transpose kernel can convert t (fp32 CUDA, extension with the op loaded).

    torch's permuted copy runs NCDHW <-> channels_last_3d at about a quarter of the copy bandwidth
    on these shapes; the kernel (csrc/layout_transpose.cu) is a tiled shared-memory transpose."""
    return t.is_cuda and t.dtype == torch.float32 and t.dim() == 5 and _has_op("transpose_layout")


def ndhwc(t: torch.Tensor) -> torch.Tensor:
    """[N, C, D, H, W] tensor -> contiguous [N, D, H, W, C] tensor (a copy only if not channels_last_3d)."""
    if t.is_contiguous(memory_format=CL):
        return aligned16(t).permute(0, 2, 3, 4, 1)
    if _fast_transpose(t):
        src = t.contiguous()
        n, c, d, h, w = src.shape
        out = torch.empty((n, d, h, w, c), dtype=src.dtype, device=src.device)
        torch.ops.convt3d_cutlass.transpose_layout(src, out, True)
        return out
    return t.contiguous(memory_format=CL).permute(0, 2, 3, 4, 1)


def channels_last_with_sums(t: torch.Tensor):
    """NCDHW t [N, C, D, H, W] -> (the same tensor stored channels_last_3d, [C] sums of t over N, D, H, W),
    from one read of t by the transpose kernel; None when t is channels_last_3d already or the kernel
    cannot take it.

    The backward pass's grad_y serves grad_input, grad_weight and the bias gradient: converted once
    here instead of once per pass, and the bias gradient comes from the same read. The sums are per
    128-position tile in a fixed order, then summed over the tiles by row_sums: reproducible."""
    if t.is_contiguous(memory_format=CL) or not _fast_transpose(t):
        return None
    src = t.contiguous()
    n, c = src.shape[:2]
    positions = src[0, 0].numel()
    out = torch.empty((n,) + tuple(src.shape[2:]) + (c,), dtype=src.dtype, device=src.device)
    sums = torch.empty((n, torch.ops.convt3d_cutlass.transpose_tiles(positions), c), dtype=src.dtype,
                       device=src.device)
    torch.ops.convt3d_cutlass.transpose_layout(src, out, True, sums)
    return out.permute(0, 4, 1, 2, 3), row_sums(sums)


def row_sums(t: torch.Tensor) -> torch.Tensor:
    """[C] sums of a packed [..., C] tensor over every axis but the last, by the extension's kernel, in a
    fixed order. Short ones (the partial rows of the layout transpose and of grad_input's kernels) take
    one launch, where torch's sum spent more host time than the kernel on the small layers' steps."""
    out = torch.empty((t.shape[-1],), dtype=t.dtype, device=t.device)
    torch.ops.convt3d_cutlass.channel_sums(t, out)
    return out


def channel_sums(t: torch.Tensor) -> torch.Tensor:
    """[C] sums of t [N, C, D, H, W] over N, D, H, W: the bias gradient.

    A channels_last_3d t is one packed [positions, C] matrix for the extension's kernel (torch's sum
    of it ran at a fifth of the copy bandwidth, docs/performance.md v0.10); anything else goes to torch.
    Eager mode only: the kernel reads data pointers, which the tensors of a traced backward lack."""
    if t.is_contiguous(memory_format=CL) and t.numel() > 0 and _fast_transpose(t) and _has_op("channel_sums"):
        return row_sums(aligned16(t).permute(0, 2, 3, 4, 1))
    return t.sum((0, 2, 3, 4))


def empty_cl(shape, like: torch.Tensor) -> torch.Tensor:
    """Uninitialised [N, C, D, H, W] tensor stored channels_last_3d, on like's device."""
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=CL)


def to_format(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """[N, C, D, H, W] t as channels_last_3d (unchanged) or as contiguous NCDHW."""
    if channels_last or t.is_contiguous():
        return t
    if t.is_contiguous(memory_format=CL) and _fast_transpose(t):
        out = torch.empty(t.shape, dtype=t.dtype, device=t.device)
        torch.ops.convt3d_cutlass.transpose_layout(t.permute(0, 2, 3, 4, 1), out, False)
        return out
    return t.contiguous()
