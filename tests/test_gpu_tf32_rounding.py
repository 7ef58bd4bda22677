"""tf32 means rounded to nearest, not truncated, in every pass (v0.55: on sm_90 the kernels leave the rounding to
TMA, whose TFLOAT32 tensor maps land each element rounded; bench/tools/tmatf32.cu). The general tolerance
(TOL["tf32"], 5e-3) would pass a kernel that truncated (about twice the error); test_gpu_direct's
test_tf32_error_is_round_to_nearest_class and test_igemm_rounds_to_nearest bound the forward's error band on two
channels_last_3d layers, and this covers grad_input and grad_weight, NCDHW and the summing rows too, with inputs
built to tell the two apart: every element of x and grad_y has low 13 bits 0x0800 or 0x1800 (never an exact
tie, so sm_80's cvt.rna agrees with TMA's ties-to-even), and the weight is exact in tf32. The float64 references on the rounded
and on the truncated inputs differ by 4.4-8e-4 here (checked too); ours must sit within 1e-4 of the first (the
tensor cores' fp32 accumulation is all that is left) and at most a quarter as far from it as from the second.
With a bias its gradient is asked for too: grad_input's summing rows then keep a FLOAT32 map and round in the
kernel, and the bias gradient must be grad_y's fp32 sum (a sum of rounded values would be 1.3-2.4e-4 off)."""
import pytest
import torch
import torch.nn.functional as F

import convt3d_cutlass as ct
from convt3d_cutlass.layouts import CL

from conftest import rel_l2, requires_gpu

MASK = ~0x1FFF  # int32: clears the 13 bits tf32 drops


def tf32_probe(shape, generator=None, device="cpu"):
    """float32 [shape] in +-[1, 2) with a random 10-bit tf32 mantissa and low 13 bits 0x0800 or 0x1800: rounding
    to nearest moves each element by a quarter of a tf32 ulp, truncation by a quarter or three quarters."""
    n = 1
    for s in shape:
        n *= s
    m10 = torch.randint(0, 1024, (n,), generator=generator, dtype=torch.int32)
    low = torch.where(torch.rand(n, generator=generator) < 0.5, 0x0800, 0x1800).to(torch.int32)
    sign = torch.where(torch.rand(n, generator=generator) < 0.5, 0, -(2 ** 31)).to(torch.int32)
    bits = sign | (127 << 23) | (m10 << 13) | low
    return bits.view(torch.float32).reshape(shape).to(device)


def round_nearest(t):
    """t rounded to tf32, to nearest (no element here is a tie); on the magnitude bits, so both signs."""
    u = t.contiguous().view(torch.int32)
    return ((u + 0x1000) & MASK).view(torch.float32).reshape(t.shape)


def truncate(t):
    return (t.contiguous().view(torch.int32) & MASK).view(torch.float32).reshape(t.shape)


def test_probe_rounding_helpers():
    # CPU: the helpers' bits, so that the GPU test's references are what they claim
    x = tf32_probe((4096,), torch.Generator().manual_seed(0))
    u = x.view(torch.int32)
    assert set((u & 0x1FFF).unique().tolist()) == {0x0800, 0x1800}
    assert ((x.abs() >= 1) & (x.abs() < 2)).all() and (x < 0).any() and (x > 0).any()
    r, t = round_nearest(x).view(torch.int32), truncate(x).view(torch.int32)
    assert ((r & 0x1FFF) == 0).all() and ((t & 0x1FFF) == 0).all()
    up = (u & 0x1FFF) == 0x1800
    assert torch.equal(r[up], t[up] + 0x2000) and torch.equal(r[~up], t[~up])
    assert torch.equal(round_nearest(torch.tensor([1.5], dtype=torch.float32)), torch.tensor([1.5]))


# (N, C_in, C_out, x spatial, k, stride, padding): unit stride on the tap-reuse rows (channels_last_3d: the SS
# rows, NCDHW: the RS rows reading x in place), a stride-2 layer on the implicit-GEMM rows, a k5 layer.
CASES = [
    (2, 16, 8, (6, 10, 18), 3, 1, 1),
    (1, 48, 24, (5, 9, 14), 3, 1, 0),
    (2, 64, 32, (4, 6, 8), 3, 2, 1),
    (1, 8, 16, (7, 6, 14), 5, 1, 2),
]


@requires_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[1]}-{c[2]}-k{c[4]}s{c[5]}p{c[6]}")
@pytest.mark.parametrize("cl", [False, True], ids=["ncdhw", "cl"])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_tf32_rounds_to_nearest_in_every_pass(case, cl, bias):
    n, c_in, c_out, spatial, k, s, p = case
    g = torch.Generator().manual_seed(hash(case) % 2 ** 31)
    x = tf32_probe((n, c_in) + spatial, g, "cuda")
    # exact in tf32 (the host rounds the filter ties-away; no element here needs it)
    w = truncate(torch.randn(c_in, c_out, k, k, k, generator=g) / (c_in * k ** 3) ** 0.5).cuda()
    # small: a large bias would hide the inputs' rounding in the forward's relative error
    b = truncate(0.1 * torch.randn(c_out, generator=g)).cuda() if bias else None
    if cl:
        x = x.to(memory_format=CL)
    x.requires_grad_(True)
    w.requires_grad_(True)
    if bias:  # its gradient asked for: grad_input's summing rows, which must sum grad_y unrounded
        b.requires_grad_(True)
    y = ct.conv_transpose3d(x, w, b, s, p, precision="tf32", strict=True)
    gy = tf32_probe(tuple(y.shape), g, "cuda")
    if cl:
        gy = gy.to(memory_format=CL)
    y.backward(gy)

    def refs(rnd):
        x64 = rnd(x.detach()).double().requires_grad_(True)
        w64 = w.detach().double().requires_grad_(True)
        y64 = F.conv_transpose3d(x64, w64, b.detach().double() if bias else None, s, p)
        y64.backward(rnd(gy).double())
        return y64.detach(), x64.grad, w64.grad

    for name, ours, near, trunc in zip(("forward", "grad_input", "grad_weight"), (y.detach(), x.grad, w.grad),
                                       refs(round_nearest), refs(truncate)):
        assert rel_l2(trunc, near) > 2e-4, (name, "the probe does not separate rounding from truncation")
        d_near, d_trunc = rel_l2(ours, near), rel_l2(ours, trunc)
        assert d_near <= 1e-4 and d_near <= 0.25 * d_trunc, (name, d_near, d_trunc)
    if bias:  # summed in fp32 from the raw grad_y (a sum of rounded values would be off by about 1e-4)
        assert rel_l2(b.grad, gy.double().sum((0, 2, 3, 4))) <= 1e-5
