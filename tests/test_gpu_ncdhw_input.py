"""The tap-reuse rows reading their input in NCDHW storage (the in_ncdhw mode): in the warp-specialized
Hopper rows (csrc/direct_sm90.cuh) the producer's rounder warps transpose TMA's [channel][positions]
boxes into the same K-major halo rows that the channels_last_3d form's TMA writes; the implicit-GEMM 3xtf32 rows
(csrc/igemm_sm90.cuh, IN_NC; grad_input at unit stride) load rows of 24 positions per channel and their consumers
pick the same A elements from them; the exact-fp32 rows (csrc/direct_simt.cuh) gather the same halo 4 bytes at a time.
Either way the result must be the same bits, with no layout conversion of the input anywhere in the pass."""
import re

import pytest
import torch
import torch.nn.functional as F

import convt3d_cutlass as ct
from convt3d_cutlass import _extension, direct, launch, selector
from convt3d_cutlass.kernel_table import DIRECT_SIMT_KERNELS, IGEMM_KERNELS, WGMMA_KERNELS
from convt3d_cutlass.layouts import CL
from convt3d_cutlass.problem import Problem

from conftest import TOL, clear_plans, cuda_kernel_counts, poison_allocator, rel_l2, requires_gpu

pytestmark = [requires_gpu, pytest.mark.gpu]

WS = [k for k in WGMMA_KERNELS if k.ws]
IG = [k for k in IGEMM_KERNELS if k.op != "wgrad" and k.split and k.block[2] == 16]  # IN_NC: 3xtf32, tiles 16 wide



def _fits(prob, op, cfg):
    dev = torch.cuda.current_device()
    return selector.direct_fits(prob, op, cfg, _extension.smem_optin(dev), _extension.capability(dev))


def _poisoned_cl(shape):
    poison_allocator()
    return torch.full(shape, float("nan"), device="cuda").to(memory_format=CL)


@pytest.mark.parametrize("cfg", WS, ids=lambda k: k.name)
@pytest.mark.parametrize("c_in,c_out,k,s,p,op,spatial", [
    (12, 40, 3, 1, 1, 0, (5, 11, 20)),  # 12 = 8 + 4: the last chunk's second box is all out of range
    (48, 24, 3, 1, 0, 0, (6, 9, 16)),   # the headline's channels
    (8, 16, 5, 1, 2, 0, (3, 7, 12)),
    (16, 24, 3, 2, 1, 0, (4, 6, 8)),    # stride-2 phases
    (12, 40, 3, 2, 1, 1, (3, 5, 12)),   # output_padding
    (20, 8, 1, 1, 0, 0, (2, 5, 4)),
])
def test_ws_forward_reads_ncdhw_x(cfg, c_in, c_out, k, s, p, op, spatial, monkeypatch):
    """Forward from an NCDHW x: the same bits as from its channels_last_3d copy, into a channels_last_3d
    (NaN-poisoned) or an NCDHW output, within tolerance of float64, and no transpose kernel runs."""
    if cfg.name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    prob = Problem(2, c_in, c_out, spatial, k, s, p, op)
    x = torch.randn(2, c_in, *spatial, device="cuda")
    if not _fits(prob, "dgrad", cfg):
        pytest.skip("the row cannot take this problem")
    if not direct.reads_ncdhw(cfg, direct.forward_plan(prob)[0], c_in, x):
        pytest.skip("no resident filter beside the raw boxes for this row and problem")
    w = torch.randn(c_in, c_out, k, k, k, device="cuda") / (c_in * k ** 3) ** 0.5
    b = torch.randn(c_out, device="cuda")
    ref_bits = launch.forward(x.to(memory_format=CL), w, b, prob, cfg.precision, cfg.name)
    out = _poisoned_cl((2, c_out) + prob.out_spatial)
    names = cuda_kernel_counts(lambda: launch.forward(x, w, b, prob, cfg.precision, cfg.name, out=out))
    assert not any("transpose_kernel" in n for n in names), names
    assert any("wgmma_ws_kernel" in n for n in names), names
    assert torch.equal(out, ref_bits)
    ref = F.conv_transpose3d(x.double(), w.double(), b.double(), s, p, op)
    assert rel_l2(out, ref) <= TOL[cfg.precision]
    if s == 1:  # both sides NCDHW: the IN x ON instantiation
        monkeypatch.setattr(direct, "NCDHW_MIN_REDUCTION", 0)
        poison_allocator()
        y = launch.forward(x, w, b, prob, cfg.precision, cfg.name, ncdhw=True)
        assert y.is_contiguous() and torch.equal(y, ref_bits)


