import math

import pytest
import torch

from convt3d_cutlass import _extension


def gpu_skip_reason():
    if not torch.cuda.is_available():
        return "no CUDA device"
    return _extension.unavailable_reason()


_reason = gpu_skip_reason()
requires_gpu = pytest.mark.skipif(bool(_reason), reason=f"needs the CUTLASS path: {_reason}")


def rel_l2(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64; inf when out has a non-finite element."""
    out64 = out.detach().double()
    if not torch.isfinite(out64).all():
        return math.inf
    ref64 = ref.detach().double()
    return ((out64 - ref64).norm() / ref64.norm().clamp_min(1e-300)).item()


TOL = {"fp32": 1e-5, "3xtf32": 1e-5, "tf32": 5e-3}


def grouped_phases_built() -> bool:
    """Whether the extension launches a stride-2 forward's stock phases in one grid (csrc/conv_kernel.cuh:
    CUDA 12.1+, whose kernel parameters may exceed 4 KB); judged by torch's CUDA, whose major version the
    extension's build matches."""
    v = torch.version.cuda
    return v is not None and tuple(int(x) for x in v.split(".")[:2]) >= (12, 1)


def cuda_kernel_counts(fn) -> dict:
    """{name: launches} of the CUDA kernels fn() launches (torch.profiler)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return {e.key: e.count for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA}


def poison_allocator(device="cuda", mib=256):
    """Fill free blocks of torch's caching allocator with NaN so outputs the kernels fail to
    write show up as NaN instead of stale values."""
    t = torch.full((mib << 18,), float("nan"), device=device)
    del t


@pytest.fixture(autouse=True)
def _fresh_seed():
    torch.manual_seed(1234)
    yield


def clear_plans():
    """Forget the selector's, launch's and the eager node's plans, so that a changed policy constant takes effect
    (bench/tools/common.replan does the same for the A/B tools)."""
    from convt3d_cutlass import eager, launch
    for clear in (launch._select_cached.cache_clear, launch._plan_cached.cache_clear, eager._plans.clear):
        clear()
