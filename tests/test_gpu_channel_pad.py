"""Layers whose channel counts are not multiples of 4 run padded with zero channels (channel_pad) on the fast
kernels, in the precision asked for; outputs and gradients against float64 (GPU)."""
import pytest
import torch
import torch.nn.functional as F

import convt3d_cutlass as ct
from convt3d_cutlass import channel_pad, launch
from convt3d_cutlass.layouts import CL
from convt3d_cutlass.problem import Problem

from conftest import TOL, poison_allocator, rel_l2, requires_gpu

pytestmark = [requires_gpu, pytest.mark.gpu]

# (N, C_in, C_out, spatial, k, stride, padding, output_padding): output heads of 1, 2 and 3 channels (strided,
# unit stride, k5), an input of 3 channels, both counts unaligned.
CASES = [
    (2, 32, 1, (6, 7, 8), 3, 2, 1, 1),
    (2, 64, 3, (4, 8, 8), 3, 1, 1, 0),
    (1, 32, 2, (6, 6, 6), 5, 1, 2, 0),
    (2, 3, 16, (5, 6, 7), 3, 2, 1, 0),
    (1, 6, 5, (4, 5, 6), 3, 1, 1, 0),
]


def _layer(case, cl):
    n, ci, co, sp, k, s, p, op = case
    x = torch.randn(n, ci, *sp, device="cuda")
    if cl:
        x = x.to(memory_format=CL)
    w = torch.randn(ci, co, k, k, k, device="cuda") / (ci * k ** 3) ** 0.5
    b = torch.randn(co, device="cuda")
    return x, w, b, (s, p, op)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[1]}to{c[2]}-k{c[4]}s{c[5]}")
@pytest.mark.parametrize("prec", ["fp32", "tf32", "3xtf32"])
@pytest.mark.parametrize("cl", [False, True])
def test_padded_layer_outputs_and_gradients(case, prec, cl):
    x, w, b, (s, p, op) = _layer(case, cl)
    xs, ws, bs = (t.clone().requires_grad_() for t in (x, w, b))
    poison_allocator()
    y = ct.conv_transpose3d(xs, ws, bs, s, p, op, precision=prec, strict=True)
    # cropped where C_out was padded; a padded C_in alone leaves the padded layer's own node
    assert ("CropChannels" in y.grad_fn.name()) == (case[2] % 4 != 0)
    gy = torch.randn_like(y)
    poison_allocator()
    y.backward(gy)
    xd, wd, bd = (t.double().requires_grad_() for t in (x, w, b))
    ref = F.conv_transpose3d(xd, wd, bd, s, p, op)
    ref.backward(gy.double())
    assert y.shape == ref.shape and rel_l2(y, ref) <= TOL[prec]
    for name, got, want in (("input", xs.grad, xd.grad), ("weight", ws.grad, wd.grad), ("bias", bs.grad, bd.grad)):
        assert got.shape == want.shape and rel_l2(got, want) <= TOL[prec], name
    if cl and case[2] > 1:
        assert y.is_contiguous(memory_format=CL) and not y.is_contiguous()
    else:
        assert y.is_contiguous()


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[1]}to{c[2]}-k{c[4]}s{c[5]}")
def test_padded_layer_keeps_the_precision_asked_for(case):
    # Unpadded, these layers could only take the stock SIMT tiles (alignment 1): exact fp32 whatever the flag.
    n, ci, co, sp, k, s, p, op = case
    padded = channel_pad.padded_problem(Problem(n, ci, co, sp, k, s, p, op))
    for op_name in ("dgrad", "fprop", "wgrad"):
        for prec in ("tf32", "3xtf32"):
            assert launch._select(padded, op_name, prec, None, torch.device("cuda")).precision == prec


def test_turned_off_runs_the_layer_unpadded_in_exact_fp32(monkeypatch):
    monkeypatch.setenv("CONVT3D_PAD_CHANNELS", "0")
    x, w, b, (s, p, op) = _layer(CASES[0], False)
    y = ct.conv_transpose3d(x, w, b, s, p, op, precision="tf32", strict=True)
    assert rel_l2(y, F.conv_transpose3d(x.double(), w.double(), b.double(), s, p, op)) <= 1e-5


def test_shared_weight_twice_and_an_update_in_place():
    # one weight in two calls before one backward, then changed in place (the padded filter is cached per
    # version): gradients of both uses, then the new weight's output
    x, w, b, (s, p, op) = _layer(CASES[1], True)
    ws = w.clone().requires_grad_()
    x2 = torch.randn_like(x)
    y = ct.conv_transpose3d(x, ws, None, s, p, op, precision="fp32", strict=True)
    y2 = ct.conv_transpose3d(x2, ws, None, s, p, op, precision="fp32", strict=True)
    (y.square().sum() + y2.sum()).backward()
    wd = w.double().requires_grad_()
    (F.conv_transpose3d(x.double(), wd, None, s, p, op).square().sum() +
     F.conv_transpose3d(x2.double(), wd, None, s, p, op).sum()).backward()
    assert rel_l2(ws.grad, wd.grad) <= 1e-5
    with torch.no_grad():
        ws.mul_(-2.0)
    y3 = ct.conv_transpose3d(x, ws, None, s, p, op, precision="fp32", strict=True)
    assert rel_l2(y3, F.conv_transpose3d(x.double(), -2.0 * w.double(), None, s, p, op)) <= 1e-5
