"""The eager autograd node in C++ (csrc/eager_node.cpp) against the Python Function it replaces (GPU).

Both run the same kernels with the same arguments, so every output and gradient must be bitwise
equal; the float64 accuracy of that path is what the forward and backward suites check."""
import pytest
import torch
import torch.nn.functional as F

import convt3d_cutlass as ct
from convt3d_cutlass import eager
from convt3d_cutlass.layouts import CL

from conftest import TOL, cuda_kernel_counts, grouped_phases_built, poison_allocator, rel_l2, requires_gpu

pytestmark = [requires_gpu, pytest.mark.gpu]


@pytest.fixture(autouse=True)
def _unpadded(monkeypatch):
    # These compare the node with the Function on the layer as given; an unaligned layer would otherwise run
    # padded (channel_pad), its output from the crop's node (the padded layer is an aligned one: covered).
    monkeypatch.setenv("CONVT3D_PAD_CHANNELS", "0")


def _node_name(y):
    return y.grad_fn.name() if y.grad_fn is not None else ""


def _run(node: bool, monkeypatch, x, w, b, gy, s, p, op, prec, config=None):
    monkeypatch.setenv("CONVT3D_EAGER_NODE", "1" if node else "0")
    xs = x.detach().clone().requires_grad_(x.requires_grad)
    ws = w.detach().clone().requires_grad_(w.requires_grad)
    bs = b.detach().clone().requires_grad_(b.requires_grad) if b is not None else None
    poison_allocator()
    y = ct.conv_transpose3d(xs, ws, bs, s, p, op, precision=prec, strict=True, config=config)
    name = _node_name(y)
    if y.requires_grad:
        y.backward(gy)
    grads = [t.grad if t is not None else None for t in (xs, ws, bs)]
    return y.detach(), grads, name


# (N, C_in, C_out, spatial, k, stride, padding, output_padding): stride 1 and 2, odd and even k,
# output_padding, channel counts that take the Hopper tap-reuse rows, the igemm rows and the mma.sync
# rows, layers whose grad_input or grad_weight is stock CUTLASS, forwards on stock phases (fp32 256->128
# at 8 wide; unaligned channels at unit stride), and k < stride (outputs that get the bias alone).
CASES = [
    (2, 16, 8, (6, 7, 8), 3, 1, 1, 0),
    (2, 24, 16, (5, 6, 8), 3, 2, 1, 1),
    (1, 64, 32, (8, 8, 8), 3, 2, 1, 0),
    (2, 32, 64, (6, 6, 8), 3, 1, 1, 0),
    (1, 8, 4, (4, 5, 6), 5, 2, 2, 1),
    (2, 64, 32, (8, 8, 8), 2, 2, 0, 0),
    (1, 48, 24, (10, 10, 12), 3, 1, 0, 0),
    (2, 256, 128, (8, 8, 8), 3, 2, 1, 0),
    (1, 6, 5, (4, 5, 6), 3, 1, 1, 0),
    (1, 8, 4, (4, 5, 6), 1, 2, 0, 0),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[3])) + f"-{c[1]}-{c[2]}-k{c[4]}s{c[5]}")
@pytest.mark.parametrize("prec", ["tf32", "3xtf32", "fp32"])
@pytest.mark.parametrize("x_cl, gy_cl", [(True, True), (True, False), (False, False), (False, True)])
def test_node_matches_python_function_bitwise(case, prec, x_cl, gy_cl, monkeypatch):
    n, ci, co, sp, k, s, p, op = case
    x = torch.randn(n, ci, *sp, device="cuda")
    if x_cl:
        x = x.to(memory_format=CL)
    x.requires_grad_()
    w = (torch.randn(ci, co, k, k, k, device="cuda") / (ci * k ** 3) ** 0.5).requires_grad_()
    b = torch.randn(co, device="cuda").requires_grad_()
    out = [(o - 1) * s - 2 * p + k + op for o in sp]
    gy = torch.randn(n, co, *out, device="cuda")
    if gy_cl:
        gy = gy.to(memory_format=CL)
    y0, g0, name0 = _run(False, monkeypatch, x, w, b, gy, s, p, op, prec)
    y1, g1, name1 = _run(True, monkeypatch, x, w, b, gy, s, p, op, prec)
    assert "ConvTranspose3dFunction" in name0
    assert "ConvTranspose3dNode" in name1  # every packed layer, k < stride too (v0.62)
    assert y1.is_contiguous(memory_format=CL) == x_cl and y1.is_contiguous() == (not x_cl)
    assert torch.equal(y0, y1)
    for a, c in zip(g0, g1):
        assert a.shape == c.shape and a.stride() == c.stride()
        assert torch.equal(a, c)
    ref = F.conv_transpose3d(x.detach().double(), w.detach().double(), b.detach().double(), s, p, op)
    assert rel_l2(y1, ref) <= (5e-3 if prec == "tf32" else 1e-5)


