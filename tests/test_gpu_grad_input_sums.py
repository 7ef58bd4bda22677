"""grad_input's Hopper rows summing grad_y as they read it (the in_sums buffer of the direct op): the
warp-specialized rows (csrc/direct_sm90.cuh) and the tf32 implicit-GEMM rows (csrc/igemm_sm90.cuh): the bias
gradient without a pass of its own over grad_y. Each element must be counted once (ws: tiles own their halo
up to the next tile's; igemm: one window of taps per axis), the rows must add up to the float64 sum, grad_x
must not change, and the result must be the same bits run after run."""
import pytest
import torch

import convt3d_cutlass as ct
from convt3d_cutlass import _extension, direct, launch, selector
from convt3d_cutlass.kernel_table import BY_NAME, IGEMM_KERNELS, WGMMA_KERNELS
from convt3d_cutlass.layouts import CL
from convt3d_cutlass.problem import Problem

from conftest import cuda_kernel_counts, poison_allocator, rel_l2, requires_gpu

pytestmark = [requires_gpu, pytest.mark.gpu]

WS = [k for k in WGMMA_KERNELS if k.ws]
IG = [k for k in IGEMM_KERNELS if not k.split]


def _fits(prob, cfg):
    dev = torch.cuda.current_device()
    return selector.direct_fits(prob, "fprop", cfg, _extension.smem_optin(dev), _extension.capability(dev))



def _check_sums(cfg, prob):
    """grad_input of prob on row cfg with the bias gradient from its read: grad_x the same bits as without,
    the sums within 1e-6 of float64 (an element counted twice or missed would be off by whole elements),
    the same bits on a second run (fixed owners, fixed order)."""
    gy = torch.randn(prob.n, prob.c_out, *prob.out_spatial, device="cuda").to(memory_format=CL) + 0.5  # nonzero mean
    w = torch.randn(prob.c_in, prob.c_out, prob.k, prob.k, prob.k, device="cuda") / (prob.c_out * prob.k ** 3) ** 0.5
    ref_gx = launch.grad_input(gy, w, prob, cfg.precision, cfg.name)
    poison_allocator()  # the buffer's rows past the grid start as NaN: the kernel must zero them
    gx, gb = launch.grad_input_with_bias(gy, w, prob, cfg.precision, cfg.name)
    assert gb is not None and gb.shape == (prob.c_out,)
    assert torch.equal(gx, ref_gx)  # the sums do not touch grad_x
    ref = gy.double().sum((0, 2, 3, 4))
    assert rel_l2(gb, ref) <= 1e-6, (cfg.name, rel_l2(gb, ref))
    assert torch.equal(launch.grad_input_with_bias(gy, w, prob, cfg.precision, cfg.name)[1], gb)


@pytest.mark.parametrize("cfg", WS, ids=lambda k: k.name)
@pytest.mark.parametrize("n,c_in,c_out,k,p,spatial", [
    (2, 48, 24, 3, 0, (6, 9, 16)),     # the headline's channels, padding 0: grad_y is larger than x
    (1, 12, 40, 3, 1, (5, 11, 29)),    # C_out = 5 chunks, the last half empty; several tiles along w
    (2, 72, 16, 3, 1, (9, 17, 15)),    # C_in past one C block of the row: only the first block sums
    (1, 8, 16, 5, 2, (7, 7, 12)),
    (3, 20, 8, 1, 0, (2, 5, 4)),
    (1, 16, 8, 3, 2, (4, 4, 33)),      # padding 2 = k - 1: grad_y smaller than x
])
def test_ws_grad_input_sums_grad_y(cfg, n, c_in, c_out, k, p, spatial):
    if cfg.name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    prob = Problem(n, c_in, c_out, spatial, k, 1, p)
    if not _fits(prob, cfg):
        pytest.skip("the row cannot take this problem")
    assert direct.sums_input(cfg, direct.grad_input_plan(prob), prob.out_spatial)
    _check_sums(cfg, prob)


@pytest.mark.parametrize("cfg", IG, ids=lambda k: k.name)
@pytest.mark.parametrize("n,c_in,c_out,k,s,p,op,spatial", [
    (2, 64, 40, 3, 2, 1, 0, (5, 9, 19)),     # the U-Net decoders' k/s/p; C_out 40: a chunk's tail is empty
    (1, 136, 32, 3, 2, 1, 1, (4, 6, 17)),    # output_padding; C_in past one channel block: only the first sums
    (2, 32, 64, 2, 2, 0, 0, (6, 5, 9)),      # k = s: every tap is in the window
    (1, 48, 36, 5, 2, 2, 0, (7, 8, 10)),     # V-Net k5: the window starts at tap 1
    (3, 128, 68, 3, 1, 1, 0, (4, 7, 12)),    # unit stride: the centre tap alone
    (1, 40, 16, 3, 3, 0, 0, (3, 4, 6)),      # stride 3
    (1, 64, 128, 3, 2, 1, 0, (4, 5, 9)),     # C_out 128: all four chunks of the consumers' sum registers
])
def test_igemm_grad_input_sums_grad_y(cfg, n, c_in, c_out, k, s, p, op, spatial):
    if cfg.name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    prob = Problem(n, c_in, c_out, spatial, k, s, p, op)
    if not _fits(prob, cfg):
        pytest.skip("the row cannot take this problem")
    assert direct.sums_input(cfg, direct.grad_input_plan(prob), prob.out_spatial, s, c_out)
    _check_sums(cfg, prob)


