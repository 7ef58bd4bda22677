"""Loads the compiled CUTLASS extension (``_C*.so``) if this install has one."""
from __future__ import annotations

import functools
import glob
import os
from typing import Optional, Tuple

import torch

_HERE = os.path.dirname(os.path.abspath(__file__))


@functools.lru_cache(maxsize=None)
def load() -> Tuple[bool, str]:
    """(loaded, reason it is not) for the extension library."""
    libs = sorted(glob.glob(os.path.join(_HERE, "_C*.so")))
    if not libs:
        return False, "the CUDA extension was not built (pure-Python install)"
    try:
        torch.ops.load_library(libs[0])
    except OSError as e:  # wrong torch / CUDA ABI, missing libcudart, ...
        return False, f"the CUDA extension failed to load: {e}"
    return True, ""


@functools.lru_cache(maxsize=None)
def compiled_kernels() -> frozenset:
    ok, _ = load()
    return frozenset(torch.ops.convt3d_cutlass.kernels()) if ok else frozenset()


def trace_constant(fn):
    """Under torch.compile, evaluate ``fn`` once at trace time and bake in the result: these are
    facts about the install, the GPU and global flags, not about tensors."""
    try:
        import torch._dynamo
        return torch._dynamo.assume_constant_result(fn)
    except (ImportError, AttributeError):  # very old torch: no dynamo
        return fn


@trace_constant
def gpu_reason(index: int) -> str:
    """Why the CUTLASS path cannot run on CUDA device ``index`` (empty string when it can)."""
    return _gpu_reason(index)


@functools.lru_cache(maxsize=None)
def _gpu_reason(index: int) -> str:
    # Fixed for the process's life, and asked on every call: under cProfile its CUDA availability and
    # capability queries (with cached_filter's) took about 5% of a small layer's eager step (v0.11).
    ok, why = load()
    if not ok:
        return why
    if not torch.cuda.is_available():
        return "CUDA is not available"
    major, minor = torch.cuda.get_device_capability(index)
    if major < 8:
        return f"GPU compute capability {major}.{minor} < 8.0 (the kernels need Ampere or newer)"
    return ""


def unavailable_reason(device: Optional[torch.device] = None) -> str:
    """Why the CUTLASS path cannot run on ``device`` (empty string when it can)."""
    ok, why = load()
    if not ok:
        return why
    if not torch.cuda.is_available():
        return "CUDA is not available"
    idx = device.index if device is not None and device.index is not None else torch.cuda.current_device()
    return gpu_reason(idx)


def available() -> bool:
    """True when the CUTLASS kernels can run on the current CUDA device."""
    return unavailable_reason() == ""


@functools.lru_cache(maxsize=None)
def num_sms(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


@functools.lru_cache(maxsize=None)
def resident_ctas(name: str, index: int, ncdhw: bool = False) -> int:
    """CTAs of the compiled stock-contract kernel ``name`` (CUTLASS's own, the FFMA grad_weight) resident per SM of
    CUDA device ``index`` (its registers and shared memory, asked of the CUDA runtime); 0 where it does not say.
    ncdhw: of the kernel it runs on NCDHW operands (the FFMA grad_weight's NC mode)."""
    with torch.cuda.device(index):
        return int(torch.ops.convt3d_cutlass.resident_ctas(name, ncdhw))


@functools.lru_cache(maxsize=None)
def capability(index: int) -> Tuple[int, int]:
    """Compute capability (major, minor) of CUDA device ``index``."""
    return tuple(torch.cuda.get_device_capability(index))


@functools.lru_cache(maxsize=None)
def smem_optin(index: int) -> int:
    """Opt-in shared memory per block (bytes) of CUDA device ``index``."""
    props = torch.cuda.get_device_properties(index)
    v = getattr(props, "shared_memory_per_block_optin", 0)
    if v:
        return int(v)
    major, _ = torch.cuda.get_device_capability(index)
    return 232448 if major >= 9 else 166912  # H100 / A100 class