@pytest.mark.parametrize("case", [c for c in CASES if c[4] >= c[5]],
                         ids=lambda c: "x".join(map(str, c[3])) + f"-{c[1]}-{c[2]}-k{c[4]}s{c[5]}")
@pytest.mark.parametrize("prec", ["tf32", "3xtf32", "fp32"])
@pytest.mark.parametrize("cl", [True, False])
def test_node_backward_sums_with_our_kernels(case, prec, cl, monkeypatch):
    """v0.42: grad_weight's slices (any number) and the bias gradient's partial rows are summed by our
    kernels, one launch each, not by torch reductions (a TensorIterator set-up each on the host of a
    small layer's step). The one torch sum left: the bias of an NCDHW grad_y that the exact-fp32 kernels
    read in place (nothing converts it, so nothing sums it on the way)."""
    from convt3d_cutlass import launch
    from convt3d_cutlass.problem import Problem
    monkeypatch.setenv("CONVT3D_EAGER_NODE", "1")
    n, ci, co, sp, k, s, p, op = case
    fmt = CL if cl else torch.contiguous_format
    x = torch.randn(n, ci, *sp, device="cuda").to(memory_format=fmt).requires_grad_()
    w = (torch.randn(ci, co, k, k, k, device="cuda") / (ci * k ** 3) ** 0.5).requires_grad_()
    b = torch.randn(co, device="cuda").requires_grad_()
    out = [(o - 1) * s - 2 * p + k + op for o in sp]
    gy = torch.randn(n, co, *out, device="cuda").to(memory_format=fmt)

    def step():
        x.grad = w.grad = b.grad = None
        y = ct.conv_transpose3d(x, w, b, s, p, op, precision=prec, strict=True)
        assert "ConvTranspose3dNode" in _node_name(y)
        y.backward(gy)

    step()
    names = cuda_kernel_counts(step)
    torch_sums = sorted(nm for nm in names if "reduce_kernel" in nm)
    in_place = launch.grad_y_in_place(gy, x, w, Problem.of(x, w, s, p, op), prec, None, True, True)
    assert len(torch_sums) == (1 if in_place else 0), torch_sums
    assert sum(c for nm, c in names.items() if "finish_kernel" in nm) == 1
    ref = gy.double().sum((0, 2, 3, 4))
    assert rel_l2(b.grad, ref) <= 1e-6


def test_node_is_taken_on_a_stock_phase_forward(monkeypatch):
    """fp32 at 8 wide (3D-GAN 256->128): the forward on stock CUTLASS phases, one dgrad_phases call from C++,
    its eight phases in one grouped launch, no copy of the phase filters per call (one cached flat filter)."""
    monkeypatch.setenv("CONVT3D_EAGER_NODE", "1")
    x = torch.randn(2, 256, 8, 8, 8, device="cuda").to(memory_format=CL).requires_grad_()
    w = (torch.randn(256, 128, 3, 3, 3, device="cuda") / 80).requires_grad_()
    y = ct.conv_transpose3d(x, w, stride=2, padding=1, precision="fp32", strict=True)
    assert "ConvTranspose3dNode" in _node_name(y)
    names = cuda_kernel_counts(lambda: ct.conv_transpose3d(x, w, stride=2, padding=1, precision="fp32", strict=True))
    assert not any("CatArray" in n for n in names), names
    assert sum(c for n, c in names.items() if "grouped_phases_kernel" in n) == int(grouped_phases_built()), names
    assert rel_l2(y, F.conv_transpose3d(x.detach().double(), w.detach().double(), None, 2, 1)) <= 1e-5


