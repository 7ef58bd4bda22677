"""The FFMA implicit-GEMM grad_input row (csrc/ffma_fprop.cuh, exact fp32) against float64 (GPU)."""
import pytest
import torch
import torch.nn.functional as F

import convt3d_cutlass as ct
from convt3d_cutlass import direct, launch
from convt3d_cutlass.kernel_table import FFMA_FPROP_KERNELS
from convt3d_cutlass.layouts import CL
from convt3d_cutlass.problem import Problem

from conftest import TOL, cuda_kernel_counts, poison_allocator, rel_l2, requires_gpu

pytestmark = [requires_gpu, pytest.mark.gpu]

# (N, C_in, C_out, spatial, k, stride, padding, output_padding): C_in past one and two 64-wide N tiles (and
# ending inside one), C_out whose 4-channel chunks cross taps inside a 32-wide stage (20, 44), M tiles ending
# inside a sample, even, large and pointwise filters, strides past the filter, output padding, one position.
CASES = [
    (2, 136, 20, (5, 6, 7), 3, 2, 1, 0),
    (2, 40, 12, (4, 5, 9), 5, 1, 2, 0),
    (1, 64, 8, (3, 4, 5), 2, 2, 0, 0),
    (3, 132, 44, (6, 5, 7), 1, 3, 0, 0),
    (2, 12, 36, (1, 1, 1), 3, 1, 0, 0),
    (1, 256, 128, (4, 4, 4), 3, 2, 1, 1),
    (1, 20, 16, (5, 6, 9), 7, 1, 3, 0),
    (2, 64, 32, (9, 8, 7), 3, 2, 1, 1),
]


def _case_id(c):
    return "x".join(map(str, c[:3])) + f"_k{c[4]}s{c[5]}p{c[6]}o{c[7]}"


@pytest.mark.parametrize("cfg", FFMA_FPROP_KERNELS, ids=lambda k: k.name)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_ffma_fprop_grad_input_matches_float64(cfg, case):
    n, ci, co, sp, k, s, p, op = case
    prob = Problem(n, ci, co, sp, k, s, p, op)
    gy = torch.randn((n, co) + prob.out_spatial, device="cuda").contiguous(memory_format=CL)
    w = torch.randn(ci, co, k, k, k, device="cuda")
    assert launch._plan(prob, "fprop", "fp32", cfg.name, gy.device, None).name == cfg.name
    poison_allocator()
    gx = launch.grad_input(gy, w, prob, "fp32", cfg.name)
    ref = F.conv3d(gy.double(), w.double(), None, s, p)
    assert gx.shape == ref.shape
    assert rel_l2(gx, ref) <= TOL["fp32"]  # inf where an element was left unwritten (NaN)


@pytest.mark.parametrize("cl", (False, True), ids=("ncdhw", "channels_last_3d"))
def test_ffma_fprop_is_the_exact_fp32_strided_grad_input_in_a_step(cl):
    # The selector's own choice (no config): a U-Net-like 64 -> 32 s2 layer with output padding, whose grad_input
    # took the FFMA tap-reuse or the stock SIMT tile before; gradients of x, w and bias against float64 in either
    # layout.
    prob = Problem(2, 64, 32, (6, 7, 8), 3, 2, 1, 1)
    assert launch._plan(prob, "fprop", "fp32", None, torch.device("cuda"), None).k.family == "ffma"
    x = torch.randn(2, 64, 6, 7, 8, device="cuda")
    if cl:
        x = x.to(memory_format=CL)
    x.requires_grad_()
    w = (torch.randn(64, 32, 3, 3, 3, device="cuda") / (64 * 27) ** 0.5).requires_grad_()
    b = torch.randn(32, device="cuda").requires_grad_()
    y = ct.conv_transpose3d(x, w, b, 2, 1, 1, precision="fp32", strict=True)
    gy = torch.randn_like(y)
    poison_allocator()
    y.backward(gy)
    xd, wd, bd = (t.detach().double().requires_grad_() for t in (x, w, b))
    F.conv_transpose3d(xd, wd, bd, 2, 1, 1).backward(gy.double())
    for got, ref in ((x.grad, xd.grad), (w.grad, wd.grad), (b.grad, bd.grad)):
        assert rel_l2(got, ref) <= TOL["fp32"]
    assert x.grad.is_contiguous(memory_format=CL) if cl else x.grad.is_contiguous()


# NC mode (csrc/ffma_fprop.cuh): grad_y read and grad_x written in NCDHW storage. grad_x's positions per sample a
# multiple of 4; M tiles ending inside a sample and a last M tile cut short; the rest as CASES.
NC_CASES = [
    (2, 136, 20, (4, 6, 7), 3, 2, 1, 0),
    (2, 40, 12, (4, 5, 9), 5, 1, 2, 0),
    (1, 64, 8, (4, 4, 5), 2, 2, 0, 0),
    (3, 132, 44, (6, 5, 2), 1, 3, 0, 0),
    (1, 256, 128, (4, 4, 4), 3, 2, 1, 1),
    (1, 20, 16, (5, 6, 4), 7, 1, 3, 0),
    (2, 64, 32, (9, 8, 6), 3, 2, 1, 1),
]


