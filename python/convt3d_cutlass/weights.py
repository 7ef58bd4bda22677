"""Re-laid-out filters, cached per weight version.

PyTorch's ConvTranspose3d weight is [C_in, C_out, k, k, k]. The kernels take it as
[C_in, k, k, k, C_out] (CUTLASS KTRSC with K = C_in, C = C_out) for both dgrad (forward) and
fprop (grad_input); a stride phase takes a strided slice of that.
"""
from __future__ import annotations

import collections
from typing import Callable, Tuple

import torch

from .layouts import aligned16

_CACHE_SIZE = 32
_cache: "collections.OrderedDict" = collections.OrderedDict()


def _relayout(weight: torch.Tensor, r: Tuple[int, int, int], s: int) -> torch.Tensor:
    w = weight.detach().permute(0, 2, 3, 4, 1)
    if s > 1:
        w = w[:, r[0]::s, r[1]::s, r[2]::s, :]
    return w.contiguous()


def cached_filter(weight: torch.Tensor, tag: tuple, build: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``build()``'s re-layout of ``weight``, cached like :func:`filter_ktrsc` under ``tag``; every
    filter the kernels read comes through here, so here is where it is made 16-byte aligned."""
    if weight.is_cuda and torch.cuda.is_current_stream_capturing():  # a CUDA weight: CUDA is initialized
        return aligned16(build())
    key = (weight.device, weight.data_ptr(), tuple(weight.shape), weight.stride(), tag)
    hit = _cache.get(key)
    if hit is not None and hit[1] == weight._version:
        _cache.move_to_end(key)
        return hit[2]
    out = aligned16(build())
    _cache[key] = (weight.detach(), weight._version, out)
    _cache.move_to_end(key)
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return out


def filter_ktrsc(weight: torch.Tensor, r: Tuple[int, int, int] = (0, 0, 0), s: int = 1) -> torch.Tensor:
    """weight [C_in, C_out, k, k, k] -> [C_in, kt, kr, ks, C_out] for phase offsets r, stride s.

    Cached on (storage address, shape, strides, phase) and checked against ``weight._version``;
    the entry holds a reference to the weight, so its address cannot be reused by another tensor
    while the entry lives. Never cached during CUDA graph capture: a replay must re-read the
    weight that the optimizer updated in place.
    """
    return cached_filter(weight, ("ktrsc", r, s), lambda: _relayout(weight, r, s))


def stock_phase_filter(weight: torch.Tensor, rs, s: int) -> torch.Tensor:
    """The stock forward's phase filters (filter_ktrsc for each phase offset r in rs: [C_in, taps_d,
    taps_h, taps_w, C_out]) end to end in one flat tensor, as the eager node reads them (one cache lookup
    per call instead of one per phase); cached per weight version."""
    return cached_filter(weight, ("ktrsc-phases", tuple(rs), s),
                         lambda: torch.cat([_relayout(weight, r, s).reshape(-1) for r in rs]))


def clear_cache() -> None:
    _cache.clear()
