"""The patch rows (csrc/patch_simt.cuh): forward, grad_input and grad_weight at k == stride, padding 0, in every
layout the kernels read and write, exact fp32 and the tensor-core forms (tf32, 3xtf32), against float64 PyTorch
(needs a GPU and the extension)."""
import itertools

import pytest
import torch
import torch.nn.functional as F

import convt3d_cutlass as ct
from convt3d_cutlass import launch
from convt3d_cutlass.layouts import CL
from convt3d_cutlass.problem import Problem

from conftest import TOL, poison_allocator, rel_l2, requires_gpu

pytestmark = [requires_gpu, pytest.mark.gpu]

# (n, c_in, c_out, spatial, s): W a multiple of 4 (the 16-byte store forms) and not, odd channel counts (the
# 4-byte forms), stride 2 to 4, tiles past the edge of M and of the columns.
SHAPES = [(2, 64, 32, (8, 8, 8), 2), (1, 3, 5, (5, 6, 7), 2), (3, 24, 40, (4, 6, 12), 2), (2, 17, 9, (3, 4, 5), 3),
          (1, 8, 12, (2, 3, 4), 4), (2, 130, 6, (4, 4, 4), 2)]


def _operands(prob, cl):
    """Fresh x, weight, bias and grad_y of prob; x and grad_y channels_last_3d where cl."""
    n, c_in, c_out, s = prob.n, prob.c_in, prob.c_out, prob.stride
    x = torch.randn(n, c_in, *prob.spatial, device="cuda")
    w = torch.randn(c_in, c_out, s, s, s, device="cuda")
    b = torch.randn(c_out, device="cuda")
    gy = torch.randn((n, c_out) + prob.out_spatial, device="cuda")
    if cl:
        x, gy = x.to(memory_format=CL), gy.to(memory_format=CL)
    return x, w, b, gy


@pytest.mark.parametrize("shape, layouts", list(itertools.product(SHAPES, [(False, False), (True, True),
                                                                           (False, True), (True, False)])))
def test_patch_forward_and_grad_input_every_layout(shape, layouts):
    """Both passes through launch with the output poisoned: x (or grad_y) NCDHW or channels_last_3d, the
    output in the other layout or the same."""
    n, c_in, c_out, spatial, s = shape
    in_cl, out_cl = layouts
    prob = Problem(n, c_in, c_out, spatial, s, s, 0)
    dev = torch.device("cuda")
    assert launch._select(prob, "dgrad", "fp32", None, dev).family == "patch"
    assert launch._select(prob, "fprop", "fp32", None, dev).family == "patch"
    x, w, b, gy = _operands(prob, in_cl)
    # a channels_last_3d output given (written in place), or an NCDHW one made by the pass (from a poisoned pool)
    out = torch.full((n, c_out) + prob.out_spatial, float("nan"), device="cuda").to(memory_format=CL) if out_cl \
        else None
    gout = torch.full((n, c_in) + spatial, float("nan"), device="cuda").to(memory_format=CL) if out_cl else None
    poison_allocator()
    y = launch.forward(x, w, b, prob, "fp32", out=out, ncdhw=not out_cl)
    gx = launch.grad_input(gy, w, prob, "fp32", out=gout, ncdhw=not out_cl)
    for t in (y, gx):  # the kernel wrote the layout asked for, no conversion after it
        assert t.is_contiguous(memory_format=CL) if out_cl else t.is_contiguous()
    assert rel_l2(y, F.conv_transpose3d(x.double(), w.double(), b.double(), s)) <= TOL["fp32"]
    assert rel_l2(gx, F.conv3d(gy.double(), w.double(), None, s)) <= TOL["fp32"]

@pytest.mark.parametrize("prec", ["tf32", "3xtf32"])
@pytest.mark.parametrize("shape, layouts", list(itertools.product(SHAPES, [(False, False), (True, True),
                                                                           (False, True), (True, False)])))