@pytest.mark.parametrize("cfg", IG, ids=lambda k: k.name)
def test_igemm_wider_reductions_sum_elsewhere(cfg):
    """Past 128 reduction channels the consumers' sum registers do not reach: the row declines the sums (its
    can_implement, and direct.sums_input for the host), and the bias gradient comes from the caller's pass."""
    if cfg.name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    prob = Problem(1, 64, 132, (4, 5, 9), 3, 2, 1)
    if not _fits(prob, cfg):
        pytest.skip("the row cannot take this problem")
    assert not direct.sums_input(cfg, direct.grad_input_plan(prob), prob.out_spatial, 2, 132)
    gy = torch.randn(1, 132, *prob.out_spatial, device="cuda").to(memory_format=CL) + 0.5
    w = torch.randn(64, 132, 3, 3, 3, device="cuda") / (132 * 27) ** 0.5
    gx, gb = launch.grad_input_with_bias(gy, w, prob, "tf32", cfg.name)
    assert gb is None and torch.equal(gx, launch.grad_input(gy, w, prob, "tf32", cfg.name))


def test_igemm_public_op_bias_gradient_from_grad_input(monkeypatch):
    """A strided layer on the implicit-GEMM grad_input through the C++ node and the Python Function: no
    separate sums kernel, the bias gradient within 1e-6 of float64, the same bits from both paths."""
    x = torch.randn(2, 64, 6, 7, 18, device="cuda").to(memory_format=CL).requires_grad_()
    w = (torch.randn(64, 32, 3, 3, 3, device="cuda") * 0.05).requires_grad_()
    b = torch.randn(32, device="cuda", requires_grad=True)
    prob = Problem.of(x, w, 2, 1)
    gi_plan = launch._plan(prob, "fprop", "tf32", None, x.device, None)
    if gi_plan.k.family != "igemm":
        pytest.skip("grad_input is not on the implicit-GEMM rows here")
    assert launch.sum_rows(gi_plan, prob, x.device) == _extension.num_sms(torch.cuda.current_device())
    grads = []
    for node in ("1", "0"):
        monkeypatch.setenv("CONVT3D_EAGER_NODE", node)
        b.grad = None
        y = ct.conv_transpose3d(x, w, b, 2, 1, precision="tf32", strict=True)
        gy = torch.randn(y.shape, device="cuda", generator=torch.Generator("cuda").manual_seed(3)).to(
            memory_format=CL)
        names = cuda_kernel_counts(lambda: y.backward(gy))
        assert not any("sums_stage" in k for k in names), names
        assert rel_l2(b.grad, gy.double().sum((0, 2, 3, 4))) <= 1e-6
        grads.append(b.grad.clone())
    assert torch.equal(grads[0], grads[1])


def test_rows_past_the_grid_are_zeroed():
    # A layer with fewer work units than SMs: the grid is smaller than the buffer, and the rows of the
    # CTAs it lacks are zeroed by the kernel (the buffer starts as NaN here).
    cfg = BY_NAME["wgmma_ws_tf32_2x8x14_kx3_n48_wg2_s8"]
    if cfg.name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    prob = Problem(1, 48, 24, (2, 8, 14), 3, 1, 1)
    table = direct.grad_input_plan(prob)
    gy = torch.randn(1, 24, *prob.out_spatial, device="cuda").to(memory_format=CL)
    w = torch.randn(48, 24, 3, 3, 3, device="cuda")
    w_k = launch.grad_input_filter(w, launch._plan(prob, "fprop", "tf32", cfg.name, gy.device, None), prob)
    rows = 3 * _extension.num_sms(torch.cuda.current_device())
    sums = torch.full((rows, 24), float("nan"), device="cuda")
    gx = torch.empty(1, 48, *prob.spatial, device="cuda").to(memory_format=CL)
    torch.ops.convt3d_cutlass.direct(cfg.name, gy.permute(0, 2, 3, 4, 1), w_k, None, gx.permute(0, 2, 3, 4, 1),
                                     list(table), 1, 1, False, False, sums)
    assert torch.isfinite(sums).all()
    assert (sums[3:] == 0).all()  # one unit: one CTA
    assert rel_l2(sums.sum(0), gy.double().sum((0, 2, 3, 4))) <= 1e-6


