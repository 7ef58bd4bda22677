"""The FFMA implicit-GEMM grad_weight rows (csrc/ffma_wgrad.cuh, exact fp32) against float64 (GPU)."""
import pytest
import torch
import torch.nn.functional as F

from convt3d_cutlass import launch
from convt3d_cutlass.kernel_table import FFMA_WGRAD_KERNELS
from convt3d_cutlass.layouts import CL
from convt3d_cutlass.problem import Problem

from conftest import TOL, poison_allocator, rel_l2, requires_gpu

pytestmark = [requires_gpu, pytest.mark.gpu]

# (N, C_in, C_out, spatial, k, stride, padding): partial M tiles past 64 / 128 channels, N tiles that end
# inside a tap, even and large filters, strides past the filter, one position per sample.
CASES = [
    (2, 136, 20, (5, 6, 7), 3, 2, 1),
    (2, 40, 12, (4, 5, 9), 5, 1, 2),
    (1, 64, 8, (3, 4, 5), 2, 2, 0),
    (3, 132, 44, (6, 5, 7), 1, 3, 0),
    (2, 12, 36, (1, 1, 1), 3, 1, 0),
    (1, 256, 128, (4, 4, 4), 3, 2, 1),
    (1, 20, 16, (5, 6, 9), 7, 1, 3),  # 7 taps per axis: the 32-row tile's tap bits
]


@pytest.mark.parametrize("cfg", FFMA_WGRAD_KERNELS, ids=lambda k: k.name)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:3])) + f"_k{c[4]}s{c[5]}p{c[6]}")
def test_ffma_wgrad_matches_float64(cfg, case):
    n, ci, co, sp, k, s, p = case
    prob = Problem(n, ci, co, sp, k, s, p)
    x = torch.randn(n, ci, *sp, device="cuda").to(memory_format=CL)
    gy = torch.randn((n, co) + prob.out_spatial, device="cuda").contiguous(memory_format=CL)
    poison_allocator()
    gw = launch.grad_weight(gy, x, prob, "fp32", cfg.name)
    assert launch._plan(prob, "wgrad", "fp32", cfg.name, x.device, None).name == cfg.name
    wd = torch.zeros(ci, co, k, k, k, dtype=torch.float64, device="cuda", requires_grad=True)
    F.conv_transpose3d(x.double(), wd, None, s, p).backward(gy.double())
    assert rel_l2(gw, wd.grad) <= TOL["fp32"]


def test_ffma_wgrad_splits_the_reduction_and_stays_bitwise_reproducible():
    prob = Problem(2, 256, 128, (16, 16, 16), 3, 2, 1)
    name = "ffma_wgrad_fp32_128x128x32_s3"  # split-K (the selector takes its stream-K twin here)
    assert launch._plan(prob, "wgrad", "fp32", name, torch.device("cuda"), None).slices > 1
    x = torch.randn(2, 256, 16, 16, 16, device="cuda").to(memory_format=CL)
    gy = torch.randn((2, 128) + prob.out_spatial, device="cuda").contiguous(memory_format=CL)
    first = launch.grad_weight(gy, x, prob, "fp32", name)
    poison_allocator()
    assert torch.equal(first, launch.grad_weight(gy, x, prob, "fp32", name))


# Stream-K twins on layers with many k blocks per CTA: tiles cut into pieces at CTA boundaries, CTAs whose range
# spans tiles, and (64 and 32 rows) tiles of tens of pieces added one after another.
STREAMK_CASES = {128: (2, 256, 128, (16, 16, 16), 3, 2, 1), 64: (2, 64, 32, (16, 16, 16), 3, 2, 1),
                 32: (1, 32, 16, (24, 24, 24), 5, 1, 2)}


@pytest.mark.parametrize("cfg", [k for k in FFMA_WGRAD_KERNELS if k.streamk], ids=lambda k: k.name)
def test_ffma_wgrad_stream_k_adds_its_pieces_in_order_and_stays_bitwise_reproducible(cfg):
    n, ci, co, sp, k, s, p = STREAMK_CASES[cfg.tile[0]]
    prob = Problem(n, ci, co, sp, k, s, p)
    assert launch._plan(prob, "wgrad", "fp32", cfg.name, torch.device("cuda"), None).slices == 1
    x = torch.randn(n, ci, *sp, device="cuda").to(memory_format=CL)
    gy = torch.randn((n, co) + prob.out_spatial, device="cuda").contiguous(memory_format=CL)
    poison_allocator()
    first = launch.grad_weight(gy, x, prob, "fp32", cfg.name)
    wd = torch.zeros(ci, co, k, k, k, dtype=torch.float64, device="cuda", requires_grad=True)
    F.conv_transpose3d(x.double(), wd, None, s, p).backward(gy.double())
    assert rel_l2(first, wd.grad) <= TOL["fp32"]
    for _ in range(2):
        poison_allocator()
        assert torch.equal(first, launch.grad_weight(gy, x, prob, "fp32", cfg.name))
