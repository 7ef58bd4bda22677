"""The thin grad_input rows (csrc/thin_fprop.cuh, tf32, 4 reduction channels) against float64 (GPU)."""
import pytest
import torch
import torch.nn.functional as F

import convt3d_cutlass as ct
from convt3d_cutlass import launch
from convt3d_cutlass.kernel_table import THIN_KERNELS
from convt3d_cutlass.layouts import CL
from convt3d_cutlass.problem import Problem

from conftest import TOL, poison_allocator, rel_l2, requires_gpu

pytestmark = [requires_gpu, pytest.mark.gpu]

# (N, C_in, spatial, stride, padding, output_padding), k = 3, C_out = 4: strides 1-3, paddings 0-2, output padding;
# C_in ending inside a 32- or 64-wide N block and past two of them; M ending inside a 16-position block and a
# sample; one position.
CASES = [
    (2, 32, (5, 6, 7), 2, 1, 1),
    (1, 64, (4, 5, 9), 1, 1, 0),
    (2, 40, (3, 4, 5), 3, 0, 0),
    (1, 132, (2, 3, 3), 1, 0, 0),
    (3, 8, (1, 1, 1), 1, 0, 0),
    (2, 16, (7, 5, 6), 2, 2, 1),
]


def _case_id(c):
    return f"n{c[0]}c{c[1]}_" + "x".join(map(str, c[2])) + f"_s{c[3]}p{c[4]}o{c[5]}"


@pytest.mark.parametrize("cfg", THIN_KERNELS, ids=lambda k: k.name)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("cl", (False, True), ids=("ncdhw", "channels_last_3d"))
def test_thin_grad_input_matches_float64(cfg, case, cl):
    n, ci, sp, s, p, op = case
    prob = Problem(n, ci, 4, sp, 3, s, p, op)
    gy = torch.randn((n, 4) + prob.out_spatial, device="cuda")
    if cl:
        gy = gy.contiguous(memory_format=CL)
    w = torch.randn(ci, 4, 3, 3, 3, device="cuda")
    assert launch._plan(prob, "fprop", "tf32", cfg.name, gy.device, None).name == cfg.name
    poison_allocator()
    gx = launch.grad_input(gy, w, prob, "tf32", cfg.name)
    ref = F.conv3d(gy.double(), w.double(), None, s, p)
    assert gx.shape == ref.shape
    assert rel_l2(gx, ref) <= TOL["tf32"]  # inf where an element was left unwritten (NaN)


def test_thin_rows_refuse_other_problems():
    # 8 reduction channels, and a k5 filter: the kernel's own check, surfaced as an exception naming the status.
    for prob in (Problem(1, 32, 8, (4, 4, 4), 3, 1, 1), Problem(1, 32, 4, (4, 4, 4), 5, 1, 2)):
        gy = torch.randn((1, prob.c_out) + prob.out_spatial, device="cuda").contiguous(memory_format=CL)
        w = torch.randn(32, prob.c_out, prob.k, prob.k, prob.k, device="cuda")
        with pytest.raises((RuntimeError, ValueError)):
            launch.grad_input(gy, w, prob, "tf32", THIN_KERNELS[0].name)
            torch.cuda.synchronize()


@pytest.mark.parametrize("cl", (False, True), ids=("ncdhw", "channels_last_3d"))
@pytest.mark.parametrize("c_out", (1, 3, 4))
def test_thin_rows_run_a_heads_step(cl, c_out):
    # The selector's own choice (no config) for an output head's padded grad_input, in a step of the module:
    # gradients of x, w and bias against float64 in either layout.
    prob = Problem(2, 32, 4, (6, 7, 8), 3, 2, 1, 1)
    assert launch._plan(prob, "fprop", "tf32", None, torch.device("cuda"), None).k.family == "thin"
    m = ct.ConvTranspose3d(32, c_out, 3, 2, 1, 1, precision="tf32", strict=True).cuda()
    x = torch.randn(2, 32, 6, 7, 8, device="cuda")
    if cl:
        x = x.to(memory_format=CL)
    x.requires_grad_()
    y = m(x)
    gy = torch.randn_like(y)
    poison_allocator()
    y.backward(gy)
    xd = x.detach().double().requires_grad_()
    wd, bd = (t.detach().double().requires_grad_() for t in (m.weight, m.bias))
    F.conv_transpose3d(xd, wd, bd, 2, 1, 1).backward(gy.double())
    for got, ref in ((x.grad, xd.grad), (m.weight.grad, wd.grad), (m.bias.grad, bd.grad)):
        assert rel_l2(got, ref) <= TOL["tf32"]
    assert x.grad.is_contiguous(memory_format=CL) if cl else x.grad.is_contiguous()