@pytest.mark.parametrize("cfg", WS, ids=lambda k: k.name)
def test_ws_grad_input_reads_ncdhw_grad_y(cfg):
    """grad_input (stride 1) from an NCDHW grad_y: the same bits as from its channels_last_3d copy."""
    if cfg.name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    prob = Problem(2, 40, 12, (5, 11, 18), 3, 1, 1)  # grad_input reduces over C_out = 12 (8 + 4)
    gy = torch.randn((2, 12) + prob.out_spatial, device="cuda")
    if not _fits(prob, "fprop", cfg) or not direct.reads_ncdhw(cfg, direct.grad_input_plan(prob), 12, gy):
        pytest.skip("the row cannot take this problem in NCDHW")
    w = torch.randn(40, 12, 3, 3, 3, device="cuda") / (12 * 27) ** 0.5
    want = launch.grad_input(gy.to(memory_format=CL), w, prob, cfg.precision, cfg.name)
    out = _poisoned_cl((2, 40) + prob.spatial)
    names = cuda_kernel_counts(lambda: launch.grad_input(gy, w, prob, cfg.precision, cfg.name, out=out))
    assert not any("transpose_kernel" in n for n in names), names
    assert torch.equal(out, want)
    assert rel_l2(out, F.conv3d(gy.double(), w.double(), None, 1, 1)) <= TOL[cfg.precision]


def test_ncdhw_input_refusals():
    """W % 4 != 0 (no 16-byte TMA row strides): launch converts x and the result is right; the kernel
    itself, and rows without the mode, refuse in_ncdhw with an exception, never a wrong result."""
    cfg = next((k for k in WS if k.precision == "tf32" and k.bn == 24), None)
    if cfg is None or cfg.name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    prob = Problem(1, 16, 24, (4, 6, 10), 3, 1, 1)
    x = torch.randn(1, 16, *prob.spatial, device="cuda")
    table = direct.forward_plan(prob)[0]
    assert not direct.reads_ncdhw(cfg, table, 16, x)
    w = torch.randn(16, 24, 3, 3, 3, device="cuda") / (16 * 27) ** 0.5
    y = launch.forward(x, w, None, prob, "tf32", cfg.name)
    assert rel_l2(y, F.conv_transpose3d(x.double(), w.double(), None, 1, 1)) <= TOL["tf32"]
    wf = launch.forward_filter(w, prob, cfg)
    out = torch.empty((1,) + prob.out_spatial + (24,), device="cuda")
    with pytest.raises(RuntimeError, match="cannot run this problem"):
        torch.ops.convt3d_cutlass.direct(cfg.name, x, wf, None, out, list(table), 1, 1, False, True)
    other = [k for k in WGMMA_KERNELS if not k.ws and k.name in _extension.compiled_kernels()]
    x8 = torch.randn(1, 16, 4, 6, 8, device="cuda")
    prob8 = Problem(1, 16, 24, (4, 6, 8), 3, 1, 1)
    for k in other[:1]:
        out8 = torch.empty((1,) + prob8.out_spatial + (24,), device="cuda")
        with pytest.raises(RuntimeError, match="cannot run this problem"):
            torch.ops.convt3d_cutlass.direct(k.name, x8, launch.forward_filter(w, prob8, k), None, out8,
                                             list(direct.forward_plan(prob8)[0]), 1, 1, False, True)


