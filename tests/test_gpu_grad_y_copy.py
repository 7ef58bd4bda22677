"""grad_input reading an NCDHW grad_y in place and leaving grad_weight its channels_last_3d copy and the bias
gradient (launch.grad_input_copying: the direct op's in_copy and in_sums, csrc/direct_sm90.cuh's ring form;
grad_y rows of W % 4 != 0 as one TMA box per halo row, masked to [0, W) by the rounders). The copy must be
grad_y bit for bit at every position (each written once into a NaN-poisoned buffer), grad_x the same bits as
from the converted grad_y, the sums within 1e-6 of float64; through the module, the step's gradients must
match float64 with no conversion of grad_y anywhere."""
import pytest
import torch
import torch.nn.functional as F

import convt3d_cutlass as ct
from convt3d_cutlass import _extension, direct, launch, selector
from convt3d_cutlass.kernel_table import WGMMA_KERNELS
from convt3d_cutlass.layouts import CL
from convt3d_cutlass.problem import Problem

from conftest import TOL, cuda_kernel_counts, poison_allocator, rel_l2, requires_gpu

pytestmark = [requires_gpu, pytest.mark.gpu]

RING = [k for k in WGMMA_KERNELS if direct.ring_sums(k)]


@pytest.fixture(autouse=True)
def _copy_on(monkeypatch):
    # off by default (direct.COPY_GRAD_Y: CONVT3D_COPY_GRAD_Y=1), on for these tests
    from convt3d_cutlass import eager
    monkeypatch.setattr(direct, "COPY_GRAD_Y", True)
    eager._plans.clear()
    yield
    eager._plans.clear()

# (N, C_in, C_out, k, padding, x spatial); grad_y's spatial in the comment.
CASES = [
    (2, 48, 24, 3, 0, (6, 10, 16)),   # gy (8, 12, 18): a box per halo row (18 % 4 = 2), the headline's channels
    (1, 12, 40, 3, 1, (5, 12, 29)),   # gy (5, 12, 29): padding (halos start before the plane), 3 tiles along w,
                                      # C_out = 5 chunks with the last half out of range
    (1, 72, 16, 3, 1, (5, 12, 18)),   # C_in past one N block: only the first block sums and copies
    (2, 24, 12, 3, 1, (4, 10, 22)),   # C_out 12: one and a half chunks
    (2, 48, 24, 3, 0, (6, 9, 14)),    # gy (8, 11, 16): W % 4 == 0, the one-box ring with sums and copy
    (1, 8, 16, 5, 2, (7, 6, 14)),     # k5 where a row takes it
]


def _fits(prob, cfg):
    dev = torch.cuda.current_device()
    return selector.direct_fits(prob, "fprop", cfg, _extension.smem_optin(dev), _extension.capability(dev))


def _reference_gx(gy, w, prob):
    # grad_x of conv_transpose3d = conv3d of grad_y with the same weight
    return F.conv3d(gy.double(), w.double(), None, prob.stride, prob.padding)


@pytest.mark.parametrize("cfg", RING, ids=lambda k: k.name)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[5])) + f"-{c[1]}-{c[2]}-k{c[3]}p{c[4]}")
@pytest.mark.parametrize("ncdhw", [False, True])
def test_grad_input_copies_grad_y(cfg, case, ncdhw):
    if cfg.name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    n, ci, co, k, p, sp = case
    prob = Problem(n, ci, co, sp, k, 1, p)
    if not _fits(prob, cfg) or not direct.copies_input(cfg, direct.grad_input_plan(prob), co, prob.out_spatial):
        pytest.skip("the row cannot take this problem")
    gy = torch.randn(n, co, *prob.out_spatial, device="cuda") + 0.5  # NCDHW, nonzero mean
    w = torch.randn(ci, co, k, k, k, device="cuda") / (co * k ** 3) ** 0.5
    ref_bits = launch.grad_input(gy.to(memory_format=CL), w, prob, cfg.precision, cfg.name, ncdhw=ncdhw)
    poison_allocator()
    out = {}

    def run():
        out["r"] = launch.grad_input_copying(gy, w, prob, cfg.precision, cfg.name, ncdhw=ncdhw)

    names = cuda_kernel_counts(run)
    assert not any("transpose_kernel<true" in nm for nm in names), names  # nothing converts grad_y
    gx, copy, gb = out["r"]
    assert copy.is_contiguous(memory_format=CL) and torch.equal(copy, gy)
    assert torch.equal(gx, ref_bits)
    assert rel_l2(gx, _reference_gx(gy, w, prob)) <= TOL[cfg.precision]
    assert rel_l2(gb, gy.double().sum((0, 2, 3, 4))) <= 1e-6
    # fixed owners and a fixed order: the same bits again
    poison_allocator()
    gx2, copy2, gb2 = launch.grad_input_copying(gy, w, prob, cfg.precision, cfg.name, ncdhw=ncdhw)
    assert torch.equal(gb2, gb) and torch.equal(copy2, gy) and torch.equal(gx2, gx)


@pytest.mark.parametrize("node", [False, True])
@pytest.mark.parametrize("prec", ["tf32", "3xtf32"])
@pytest.mark.parametrize("case", [CASES[0], CASES[1]], ids=lambda c: "x".join(map(str, c[5])))
def test_step_without_grad_y_conversion(case, prec, node, monkeypatch):
    """The training step of an NCDHW layer whose grad_input row copies grad_y: the gradients of x, weight and
    bias against float64, and one conversion to channels_last_3d fewer in the backward than with the copy
    off (x's own, where W % 4 != 0, stay), through the Python Function and the C++ node."""
    from convt3d_cutlass import eager
    monkeypatch.setenv("CONVT3D_EAGER_NODE", "1" if node else "0")
    n, ci, co, k, p, sp = case
    x = torch.randn(n, ci, *sp, device="cuda", requires_grad=True)
    w = (torch.randn(ci, co, k, k, k, device="cuda") / (ci * k ** 3) ** 0.5).requires_grad_()
    b = torch.randn(co, device="cuda", requires_grad=True)
    prob = Problem.of(x, w, 1, p, 0)
    gy = torch.randn(n, co, *prob.out_spatial, device="cuda") + 0.5
    if not launch.grad_input_copies_grad_y(gy, x, w, prob, prec, None):
        pytest.skip("grad_input's row for this layer does not copy grad_y")

    def conversions(copy):
        monkeypatch.setattr(direct, "COPY_GRAD_Y", copy)
        eager._plans.clear()
        x.grad = w.grad = b.grad = None
        y = ct.conv_transpose3d(x, w, b, 1, p, precision=prec, strict=True)
        poison_allocator()
        names = cuda_kernel_counts(lambda: y.backward(gy))
        return sum(c for nm, c in names.items() if "transpose_kernel<true" in nm)

    assert conversions(True) == conversions(False) - 1
    conversions(True)
    xd, wd, bd = (t.detach().double().requires_grad_() for t in (x, w, b))
    F.conv_transpose3d(xd, wd, bd, 1, p).backward(gy.double())
    assert rel_l2(x.grad, xd.grad) <= TOL[prec]
    assert rel_l2(w.grad, wd.grad) <= TOL[prec]
    assert rel_l2(b.grad, bd.grad) <= 1e-6
    assert x.grad.is_contiguous()
