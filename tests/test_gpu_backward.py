"""Backward passes, determinism, torch.compile, CUDA graphs and training parity (GPU)."""
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convt3d_cutlass as ct
from convt3d_cutlass import launch, ops
from convt3d_cutlass.kernel_table import KERNELS
from convt3d_cutlass.layouts import CL
from convt3d_cutlass.problem import Problem

from conftest import TOL, poison_allocator, rel_l2, requires_gpu

pytestmark = [requires_gpu, pytest.mark.gpu]
CHANNELS = (1, 3, 8, 24, 48, 64)


def _grads(n, c_in, c_out, spatial, k, s, p, bias, cl, prec, config=None, op=0):
    x = torch.randn(n, c_in, *spatial, device="cuda")
    if cl:
        x = x.to(memory_format=CL)
    x.requires_grad_()
    w = (torch.randn(c_in, c_out, k, k, k, device="cuda") / (c_in * k ** 3) ** 0.5).requires_grad_()
    b = torch.randn(c_out, device="cuda").requires_grad_() if bias else None
    y = ct.conv_transpose3d(x, w, b, s, p, op, precision=prec, strict=True, config=config)
    gy = torch.randn_like(y)
    poison_allocator()
    y.backward(gy)
    xd, wd = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    bd = b.detach().double().requires_grad_() if bias else None
    F.conv_transpose3d(xd, wd, bd, s, p, op).backward(gy.double())
    out = [(x.grad, xd.grad), (w.grad, wd.grad)] + ([(b.grad, bd.grad)] if bias else [])
    return out, x


_GRID = list(itertools.product(("fp32", "tf32", "3xtf32"), (1, 2, 3), (1, 3, 5), ("0", "k//2", "k-1"),
                               (False, True)))