@pytest.mark.parametrize("cfg", IG, ids=lambda k: k.name)
@pytest.mark.parametrize("c_in,c_out,k,s,p,spatial", [
    (40, 36, 3, 1, 1, (5, 11, 12)),   # C_out 36 = 32 + 4: the second chunk mostly out of range; W = 12
    (24, 48, 3, 1, 0, (6, 9, 14)),    # padding 0 (grad_y 16 wide): the box starts rounded down by 2
    (16, 24, 5, 1, 2, (3, 7, 20)),    # k5: shifts 0-3 and back to 0 along w; a tile past W
    (64, 32, 1, 1, 0, (2, 5, 4)),     # k1
    (40, 36, 3, 2, 1, (5, 11, 12)),   # stride 2: s_in 2, which TMA cannot step along w: converted
])
def test_igemm_grad_input_reads_ncdhw_grad_y(cfg, c_in, c_out, k, s, p, spatial, monkeypatch):
    """The implicit-GEMM 3xtf32 grad_input from an NCDHW grad_y: at unit stride read in place (no transpose), the
    same bits as from its channels_last_3d copy (the same A elements reach the same MMAs), into a NaN-poisoned
    output, within tolerance of float64; strided converted, and right."""
    monkeypatch.setattr(direct, "IGEMM_READS_NCDHW", True)  # the A/B knob, whatever its default
    if cfg.name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    prob = Problem(2, c_in, c_out, spatial, k, s, p)
    gy = torch.randn((2, c_out) + prob.out_spatial, device="cuda")
    if not _fits(prob, "fprop", cfg):
        pytest.skip("the row cannot take this problem")
    table = direct.pass_plan(cfg, prob, "fprop")[0]
    assert direct.reads_ncdhw(cfg, table, c_out, gy, s_in=s) == (s == 1)
    w = torch.randn(c_in, c_out, k, k, k, device="cuda") / (c_out * k ** 3) ** 0.5
    want = launch.grad_input(gy.to(memory_format=CL), w, prob, cfg.precision, cfg.name)
    out = _poisoned_cl((2, c_in) + prob.spatial)
    names = cuda_kernel_counts(lambda: launch.grad_input(gy, w, prob, cfg.precision, cfg.name, out=out))
    assert any("transpose_kernel" in n for n in names) == (s > 1), names
    form = r"igemm_kernel<\d+, \d+, \d+, \d+, true, false, false, %s>" % ("true" if s == 1 else "false")
    assert any(re.search(form, n) for n in names), names
    assert torch.equal(out, want)
    assert rel_l2(out, F.conv3d(gy.double(), w.double(), None, s, p)) <= TOL[cfg.precision]
    poison_allocator()  # grad_x NCDHW where the row writes it so
    gx = launch.grad_input(gy, w, prob, cfg.precision, cfg.name, ncdhw=True)
    assert torch.equal(gx.contiguous(memory_format=CL), want)


def test_igemm_ncdhw_input_refusals():
    """The implicit-GEMM kernel itself refuses an NCDHW input with an exception, never a wrong result: at s_in 2, at
    W % 4 != 0, and on its tf32 rows (no IN_NC instantiation)."""
    split = next((k for k in IG if k.name in _extension.compiled_kernels()), None)
    tf32 = next((k for k in IGEMM_KERNELS
                 if k.op != "wgrad" and not k.split and k.name in _extension.compiled_kernels()), None)
    if split is None or tf32 is None:
        pytest.skip("not in this build")
    w = torch.randn(16, 24, 3, 3, 3, device="cuda") / (16 * 27) ** 0.5
    for cfg, spatial, s_in in ((split, (4, 6, 10), 1), (split, (4, 6, 8), 2), (tf32, (4, 6, 8), 1)):
        prob = Problem(1, 16, 24, spatial, 3, 1, 1)
        x = torch.randn(1, 16, *spatial, device="cuda")
        out = torch.empty((1,) + prob.out_spatial + (24,), device="cuda")
        with pytest.raises(RuntimeError, match="cannot run this problem"):
            torch.ops.convt3d_cutlass.direct(cfg.name, x, launch.forward_filter(w, prob, cfg), None, out,
                                             list(direct.forward_plan(prob)[0]), s_in, 1, False, True)


@pytest.mark.parametrize("node", ["1", "0"])
@pytest.mark.parametrize("precision", ["3xtf32"])
@pytest.mark.parametrize("family,c_in,c_out,spatial",
                         [("wgmma", 32, 8, (32, 64, 64)), ("igemm", 128, 32, (16, 32, 32))])