@pytest.mark.parametrize("prec", ["tf32", "fp32"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("x_cl", [True, False])
def test_node_fills_the_outputs_no_tap_reaches(prec, bias, x_cl, monkeypatch):
    """k < stride (here k 1, stride 2; k 2, stride 3): the stock forward's phases without taps get the bias, or
    zeros, from the node as launch.forward fills them; the same bits as the Python Function."""
    for ci, co, k, s in ((8, 4, 1, 2), (16, 8, 2, 3)):
        x = torch.randn(2, ci, 4, 5, 6, device="cuda")
        if x_cl:
            x = x.to(memory_format=CL)
        x.requires_grad_()
        w = (torch.randn(ci, co, k, k, k, device="cuda") / ci ** 0.5).requires_grad_()
        b = torch.randn(co, device="cuda").requires_grad_() if bias else None
        gy = torch.randn(2, co, *[(o - 1) * s + k for o in (4, 5, 6)], device="cuda")
        y0, g0, _ = _run(False, monkeypatch, x, w, b, gy, s, 0, 0, prec)
        y1, g1, name = _run(True, monkeypatch, x, w, b, gy, s, 0, 0, prec)
        assert "ConvTranspose3dNode" in name
        assert torch.equal(y0, y1)
        for a, c in zip(g0, g1):
            assert (a is None) == (c is None) and (a is None or torch.equal(a, c))
        ref = F.conv_transpose3d(x.detach().double(), w.detach().double(),
                                 b.detach().double() if bias else None, s, 0)
        assert rel_l2(y1, ref) <= TOL[prec]


def test_node_is_taken_on_a_tap_reuse_layer(monkeypatch):
    monkeypatch.setenv("CONVT3D_EAGER_NODE", "1")
    x = torch.randn(2, 32, 8, 8, 8, device="cuda").to(memory_format=CL).requires_grad_()
    w = torch.randn(32, 16, 3, 3, 3, device="cuda", requires_grad=True)
    y = ct.conv_transpose3d(x, w, stride=2, padding=1, precision="tf32", strict=True)
    assert eager.enabled() and "ConvTranspose3dNode" in _node_name(y)


@pytest.mark.parametrize("needs", [(True, False, False), (False, True, False), (False, False, True),
                                   (True, True, False), (False, True, True)])
@pytest.mark.parametrize("x_cl", [True, False])
def test_node_computes_only_needed_gradients(needs, x_cl, monkeypatch):
    x = torch.randn(2, 16, 6, 6, 6, device="cuda")
    if x_cl:
        x = x.to(memory_format=CL)
    x.requires_grad_(needs[0])
    w = torch.randn(16, 8, 3, 3, 3, device="cuda", requires_grad=needs[1])
    b = torch.randn(8, device="cuda", requires_grad=needs[2])
    gy = torch.randn(2, 8, 11, 11, 11, device="cuda")
    y0, g0, _ = _run(False, monkeypatch, x, w, b, gy, 2, 1, 0, "3xtf32")
    y1, g1, name = _run(True, monkeypatch, x, w, b, gy, 2, 1, 0, "3xtf32")
    assert "ConvTranspose3dNode" in name
    for need, a, c in zip(needs, g0, g1):
        assert (c is not None) == need
        if need:
            assert torch.equal(a, c)
    names = cuda_kernel_counts(
        lambda: ct.conv_transpose3d(x, w, b, 2, 1, precision="3xtf32", strict=True).backward(gy))
    assert any("finish_kernel" in k for k in names) == needs[1]  # every grad_weight ends in wgrad_finish


def test_node_converts_an_ncdhw_grad_y_once(monkeypatch):
    # grad_input, grad_weight and the bias gradient share one conversion of grad_y, which also sums it.
    monkeypatch.setenv("CONVT3D_EAGER_NODE", "1")
    x = torch.randn(2, 16, 6, 6, 6, device="cuda").to(memory_format=CL).requires_grad_()
    w = torch.randn(16, 8, 3, 3, 3, device="cuda", requires_grad=True)
    b = torch.randn(8, device="cuda", requires_grad=True)
    y = ct.conv_transpose3d(x, w, b, 2, 1, precision="3xtf32", strict=True)
    assert "ConvTranspose3dNode" in _node_name(y)
    gy = torch.randn(y.shape, device="cuda")  # NCDHW
    counts = cuda_kernel_counts(lambda: y.backward(gy))
    assert sum(c for k, c in counts.items() if "transpose_kernel<true" in k) == 1, counts
    assert rel_l2(b.grad, gy.double().sum((0, 2, 3, 4))) <= 1e-6


def test_node_without_bias_and_without_grad(monkeypatch):
    monkeypatch.setenv("CONVT3D_EAGER_NODE", "1")
    x = torch.randn(1, 16, 5, 6, 7, device="cuda").to(memory_format=CL)
    w = torch.randn(16, 8, 3, 3, 3, device="cuda")
    ref = F.conv_transpose3d(x.double(), w.double(), None, 2, 1)
    with torch.no_grad():
        y = ct.conv_transpose3d(x, w, stride=2, padding=1, precision="fp32", strict=True)
    assert y.grad_fn is None and rel_l2(y, ref) <= 1e-5
    with torch.inference_mode():
        y = ct.conv_transpose3d(x, w, stride=2, padding=1, precision="fp32", strict=True)
    assert rel_l2(y, ref) <= 1e-5


def test_node_double_backward(monkeypatch):
    monkeypatch.setenv("CONVT3D_EAGER_NODE", "1")
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    x = torch.randn(1, 16, 4, 4, 4, device="cuda").to(memory_format=CL).requires_grad_()
    w = torch.randn(16, 8, 3, 3, 3, device="cuda", requires_grad=True)
    y = ct.conv_transpose3d(x, w, stride=2, padding=1, precision="3xtf32", strict=True)
    assert "ConvTranspose3dNode" in _node_name(y)
    (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    gx.square().sum().backward()
    xd, wd = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    (gxd,) = torch.autograd.grad(F.conv_transpose3d(xd, wd, stride=2, padding=1).square().sum(), xd,
                                 create_graph=True)
    gxd.square().sum().backward()
    assert rel_l2(gx, gxd) <= 1e-5 and rel_l2(w.grad, wd.grad) <= 1e-5 and rel_l2(x.grad, xd.grad) <= 1e-5
    assert torch.backends.cudnn.allow_tf32 is False  # the node restored the flag


def test_node_sees_in_place_weight_updates(monkeypatch):
    monkeypatch.setenv("CONVT3D_EAGER_NODE", "1")
    x = torch.randn(1, 16, 6, 6, 6, device="cuda").to(memory_format=CL).requires_grad_()
    w = torch.randn(16, 8, 3, 3, 3, device="cuda", requires_grad=True)
    for _ in range(2):
        y = ct.conv_transpose3d(x, w, stride=2, padding=1, precision="fp32", strict=True)
        gy = torch.randn_like(y)
        x.grad = None
        y.backward(gy)
        ref = F.conv_transpose3d(x.detach().double(), w.detach().double(), None, 2, 1)
        assert rel_l2(y, ref) <= 1e-5
        assert rel_l2(x.grad, F.conv3d(gy.double(), w.detach().double(), None, 2, 1)) <= 1e-5
        with torch.no_grad():
            w.mul_(-0.5)


def test_node_rejects_a_saved_tensor_modified_in_place(monkeypatch):
    monkeypatch.setenv("CONVT3D_EAGER_NODE", "1")
    x = torch.randn(1, 16, 6, 6, 6, device="cuda").to(memory_format=CL)
    w = torch.randn(16, 8, 3, 3, 3, device="cuda", requires_grad=True)
    y = ct.conv_transpose3d(x, w, stride=2, padding=1, precision="fp32", strict=True)
    with torch.no_grad():
        x.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_tma_kernels_run_on_a_thread_without_cuda_context():
    """The autograd engine runs the node's backward on its own thread, whose first CUDA work can be a
    tensor-map encode (a driver call, which needs a current context): it failed with
    kErrorNotSupported until the launchers bound one."""
    import threading
    from convt3d_cutlass import direct, launch
    from convt3d_cutlass.problem import Problem
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the TMA kernels are sm_90a")
    p = Problem(2, 256, 128, (8, 8, 8), 3, 2, 1)
    plan = launch._plan_cached(p, "fprop", "tf32", None, torch.cuda.current_device(), "")
    if not plan.tap_reuse:
        pytest.skip(f"grad_input of this layer is {plan.name}, not a TMA kernel")
    w = torch.randn(256, 128, 3, 3, 3, device="cuda")
    gy = torch.randn((2, 128) + p.out_spatial, device="cuda").to(memory_format=CL)
    filt = direct.grad_input_filter(w, plan.k.precision)
    gx = torch.full((2, 256, 8, 8, 8), float("nan"), device="cuda").to(memory_format=CL)
    errors = []

    def work():
        try:
            torch.ops.convt3d_cutlass.direct(plan.name, gy.permute(0, 2, 3, 4, 1), filt, None,
                                             gx.permute(0, 2, 3, 4, 1), plan.table, 2, 1, False)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    th = threading.Thread(target=work)
    th.start()
    th.join()
    assert not errors, errors
    torch.cuda.synchronize()
    assert rel_l2(gx, F.conv3d(gy.double(), w.double(), None, 2, 1)) <= 5e-3


def test_node_reads_an_ncdhw_grad_y_in_place_fp32(monkeypatch):
    # exact fp32 at unit stride: grad_input's and grad_weight's FFMA kernels read an NCDHW grad_y in
    # place, so the backward converts nothing; the bias gradient is torch's sum of grad_y.
    monkeypatch.setenv("CONVT3D_EAGER_NODE", "1")
    x = torch.randn(2, 16, 6, 7, 16, device="cuda").requires_grad_()
    w = (torch.randn(16, 8, 3, 3, 3, device="cuda") / (16 * 27) ** 0.5).requires_grad_()
    b = torch.randn(8, device="cuda", requires_grad=True)
    y = ct.conv_transpose3d(x, w, b, 1, 1, precision="fp32", strict=True)
    assert "ConvTranspose3dNode" in _node_name(y)
    gy = torch.randn(y.shape, device="cuda")  # NCDHW
    names = cuda_kernel_counts(lambda: y.backward(gy))
    assert not any("transpose_kernel" in k for k in names), names
    xd, wd = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    F.conv_transpose3d(xd, wd, None, 1, 1).backward(gy.double())
    assert rel_l2(x.grad, xd.grad) <= 1e-6 and rel_l2(w.grad, wd.grad) <= 1e-6
    assert rel_l2(b.grad, gy.double().sum((0, 2, 3, 4))) <= 1e-6


@pytest.mark.parametrize("node", [False, True], ids=["function", "node"])
def test_stock_grad_input_converts_grad_x_after_releasing_grad_ys_copy(node, monkeypatch):
    """Exact-fp32 strided grad_input on the stock SIMT tile (selector.SIMT_NARROW_FFMA_NCDHW) writes channels_last_3d;
    with x NCDHW, grad_x is converted after grad_y's channels_last_3d copy is released, so the step's peak holds
    y, the copy and one x-sized block (grad_x, or grad_weight's copy of x beside its partial sums), never the copy and
    both grad_x at once."""
    from convt3d_cutlass import launch
    from convt3d_cutlass.problem import Problem
    monkeypatch.setenv("CONVT3D_EAGER_NODE", "1" if node else "0")
    n, ci, co, sp, k, s, p = 8, 64, 32, (32, 32, 32), 3, 2, 1
    prob = Problem(n, ci, co, sp, k, s, p)
    gy = torch.randn(n, co, *[(o - 1) * s - 2 * p + k for o in sp], device="cuda")  # NCDHW
    w = (torch.randn(ci, co, k, k, k, device="cuda") / (ci * k ** 3) ** 0.5).requires_grad_()
    if launch._grad_input_plan(gy, w, prob, "fp32", None, True).tap_reuse:
        pytest.skip("grad_input runs an FFMA row on this GPU (its SM count): no conversion after it")
    x = torch.randn(n, ci, *sp, device="cuda").requires_grad_()
    b = torch.randn(co, device="cuda", requires_grad=True)
    ybytes, xbytes = gy.numel() * 4, x.numel() * 4
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    y = ct.conv_transpose3d(x, w, b, s, p, precision="fp32", strict=True)
    assert ("ConvTranspose3dNode" if node else "ConvTranspose3dFunction") in _node_name(y)
    y.backward(gy)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    # y and grad_y's copy with grad_weight's copy of x and its partial sums (H200: 16 MiB of split-K slices, a quarter
    # of x here), or with grad_x; both grad_x beside the copy (v0.58) would be 2 y + 2 x
    assert peak <= 2 * ybytes + 2 * xbytes - xbytes // 4, (peak, ybytes, xbytes)
    assert x.grad.is_contiguous() and not x.grad.is_contiguous(memory_format=CL)
    xd, wd = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    F.conv_transpose3d(xd, wd, None, s, p).backward(gy.double())
    # (grad_weight sums 262144 positions per element: about 1e-6 in fp32)
    assert rel_l2(x.grad, xd.grad) <= TOL["fp32"] and rel_l2(w.grad, wd.grad) <= TOL["fp32"]
    assert rel_l2(b.grad, gy.double().sum((0, 2, 3, 4))) <= TOL["fp32"]


def test_forced_forward_config_that_backward_cannot_use(monkeypatch):
    """A config forced for a strided layer's forward that cannot run its grad_input: the forward runs
    (with or without grad), and only the backward refuses it, naming the config."""
    from convt3d_cutlass import _extension, selector
    from convt3d_cutlass.kernel_table import BY_NAME
    from convt3d_cutlass.problem import Problem
    n, ci, co, sp, k, s, p = 1, 32, 16, (8, 8, 8), 3, 2, 1
    prob = Problem(n, ci, co, sp, k, s, p)
    dev = torch.cuda.current_device()
    cap, smem = torch.cuda.get_device_capability(), _extension.smem_optin(dev)
    names = [c["name"] for c in ct.configs() if c["compiled"] and c["precision"] == "tf32"]
    pick = [nm for nm in names if BY_NAME[nm].tap_reuse and BY_NAME[nm].serves("dgrad")
            and BY_NAME[nm].serves("fprop") and selector.direct_fits(prob, "dgrad", BY_NAME[nm], smem, cap)
            and not selector.direct_fits(prob, "fprop", BY_NAME[nm], smem, cap)]
    if not pick:
        pytest.skip("no compiled tf32 row runs this forward but not its grad_input")
    monkeypatch.setenv("CONVT3D_EAGER_NODE", "1")
    x = torch.randn(n, ci, *sp, device="cuda").to(memory_format=CL)
    w = torch.randn(ci, co, k, k, k, device="cuda") * 0.1
    ref = F.conv_transpose3d(x.double(), w.double(), None, s, p)
    poison_allocator()
    with torch.no_grad():
        y = ct.conv_transpose3d(x, w, None, s, p, precision="tf32", config=pick[0])
    assert rel_l2(y, ref) < 3e-3
    xg = x.detach().requires_grad_()
    poison_allocator()
    y = ct.conv_transpose3d(xg, w, None, s, p, precision="tf32", config=pick[0])
    assert rel_l2(y.detach(), ref) < 3e-3
    with pytest.raises(ValueError, match=pick[0]):
        y.backward(torch.randn_like(y))
