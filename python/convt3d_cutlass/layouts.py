"""Memory formats around the NDHWC kernels."""
from __future__ import annotations

import torch

CL = torch.channels_last_3d


def wants_channels_last(x: torch.Tensor) -> bool:
    """Output format rule: channels_last_3d in, channels_last_3d out; anything else gives NCDHW."""
    return x.is_contiguous(memory_format=CL) and not x.is_contiguous()


def ndhwc(t: torch.Tensor) -> torch.Tensor:
    """[N, C, D, H, W] tensor -> contiguous [N, D, H, W, C] view (a copy only if not channels_last_3d)."""
    return t.contiguous(memory_format=CL).permute(0, 2, 3, 4, 1)


def empty_cl(shape, like: torch.Tensor) -> torch.Tensor:
    """Uninitialised [N, C, D, H, W] tensor stored channels_last_3d, on like's device."""
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=CL)


def to_format(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return t if channels_last else t.contiguous()