def test_ncdhw_step_grad_input_reads_grad_y_after_grad_weight(node, precision, family, c_in, c_out, spatial,
                                                                 monkeypatch):
    """An NCDHW training step whose grad_input row reads grad_y in place (the warp-specialized ring form; the
    implicit GEMM's IN_NC at unit stride) while grad_weight reads a channels_last_3d copy: the copy is released
    after grad_weight and grad_input reads grad_y itself (one conversion of grad_y, as before). Gradients bitwise
    equal to the rule switched off, and within tolerance of float64; the backward's peak never higher, and on the
    narrow layer (grad_x and the copy the peak, grad_weight's partial sums small) lower by about the copy."""
    monkeypatch.setenv("CONVT3D_EAGER_NODE", node)
    monkeypatch.setattr(direct, "IGEMM_READS_NCDHW", True)
    clear_plans()
    prob = Problem(1, c_in, c_out, spatial, 3, 1, 1)
    x = torch.randn(1, c_in, *spatial, device="cuda")
    w = torch.randn(c_in, c_out, 3, 3, 3, device="cuda") / (c_in * 27) ** 0.5
    b = torch.randn(c_out, device="cuda")
    gy = torch.randn((1, c_out) + prob.out_spatial, device="cuda")
    gi = launch._select(prob, "fprop", precision, None, x.device, out_ncdhw=True)
    if gi.family != family or not launch.grad_input_reads_grad_y(gy, x, w, prob, precision, None):
        pytest.skip(f"grad_input runs {gi.name} here, which does not read this grad_y in place")
    runs = []
    for on in (True, False):
        monkeypatch.setattr(direct, "GRAD_INPUT_READS_NCDHW", on)
        clear_plans()
        xi, wi, bi = (t.clone().requires_grad_() for t in (x, w, b))
        y = ct.conv_transpose3d(xi, wi, bi, 1, 1, precision=precision, strict=True)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        names = cuda_kernel_counts(lambda: y.backward(gy))
        peak = torch.cuda.max_memory_allocated() - base
        transposes = sum(n for k, n in names.items() if "transpose_kernel" in k)
        runs.append((xi.grad, wi.grad, bi.grad, peak, transposes))
    clear_plans()
    (gx, gw, gb, peak, tr), (gx0, gw0, gb0, peak0, tr0) = runs
    assert torch.equal(gx, gx0) and torch.equal(gw, gw0) and torch.equal(gb, gb0)
    assert tr == tr0 == 1
    gx_ref, gw_ref, _ = torch.ops.aten.convolution_backward(
        gy.double(), x.double(), w.double(), None, [1] * 3, [1] * 3, [1] * 3, True, [0] * 3, 1, [True, True, False])
    assert rel_l2(gx, gx_ref) <= TOL[precision] and rel_l2(gw, gw_ref) <= TOL[precision]
    assert rel_l2(gb, gy.double().sum((0, 2, 3, 4))) <= 1e-6
    assert peak <= peak0, (peak, peak0)
    if family == "wgmma":
        assert peak <= peak0 - gy.numel() * 4 // 2, (peak, peak0)


@pytest.mark.parametrize("node", ["1", "0"])
def test_training_step_on_ncdhw_x_converts_nothing_in_the_forward(node, monkeypatch):
    """The public op on a headline-shaped layer (48 -> 24, k3, NCDHW): the forward launches no layout
    conversion (x read in place, y written NCDHW); grad_x and grad_w equal the channels_last_3d run's
    values bit for bit, through the C++ node and the Python Function alike. y comes from the ws row's RS
    twin on the NCDHW x (selector._rs_twin: the twin reads the raw boxes itself), whose MMAs add the taps
    in another order: both y within tf32 tolerance of float64. (The bias gradient is summed in another
    order from an NCDHW grad_y, by the transpose that converts it: checked against float64.)"""
    monkeypatch.setenv("CONVT3D_EAGER_NODE", node)
    cfg = next((k for k in WS if k.precision == "tf32" and k.bn == 24), None)
    if cfg is None or cfg.name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    x = torch.randn(2, 48, 6, 10, 16, device="cuda")
    w = torch.randn(48, 24, 3, 3, 3, device="cuda") / (48 * 27) ** 0.5
    b = torch.randn(24, device="cuda")
    prob = Problem(2, 48, 24, (6, 10, 16), 3)
    assert launch._select(prob, "dgrad", "tf32", None, x.device).name == cfg.name
    twin = launch._select(prob, "dgrad", "tf32", None, x.device, out_ncdhw=True)
    assert twin.rs and twin.name == cfg.name.replace("wgmma_ws_", "wgmma_rs_", 1)
    gy = torch.randn((2, 24) + prob.out_spatial, device="cuda")
    runs = []
    for xin in (x, x.to(memory_format=CL)):
        xi = xin.clone().requires_grad_()
        wi, bi = w.clone().requires_grad_(), b.clone().requires_grad_()
        holder = {}
        names = cuda_kernel_counts(
            lambda: holder.setdefault("y", ct.conv_transpose3d(xi, wi, bi, precision="tf32", strict=True)))
        y = holder["y"]
        y.backward(gy if xin.is_contiguous() else gy.to(memory_format=CL))
        runs.append((names, y, xi.grad, wi.grad, bi.grad))
    names = runs[0][0]
    assert not any("transpose_kernel" in n for n in names), names
    assert runs[0][1].is_contiguous()
    for a, c in zip(runs[0][2:4], runs[1][2:4]):
        assert torch.equal(a, c)
    ref = F.conv_transpose3d(x.double(), w.double(), b.double())
    for run in runs:
        assert rel_l2(run[1], ref) <= TOL["tf32"]
    for run in runs:
        assert rel_l2(run[4], gy.double().sum((0, 2, 3, 4))) <= 1e-6