def test_refusals_raise():
    prob = Problem(1, 16, 8, (4, 8, 14), 3, 1, 1)
    table = list(direct.grad_input_plan(prob))
    gy = torch.randn(1, 8, *prob.out_spatial, device="cuda").to(memory_format=CL)
    w = torch.randn(16, 8, 3, 3, 3, device="cuda")
    gx = torch.empty(1, 16, *prob.spatial, device="cuda").to(memory_format=CL)
    rows = 3 * _extension.num_sms(torch.cuda.current_device())
    ws = [k for k in WS if k.name in _extension.compiled_kernels() and _fits(prob, k)]
    other = [k for k in _extension.compiled_kernels() if k.startswith(("direct_tf32", "igemm_3xtf32"))]
    if not ws or not other:
        pytest.skip("rows not in this build")
    op = torch.ops.convt3d_cutlass.direct
    with pytest.raises(RuntimeError, match="in_sums"):  # wrong width
        op(ws[0].name, gy.permute(0, 2, 3, 4, 1), w, None, gx.permute(0, 2, 3, 4, 1), table, 1, 1, False, False,
           torch.zeros(rows, 9, device="cuda"))
    with pytest.raises(RuntimeError):  # too few rows for the grid
        op(ws[0].name, gy.permute(0, 2, 3, 4, 1), w, None, gx.permute(0, 2, 3, 4, 1), table, 1, 1, False, False,
           torch.zeros(2, 8, device="cuda"))
    for name in other:  # rows of other families never sum, nor do the 3xtf32 implicit-GEMM rows
        with pytest.raises(RuntimeError):
            op(name, gy.permute(0, 2, 3, 4, 1), w, None, gx.permute(0, 2, 3, 4, 1), table, 1, 1, False, False,
               torch.zeros(rows, 8, device="cuda"))
    # the tf32 implicit-GEMM rows refuse a table without a window of taps (unit stride, padding 0: grad_y
    # is wider than grad_x) and too few rows for their grid
    ig = [k.name for k in IG if k.name in _extension.compiled_kernels()]
    p0 = Problem(1, 16, 8, (4, 8, 14), 3, 1, 0)
    t0 = list(direct.grad_input_plan(p0))
    gy0 = torch.randn(1, 8, *p0.out_spatial, device="cuda").to(memory_format=CL)
    assert ig and direct.igemm_sum_window(t0, p0.out_spatial, 1) is None
    with pytest.raises(RuntimeError):
        op(ig[0], gy0.permute(0, 2, 3, 4, 1), w, None, gx.permute(0, 2, 3, 4, 1), t0, 1, 1, False, False,
           torch.zeros(rows, 8, device="cuda"))
    with pytest.raises(RuntimeError):
        op(ig[0], gy.permute(0, 2, 3, 4, 1), w, None, gx.permute(0, 2, 3, 4, 1), table, 1, 1, False, False,
           torch.zeros(1, 8, device="cuda"))


@pytest.mark.parametrize("eager_node", ["1", "0"])
def test_public_op_bias_gradient_from_grad_input(eager_node, monkeypatch):
    """Through the C++ node and the Python Function: the bias gradient from grad_input's read, no
    separate sums kernel, and the same bits from both paths."""
    monkeypatch.setenv("CONVT3D_EAGER_NODE", eager_node)
    cfg = BY_NAME["wgmma_ws_tf32_2x8x14_kx3_n48_wg2_s8"]
    if cfg.name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    x = torch.randn(2, 48, 6, 10, 30, device="cuda").to(memory_format=CL).requires_grad_()
    w = (torch.randn(48, 24, 3, 3, 3, device="cuda") * 0.05).requires_grad_()
    b = torch.randn(24, device="cuda", requires_grad=True)
    y = ct.conv_transpose3d(x, w, b, precision="tf32", strict=True)
    gy = torch.randn(y.shape, device="cuda").to(memory_format=CL)
    gi_plan = launch._plan(Problem.of(x, w, 1, 0), "fprop", "tf32", None, x.device, None)
    if _extension.capability(torch.cuda.current_device())[0] != 9:
        pytest.skip("the warp-specialized rows are Hopper's")
    assert gi_plan.k.ws and launch.sum_rows(gi_plan, Problem.of(x, w, 1, 0), x.device) > 0
    names = cuda_kernel_counts(lambda: y.backward(gy))
    assert not any("sums_stage" in k for k in names), names
    assert rel_l2(b.grad, gy.double().sum((0, 2, 3, 4))) <= 1e-6
    gb_node = b.grad.clone()
    b.grad = None
    monkeypatch.setenv("CONVT3D_EAGER_NODE", "0" if eager_node == "1" else "1")
    y2 = ct.conv_transpose3d(x, w, b, precision="tf32", strict=True)
    y2.backward(gy)
    assert torch.equal(b.grad, gb_node)