def test_patch_tensor_core_rows_every_layout(prec, shape, layouts):
    """The mma.sync forms, both rows on both passes (forced), in every layout pair, outputs poisoned; the selector
    takes them for the forward of an NCDHW layer whose channel counts the tensor-core rows can take."""
    n, c_in, c_out, spatial, s = shape
    in_cl, out_cl = layouts
    prob = Problem(n, c_in, c_out, spatial, s, s, 0)
    dev = torch.device("cuda")
    fwd = launch._select(prob, "dgrad", prec, None, dev, out_ncdhw=True)
    assert fwd.name.startswith(f"patch_{prec}_") == (c_in % 4 == 0 and c_out % 4 == 0), fwd.name
    assert launch._select(prob, "dgrad", prec, None, dev).family != "patch"
    assert launch._select(prob, "fprop", prec, None, dev, out_ncdhw=True).family != "patch"
    x, w, b, gy = _operands(prob, in_cl)
    y_ref = F.conv_transpose3d(x.double(), w.double(), b.double(), s)
    gx_ref = F.conv3d(gy.double(), w.double(), None, s)
    for row in (f"patch_{prec}_128x128", f"patch_{prec}_128x64"):
        out = torch.full(y_ref.shape, float("nan"), device="cuda").to(memory_format=CL) if out_cl else None
        gout = torch.full(gx_ref.shape, float("nan"), device="cuda").to(memory_format=CL) if out_cl else None
        poison_allocator()
        y = launch.forward(x, w, b, prob, prec, row, out=out, ncdhw=not out_cl)
        gx = launch.grad_input(gy, w, prob, prec, row, out=gout, ncdhw=not out_cl)
        for t in (y, gx):
            assert t.is_contiguous(memory_format=CL) if out_cl else t.is_contiguous()
        assert rel_l2(y, y_ref) <= TOL[prec], row
        assert rel_l2(gx, gx_ref) <= TOL[prec], row
    if prec == "tf32":  # rounded operands: the error of tf32, not of fp32 (a test that can fail)
        assert rel_l2(y, y_ref) > 1e-5


@pytest.mark.parametrize("prec", ["fp32", "tf32", "3xtf32"])
@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_patch_training_step_reads_grad_y_in_place(prec, cl, bias):
    """The module's step (the eager node) on a k2 s2 layer: outputs and all three gradients against float64; in
    exact fp32 on NCDHW both backward kernels read grad_y in place, so nothing converts it (tf32 and 3xtf32: the
    forward on the tensor-core rows, the backward on the implicit GEMM)."""
    torch.manual_seed(0)
    m = ct.ConvTranspose3d(24, 12, 2, stride=2, bias=bias, precision=prec, strict=True).cuda()
    ref = torch.nn.ConvTranspose3d(24, 12, 2, stride=2, bias=bias).cuda().double()
    ref.load_state_dict({k: v.double() for k, v in m.state_dict().items()})
    x = torch.randn(2, 24, 6, 8, 10, device="cuda")
    if cl:
        x = x.to(memory_format=CL)
    xr = x.detach().double().requires_grad_()
    x.requires_grad_()
    y = m(x)
    gy = torch.randn_like(y)
    assert y.is_contiguous(memory_format=CL) if cl else y.is_contiguous()
    poison_allocator()
    y.backward(gy)
    yr = ref(xr)
    yr.backward(gy.double())
    assert rel_l2(y, yr) <= TOL[prec]
    assert rel_l2(x.grad, xr.grad) <= TOL[prec]
    assert rel_l2(m.weight.grad, ref.weight.grad) <= TOL[prec]
    if bias:
        assert rel_l2(m.bias.grad, ref.bias.grad) <= TOL[prec]
    p = Problem(2, 24, 12, (6, 8, 10), 2, 2, 0)
    assert launch.grad_y_in_place(gy.contiguous(), x.detach().contiguous(), m.weight, p, prec, None, True,
                                  True) == (prec == "fp32")


@pytest.mark.parametrize("shape, layouts", list(itertools.product(SHAPES, [(False, False), (True, True),
                                                                           (False, True), (True, False)])))
def test_patch_grad_weight_every_layout(shape, layouts):
    """grad_weight with x and grad_y each NCDHW or channels_last_3d (the patch row where x is NCDHW), against
    float64, and the same bits twice (the slices are summed in a fixed order); the patch row forced on every
    layout pair too."""
    n, c_in, c_out, spatial, s = shape
    x_cl, gy_cl = layouts
    prob = Problem(n, c_in, c_out, spatial, s, s, 0)
    # the patch row where the layer is NCDHW (x's layout), another where it is channels_last_3d
    kind = launch._select(prob, "wgrad", "fp32", None, torch.device("cuda"), out_ncdhw=not x_cl).family
    assert (kind == "patch") == (not x_cl)
    x = torch.randn(n, c_in, *spatial, device="cuda")
    gy = torch.randn((n, c_out) + prob.out_spatial, device="cuda")
    x = x.to(memory_format=CL) if x_cl else x
    gy = gy.to(memory_format=CL) if gy_cl else gy
    poison_allocator()
    gw = launch.grad_weight(gy, x, prob, "fp32")
    xd = x.double().requires_grad_()
    wd = torch.zeros(c_in, c_out, s, s, s, dtype=torch.float64, device="cuda", requires_grad=True)
    F.conv_transpose3d(xd, wd, None, s).backward(gy.double())
    assert rel_l2(gw, wd.grad) <= TOL["fp32"]
    assert torch.equal(gw, launch.grad_weight(gy, x, prob, "fp32"))
    forced = launch.grad_weight(gy, x, prob, "fp32", "patch_wgrad_fp32_64x128")
    assert rel_l2(forced, wd.grad) <= TOL["fp32"]
    assert torch.equal(forced, launch.grad_weight(gy, x, prob, "fp32", "patch_wgrad_fp32_64x128"))