@pytest.mark.parametrize("cfg", DIRECT_SIMT_KERNELS, ids=lambda k: k.name)
@pytest.mark.parametrize("c_in,c_out,k,s,p,op,spatial", [
    (12, 40, 3, 1, 1, 0, (5, 11, 19)),  # 12 = 8 + 4: half of the last chunk out of range; W odd
    (48, 24, 3, 1, 0, 0, (6, 9, 16)),   # the headline's channels
    (8, 16, 5, 1, 2, 0, (3, 7, 12)),
    (16, 24, 3, 2, 1, 1, (3, 5, 13)),   # stride-2 phases, output_padding
])
def test_simt_reads_ncdhw_input(cfg, c_in, c_out, k, s, p, op, spatial):
    """The FFMA forward from an NCDHW x and grad_input from an NCDHW grad_y: the same bits as from their
    channels_last_3d copies, into NaN-poisoned outputs of either layout, within fp32 tolerance of
    float64, and no transpose kernel runs (but for strided passes: grad_input converts grad_y, the forward x,
    direct.reads_ncdhw)."""
    if cfg.name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    prob = Problem(2, c_in, c_out, spatial, k, s, p, op)
    w = torch.randn(c_in, c_out, k, k, k, device="cuda") / (c_in * k ** 3) ** 0.5
    b = torch.randn(c_out, device="cuda")
    ran = 0
    if _fits(prob, "dgrad", cfg):
        x = torch.randn(2, c_in, *spatial, device="cuda")
        assert direct.reads_ncdhw(cfg, direct.forward_plan(prob)[0], c_in, x, strided_forward=s > 1) == (s == 1)
        want = launch.forward(x.to(memory_format=CL), w, b, prob, "fp32", cfg.name)
        out = _poisoned_cl((2, c_out) + prob.out_spatial)
        names = cuda_kernel_counts(lambda: launch.forward(x, w, b, prob, "fp32", cfg.name, out=out))
        assert any("transpose_kernel" in n for n in names) == (s > 1), names
        assert torch.equal(out, want)
        assert rel_l2(out, F.conv_transpose3d(x.double(), w.double(), b.double(), s, p, op)) <= TOL["fp32"]
        if s == 1:  # both sides NCDHW
            poison_allocator()
            y = launch.forward(x, w, b, prob, "fp32", cfg.name, ncdhw=True)
            assert y.is_contiguous() and torch.equal(y, want)
        ran += 1
    if _fits(prob, "fprop", cfg):
        gy = torch.randn((2, c_out) + prob.out_spatial, device="cuda")
        # strided: summed over grad_y's parities, from a converted copy (stride-apart gathers lose)
        parities = direct.sums_parities(cfg, prob)
        assert parities == (s > 1)
        table = direct.pass_plan(cfg, prob, "fprop")[0]
        assert direct.reads_ncdhw(cfg, table, c_out, gy, parities) == (not parities)
        want = launch.grad_input(gy.to(memory_format=CL), w, prob, "fp32", cfg.name)
        out = _poisoned_cl((2, c_in) + spatial)
        names = cuda_kernel_counts(lambda: launch.grad_input(gy, w, prob, "fp32", cfg.name, out=out))
        assert any("transpose_kernel" in n for n in names) == parities, names
        assert torch.equal(out, want)
        assert rel_l2(out, F.conv3d(gy.double(), w.double(), None, s, p)) <= TOL["fp32"]
        poison_allocator()
        gx = launch.grad_input(gy, w, prob, "fp32", cfg.name, ncdhw=True)
        assert gx.is_contiguous() and torch.equal(gx, want)
        ran += 1
    if not ran:
        pytest.skip("the row cannot take this problem")