@pytest.mark.parametrize("prec, s, k, pk, cl", _GRID)
def test_gradients_matrix(prec, s, k, pk, cl):
    p = {"0": 0, "k//2": k // 2, "k-1": k - 1}[pk]
    i = _GRID.index((prec, s, k, pk, cl))
    c_in, c_out = CHANNELS[(i + 3) % 6], CHANNELS[(i // 6) % 6]
    pairs, x = _grads(2, c_in, c_out, (5, 6, 7), k, s, p, i % 2 == 1, cl, prec)
    for name, (got, ref) in zip(("input", "weight", "bias"), pairs):
        assert rel_l2(got, ref) <= TOL[prec], (name, c_in, c_out)
    assert x.grad.is_contiguous(memory_format=CL) if cl else x.grad.is_contiguous()


_WIDE = [c for c in itertools.product(("fp32", "tf32", "3xtf32"),
                                      ((2, 2, 0, 0), (2, 2, 0, 1), (4, 2, 1, 0), (4, 2, 1, 1), (3, 2, 1, 1),
                                       (5, 2, 2, 1), (2, 1, 0, 0), (2, 1, 1, 0), (4, 1, 2, 0), (6, 3, 2, 2),
                                       (3, 3, 1, 2), (1, 2, 0, 1)),
                                      (False, True))]


@pytest.mark.parametrize("prec, ksp, cl", _WIDE)
def test_gradients_even_kernels_and_output_padding(prec, ksp, cl):
    k, s, p, op = ksp
    i = _WIDE.index((prec, ksp, cl))
    # c_in = 1 only without channels_last (cl alternates with i): a 1-channel tensor is both layouts.
    c_in, c_out = CHANNELS[(i + 2) % 6], CHANNELS[(i // 3 + 4) % 6]
    pairs, x = _grads(2, c_in, c_out, (5, 6, 7), k, s, p, i % 2 == 1, cl, prec, op=op)
    for name, (got, ref) in zip(("input", "weight", "bias"), pairs):
        assert rel_l2(got, ref) <= TOL[prec], (name, c_in, c_out)
    assert x.grad.is_contiguous(memory_format=CL) if cl else x.grad.is_contiguous()


@pytest.mark.parametrize("cfg", [k for k in KERNELS if k.serves("fprop") or k.serves("wgrad")], ids=lambda k: k.name)
def test_every_backward_config(cfg):
    # stride 2 for the stock kernels; stride 1 for ours (the direct block 2x8x16's strided halo does
    # not fit, and the wgmma kernel reads grad_y at unit stride only)
    s = 1 if cfg.tap_reuse else 2
    # Hopper grad_weight, RS and kw-fold implicit-GEMM grad_weight rows: one filter size
    k = cfg.ksize or (cfg.kx if cfg.rs or (cfg.op == "wgrad" and cfg.kx > 1) else 3)
    p = (k - 1) // 2
    if cfg.family == "patch":  # k == stride, no padding
        k, s, p = 2, 2, 0
    c_out = 4 if cfg.family == "thin" else 40  # the thin rows reduce over 4 channels only
    pairs, _ = _grads(2, 24, c_out, (6, 7, 8), k, s, p, True, True, cfg.precision, config=cfg.name)
    for got, ref in pairs:
        assert rel_l2(got, ref) <= TOL[cfg.precision]


def test_stock_kernels_say_how_many_ctas_an_sm_holds():
    # KernelEntry::resident, which the stock grad_weight's split-K rule sizes its grid by (STOCK_WGRAD_BY_SHARE):
    # the CUDA runtime's occupancy of each stock kernel as launched; 0 for the kernels that do not say; an
    # unknown name raises. And the stock grad_weight at the count it gives stays correct and bitwise stable.
    from convt3d_cutlass import _extension, selector
    names = _extension.compiled_kernels()
    stock = [k for k in KERNELS if k.family == "cutlass2x" and k.name in names]
    assert stock
    for k in stock:
        r = _extension.resident_ctas(k.name, torch.cuda.current_device())
        assert 1 <= r <= 32, (k.name, r)
    # The FFMA grad_weight tiles: at least one CTA, and no more than their launch bounds ask for on the narrow
    # tiles (three per SM: 159 and 153 registers), which the selector's mirror assumes where the runtime is not asked.
    for k in KERNELS:
        if k.family == "ffma" and k.op == "wgrad" and k.name in names:
            r = _extension.resident_ctas(k.name, torch.cuda.current_device())
            assert 1 <= r <= (2 if k.tile[0] == 128 else selector.FFMA_STREAMK_PER_SM[k.tile[0]]), (k.name, r)
    ffma = [k.name for k in KERNELS if k.family in ("thin",) or k.family == "ffma" and k.op == "fprop"]
    assert all(_extension.resident_ctas(n, torch.cuda.current_device()) == 0 for n in ffma if n in names)
    with pytest.raises(RuntimeError, match="no kernel named"):
        torch.ops.convt3d_cutlass.resident_ctas("no_such_kernel")
    prob = Problem(2, 24, 40, (6, 7, 8), 5, 1, 2)
    k = next(k for k in stock if k.op == "wgrad" and k.precision == "3xtf32")
    plan = launch._plan(prob, "wgrad", "3xtf32", k.name, torch.device("cuda"), None)
    r = _extension.resident_ctas(k.name, torch.cuda.current_device())
    assert plan.slices == selector.split_k_slices(prob, k, _extension.num_sms(0), resident=r)
    x = torch.randn(2, 24, 6, 7, 8, device="cuda").to(memory_format=CL)
    gy = torch.randn((2, 40) + prob.out_spatial, device="cuda").to(memory_format=CL)
    poison_allocator()
    gw = launch.grad_weight(gy, x, prob, "3xtf32", k.name)
    ref = torch.ops.aten.convolution_backward(gy.double(), x.double(), torch.empty(24, 40, 5, 5, 5, device="cuda",
                                              dtype=torch.float64), None, [1] * 3, [2] * 3, [1] * 3, True, [0] * 3,
                                              1, [False, True, False])[1]
    assert rel_l2(gw, ref) <= TOL["3xtf32"]
    assert torch.equal(gw, launch.grad_weight(gy, x, prob, "3xtf32", k.name))


def test_grad_input_writes_every_element():
    prob = Problem(2, 12, 20, (5, 6, 7), 3, 2, 1)
    gy = torch.randn((2, 20) + prob.out_spatial, device="cuda").to(memory_format=CL)
    w = torch.randn(12, 20, 3, 3, 3, device="cuda")
    out = torch.full((2, 12, 5, 6, 7), float("nan"), device="cuda").to(memory_format=CL)
    gx = launch.grad_input(gy, w, prob, "3xtf32", out=out)
    ref = F.conv3d(gy.double(), w.double(), None, 2, 1)
    assert rel_l2(gx, ref) <= 1e-5


def test_split_stock_grad_input_writes_every_element():
    # Exact fp32 past 64 channels below two waves of tiles: the stock grad_input in two serial split-K
    # slices (selector.fprop_slices), the second adding onto what the first stored; nothing may read the
    # output's old contents.
    prob = Problem(2, 96, 20, (5, 6, 7), 3, 2, 1)
    k = launch._select(prob, "fprop", "fp32", None, torch.device("cuda"))
    assert k.name == "fprop_fp32_128x128x8_64x64x8_s3"
    assert launch._plan(prob, "fprop", "fp32", None, torch.device("cuda"), None).slices == 2
    gy = torch.randn((2, 20) + prob.out_spatial, device="cuda").to(memory_format=CL)
    w = torch.randn(96, 20, 3, 3, 3, device="cuda")
    out = torch.full((2, 96, 5, 6, 7), float("nan"), device="cuda").to(memory_format=CL)
    gx = launch.grad_input(gy, w, prob, "fp32", out=out)
    assert rel_l2(gx, F.conv3d(gy.double(), w.double(), None, 2, 1)) <= TOL["fp32"]


@pytest.mark.parametrize("need", ["input", "weight"])
def test_only_needed_gradients(need, monkeypatch):
    # The Python Function's passes (the C++ node's: test_gpu_eager_node.py).
    monkeypatch.setenv("CONVT3D_EAGER_NODE", "0")
    calls = []
    gi, gw = ops._grad_in, ops._grad_w  # what the eager backward and the custom ops both call
    monkeypatch.setattr(ops, "_grad_in", lambda *a, **k: calls.append("input") or gi(*a, **k))
    monkeypatch.setattr(ops, "_grad_w", lambda *a, **k: calls.append("weight") or gw(*a, **k))
    x = torch.randn(1, 8, 4, 4, 4, device="cuda", requires_grad=need == "input")
    w = torch.randn(8, 8, 3, 3, 3, device="cuda", requires_grad=need == "weight")
    ct.conv_transpose3d(x, w, precision="tf32", strict=True).sum().backward()
    assert calls == [need]


@pytest.mark.parametrize("prec", ["tf32", "3xtf32", "fp32"])
def test_weight_gradient_bitwise_deterministic(prec):
    x = torch.randn(4, 32, 16, 16, 16, device="cuda").to(memory_format=CL)
    w = torch.randn(32, 24, 3, 3, 3, device="cuda", requires_grad=True)
    grads = []
    for _ in range(3):
        w.grad = None
        poison_allocator()
        ct.conv_transpose3d(x, w, padding=1, precision=prec, strict=True).square().sum().backward()
        grads.append(w.grad.clone())
    assert torch.equal(grads[0], grads[1]) and torch.equal(grads[0], grads[2])


def test_double_backward_through_native_formula(monkeypatch):
    # The second backward runs PyTorch's own double-backward formula, which follows the global
    # cuDNN flag (docs/design.md): compare in exact fp32.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    x = torch.randn(1, 4, 3, 3, 3, device="cuda", requires_grad=True)
    w = torch.randn(4, 4, 3, 3, 3, device="cuda", requires_grad=True)
    y = ct.conv_transpose3d(x, w, stride=2, precision="fp32", strict=True)
    (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    gx.square().sum().backward()
    xd, wd = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    (gxd,) = torch.autograd.grad(F.conv_transpose3d(xd, wd, stride=2).square().sum(), xd, create_graph=True)
    gxd.square().sum().backward()
    assert rel_l2(gx, gxd) <= 1e-5
    assert rel_l2(w.grad, wd.grad) <= 1e-5
    assert rel_l2(x.grad, xd.grad) <= 1e-5


class Decoder(nn.Module):
    def __init__(self, bias=True):
        super().__init__()
        self.stem = nn.Conv3d(4, 16, 3, padding=1)
        self.up1 = nn.ConvTranspose3d(16, 12, 3, stride=2, padding=1, bias=bias)
        self.up2 = nn.ConvTranspose3d(12, 8, 3, stride=1, padding=1, bias=not bias)
        self.up3 = nn.ConvTranspose3d(8, 3, 5, stride=2, padding=2)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.up1(x))
        x = torch.relu(self.up2(x))
        return self.up3(x)


@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_training_parity_with_native(cl, bias):
    torch.manual_seed(0)
    native = Decoder(bias).cuda()
    torch.manual_seed(0)
    ours = ct.convert_model(Decoder(bias).cuda(), precision="fp32", strict=True)
    x = torch.randn(2, 4, 6, 6, 6, device="cuda")
    target = torch.randn(2, 3, 21, 21, 21, device="cuda")
    if cl:
        x, target = x.to(memory_format=CL), target.to(memory_format=CL)
        native, ours = native.to(memory_format=CL), ours.to(memory_format=CL)
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # native in exact fp32 too
    try:
        curves = []
        for model in (native, ours):
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            losses = []
            for _ in range(20):
                opt.zero_grad()
                loss = F.mse_loss(model(x), target)
                loss.backward()
                opt.step()
                losses.append(loss.item())
            curves.append(torch.tensor(losses, dtype=torch.float64))
    finally:
        torch.backends.cudnn.allow_tf32 = old
    assert ((curves[0] - curves[1]).abs() / curves[0].abs()).max().item() <= 1e-4


@pytest.mark.skipif(not ops.HAS_CUSTOM_OP, reason="torch.library.custom_op needs torch >= 2.4")
def test_torch_compile_fullgraph_matches_eager():
    torch.manual_seed(0)
    m = ct.ConvTranspose3d(16, 8, 3, stride=2, padding=1, precision="fp32", strict=True).cuda()
    x = torch.randn(2, 16, 6, 6, 6, device="cuda").to(memory_format=CL).requires_grad_()

    def step(inp):
        return m(inp).square().sum()

    eager = step(x)
    eager.backward()
    ge = (x.grad.clone(), m.weight.grad.clone(), m.bias.grad.clone())
    x.grad = None
    m.zero_grad()
    compiled = torch.compile(step, fullgraph=True)
    out = compiled(x)
    out.backward()
    assert rel_l2(out, eager) <= 1e-6
    for a, b in zip((x.grad, m.weight.grad, m.bias.grad), ge):
        assert rel_l2(a, b) <= 1e-6


@pytest.mark.skipif(not ops.HAS_CUSTOM_OP, reason="torch.library.custom_op needs torch >= 2.4")
def test_opcheck():
    x = torch.randn(1, 8, 4, 4, 4, device="cuda", requires_grad=True)
    w = torch.randn(8, 4, 3, 3, 3, device="cuda", requires_grad=True)
    b = torch.randn(4, device="cuda", requires_grad=True)
    for op in (0, 1):
        torch.library.opcheck(torch.ops.convt3d_cutlass.conv_transpose3d, (x, w, b, 2, 1, op, "fp32", ""),
                              test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


def test_cuda_graph_capture_replay_matches_eager():
    torch.manual_seed(0)
    m = ct.ConvTranspose3d(16, 8, 3, stride=2, padding=1, precision="fp32", strict=True).cuda()
    x = torch.randn(2, 16, 6, 6, 6, device="cuda").to(memory_format=CL).requires_grad_()
    static_x = x.detach().clone().requires_grad_()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):  # warm up on a side stream, as the CUDA graph docs ask
        for _ in range(2):
            m.zero_grad(set_to_none=False)
            m(static_x).square().sum().backward()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    m.zero_grad(set_to_none=False)
    static_x.grad = None
    with torch.cuda.graph(g):
        loss = m(static_x).square().sum()
        loss.backward()
    with torch.no_grad():
        m.weight.mul_(0.5)  # the replay must see in-place weight updates
    for _ in range(2):
        m.zero_grad(set_to_none=False)
        static_x.grad.zero_()
        g.replay()
    torch.cuda.synchronize()
    gw, gx = m.weight.grad.clone(), static_x.grad.clone()
    m.zero_grad()
    x2 = x.detach().clone().requires_grad_()
    ref = m(x2).square().sum()
    ref.backward()
    assert rel_l2(loss, ref) <= 1e-6
    assert rel_l2(gw, m.weight.grad) <= 1e-6 and rel_l2(gx, x2.grad) <= 1e-6