@pytest.mark.parametrize("cfg", FFMA_FPROP_KERNELS, ids=lambda k: k.name)
@pytest.mark.parametrize("case", NC_CASES, ids=_case_id)
def test_ffma_fprop_reads_and_writes_ncdhw_in_place_and_matches_float64(cfg, case):
    n, ci, co, sp, k, s, p, op = case
    prob = Problem(n, ci, co, sp, k, s, p, op)
    gy = torch.randn((n, co) + prob.out_spatial, device="cuda")
    w = torch.randn(ci, co, k, k, k, device="cuda")
    assert direct.ffma_fprop_reads_ncdhw(cfg, prob)
    launch.grad_input(gy, w, prob, "fp32", cfg.name, ncdhw=True)  # the filter's cached copy made
    poison_allocator()
    names = cuda_kernel_counts(lambda: launch.grad_input(gy, w, prob, "fp32", cfg.name, ncdhw=True))
    assert not [nm for nm in names if "transpose" in nm or "elementwise" in nm], names  # nothing converted
    poison_allocator()
    gx = launch.grad_input(gy, w, prob, "fp32", cfg.name, ncdhw=True)
    ref = F.conv3d(gy.double(), w.double(), None, s, p)
    assert gx.shape == ref.shape and gx.is_contiguous()
    assert rel_l2(gx, ref) <= TOL["fp32"]  # inf where an element was left unwritten (NaN)


LAYERS = {"64to32": (2, 64, 32, (16, 16, 16), 3, 2, 1, 1), "128to64_pair": (1, 128, 64, (12, 12, 12), 3, 2, 1, 1),
          "128to64_s1_pair": (1, 128, 64, (12, 12, 12), 3, 1, 1, 0),
          "64to32_k5_pair": (1, 64, 32, (12, 12, 12), 5, 2, 2, 1)}


@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("node", [True, False])
def test_ncdhw_strided_step_converts_nothing_on_the_ffma_rows(node, layer, monkeypatch):
    """A U-Net-like 64 -> 32 s2 layer in NCDHW (exact fp32): grad_input and grad_weight are the FFMA rows in their NC
    modes, so the backward converts neither x, grad_y nor grad_x (the eager node and the Python Function alike), and
    the gradients match float64. The pair rule (direct.nc_pair): a 128 -> 64 s2 layer, two N tiles of grad_input and
    two M tiles of grad_weight's 64-row tile, whose forward (reduction 1024) writes y NCDHW itself; and a 128 -> 64
    unit-stride one (medium's shape), grad_input on the tap-reuse row reading grad_y in place and grad_weight on the
    FFMA 64-row tile. The forward's output is checked against float64 too. And, the pair's 64-channel reach (v0.86),
    a 64 -> 32 k5 s2 layer (3D-GAN's late one): the FFMA row in place of the tap-reuse row that sums grad_y's
    parities, the forward NCDHW at reduction 1728."""
    monkeypatch.setenv("CONVT3D_EAGER_NODE", "1" if node else "0")
    n, ci, co, sp, k, s, p, op = LAYERS[layer]
    prob = Problem(n, ci, co, sp, k, s, p, op)
    assert direct.nc_pair(prob)  # 64 -> 32 s2 too since v0.86 (its rows the same with or without the pair)
    dev = torch.device("cuda")
    gi = launch._plan(prob, "fprop", "fp32", None, dev, None, out_ncdhw=True).k
    assert gi.family == ("direct" if s == 1 else "ffma")
    assert launch._plan(prob, "wgrad", "fp32", None, dev, None, out_ncdhw=True).k.family == "ffma"
    x = torch.randn(n, ci, *sp, device="cuda", requires_grad=True)
    w = (torch.randn(ci, co, k, k, k, device="cuda") / (ci * k ** 3) ** 0.5).requires_grad_()
    b = torch.randn(co, device="cuda", requires_grad=True)
    gy = torch.randn((n, co) + prob.out_spatial, device="cuda")
    assert launch.grad_y_in_place(gy, x, w, prob, "fp32", None, True, True)
    fwd = launch._plan(prob, "dgrad", "fp32", None, dev, None, out_ncdhw=True).k
    assert direct.writes_ncdhw(fwd, prob, "dgrad")  # 64 -> 32: reduction 512; 128 -> 64: unit stride or the pair
    poison_allocator()
    y = ct.conv_transpose3d(x, w, b, s, p, op, precision="fp32", strict=True)
    assert y.is_contiguous()
    poison_allocator()
    names = cuda_kernel_counts(lambda: y.backward(gy))
    assert not [nm for nm in names if "transpose" in nm], names
    xd, wd, bd = (t.detach().double().requires_grad_() for t in (x, w, b))
    yd = F.conv_transpose3d(xd, wd, bd, s, p, op)
    assert rel_l2(y, yd) <= TOL["fp32"]
    yd.backward(gy.double())
    for got, ref in ((x.grad, xd.grad), (w.grad, wd.grad), (b.grad, bd.grad)):
        assert rel_l2(got, ref) <= TOL["fp32"]
    assert x.grad.is_contiguous()


def test_ffma_fprop_ncdhw_is_refused_to_kernels_that_read_ndhwc():
    from convt3d_cutlass import _extension
    prob = Problem(1, 64, 32, (4, 4, 4), 3, 2, 1)
    gy = torch.randn((1, 32) + prob.out_spatial, device="cuda")
    filt = torch.randn(64, 3, 3, 3, 32, device="cuda")
    gx = torch.empty(1, 64, 4, 4, 4, device="cuda")
    for name in ("fprop_fp32_128x64x8_64x32x8_s4",):
        if name in _extension.compiled_kernels():
            with pytest.raises(RuntimeError, match="reads NDHWC operands only"):
                torch.ops.convt3d_cutlass.fprop(name, gy, filt, None, gx, [1] * 3, [2] * 3, 1, True)
