"""The FFMA implicit-GEMM grad_weight rows (csrc/ffma_wgrad.cuh, exact fp32) against float64 (GPU)."""
import pytest
import torch
import torch.nn.functional as F

from convt3d_cutlass import direct, launch
from convt3d_cutlass.kernel_table import FFMA_WGRAD_KERNELS
from convt3d_cutlass.layouts import CL
from convt3d_cutlass.problem import Problem

from conftest import TOL, clear_plans, cuda_kernel_counts, poison_allocator, rel_l2, requires_gpu

pytestmark = [requires_gpu, pytest.mark.gpu]

# (N, C_in, C_out, spatial, k, stride, padding): partial M tiles past 64 / 128 channels, N tiles that end
# inside a tap, even and large filters, strides past the filter, one position per sample.
CASES = [
    (2, 136, 20, (5, 6, 7), 3, 2, 1),
    (2, 40, 12, (4, 5, 9), 5, 1, 2),
    (1, 64, 8, (3, 4, 5), 2, 2, 0),
    (3, 132, 44, (6, 5, 7), 1, 3, 0),
    (2, 12, 36, (1, 1, 1), 3, 1, 0),
    (1, 256, 128, (4, 4, 4), 3, 2, 1),
    (1, 20, 16, (5, 6, 9), 7, 1, 3),  # 7 taps per axis: the 32-row tile's tap bits
]


@pytest.mark.parametrize("cfg", FFMA_WGRAD_KERNELS, ids=lambda k: k.name)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:3])) + f"_k{c[4]}s{c[5]}p{c[6]}")
def test_ffma_wgrad_matches_float64(cfg, case):
    n, ci, co, sp, k, s, p = case
    prob = Problem(n, ci, co, sp, k, s, p)
    x = torch.randn(n, ci, *sp, device="cuda").to(memory_format=CL)
    gy = torch.randn((n, co) + prob.out_spatial, device="cuda").contiguous(memory_format=CL)
    poison_allocator()
    gw = launch.grad_weight(gy, x, prob, "fp32", cfg.name)
    assert launch._plan(prob, "wgrad", "fp32", cfg.name, x.device, None).name == cfg.name
    wd = torch.zeros(ci, co, k, k, k, dtype=torch.float64, device="cuda", requires_grad=True)
    F.conv_transpose3d(x.double(), wd, None, s, p).backward(gy.double())
    assert rel_l2(gw, wd.grad) <= TOL["fp32"]


def test_ffma_wgrad_splits_the_reduction_and_stays_bitwise_reproducible():
    prob = Problem(2, 256, 128, (16, 16, 16), 3, 2, 1)
    name = "ffma_wgrad_fp32_128x128x32_s3"  # split-K (the selector takes its stream-K twin here)
    assert launch._plan(prob, "wgrad", "fp32", name, torch.device("cuda"), None).slices > 1
    x = torch.randn(2, 256, 16, 16, 16, device="cuda").to(memory_format=CL)
    gy = torch.randn((2, 128) + prob.out_spatial, device="cuda").contiguous(memory_format=CL)
    first = launch.grad_weight(gy, x, prob, "fp32", name)
    poison_allocator()
    assert torch.equal(first, launch.grad_weight(gy, x, prob, "fp32", name))


# Stream-K twins on layers with many k blocks per CTA: tiles cut into pieces at CTA boundaries, CTAs whose range
# spans tiles, and (64 and 32 rows) tiles of tens of pieces added one after another.
STREAMK_CASES = {128: (2, 256, 128, (16, 16, 16), 3, 2, 1), 64: (2, 64, 32, (16, 16, 16), 3, 2, 1),
                 32: (1, 32, 16, (24, 24, 24), 5, 1, 2)}


@pytest.mark.parametrize("cfg", [k for k in FFMA_WGRAD_KERNELS if k.streamk], ids=lambda k: k.name)
def test_ffma_wgrad_stream_k_adds_its_pieces_in_order_and_stays_bitwise_reproducible(cfg):
    n, ci, co, sp, k, s, p = STREAMK_CASES[cfg.tile[0]]
    prob = Problem(n, ci, co, sp, k, s, p)
    assert launch._plan(prob, "wgrad", "fp32", cfg.name, torch.device("cuda"), None).slices == 1
    x = torch.randn(n, ci, *sp, device="cuda").to(memory_format=CL)
    gy = torch.randn((n, co) + prob.out_spatial, device="cuda").contiguous(memory_format=CL)
    poison_allocator()
    first = launch.grad_weight(gy, x, prob, "fp32", cfg.name)
    wd = torch.zeros(ci, co, k, k, k, dtype=torch.float64, device="cuda", requires_grad=True)
    F.conv_transpose3d(x.double(), wd, None, s, p).backward(gy.double())
    assert rel_l2(first, wd.grad) <= TOL["fp32"]
    for _ in range(2):
        poison_allocator()
        assert torch.equal(first, launch.grad_weight(gy, x, prob, "fp32", cfg.name))


# NC mode (csrc/ffma_wgrad.cuh): x and grad_y read in their NCDHW storage by the 64- and 128-row tiles. Positions per
# sample a multiple of 4 (x's 16-byte copies) and not of 16 or 32 (a BK block that spans two samples, a last block
# cut short), partial M and N tiles, k 1, 2, 3, 5, 7, strides 1-3, grad_y's borders on every side.
NC_CASES = [
    (2, 136, 20, (4, 6, 7), 3, 2, 1),
    (2, 64, 12, (4, 5, 8), 5, 1, 2),
    (1, 64, 8, (4, 4, 5), 2, 2, 0),
    (3, 132, 44, (6, 5, 4), 1, 3, 0),
    (1, 256, 128, (4, 4, 4), 3, 2, 1),
    (1, 68, 16, (4, 6, 9), 7, 1, 3),
    (2, 96, 40, (3, 5, 12), 3, 1, 0),
]
NC_KERNELS = [k for k in FFMA_WGRAD_KERNELS if k.tile[0] >= 64]


@pytest.fixture
def nc_on_every_tile(monkeypatch):
    """The NC mode on both tiles that have it (the policy takes the 64-row one only), plans made afresh."""
    monkeypatch.setattr(direct, "FFMA_WGRAD_NCDHW_ROWS", (64, 128))
    clear_plans()
    yield
    clear_plans()


def _step_layer(n, ci, co, sp, k, s, p):
    """An NCDHW layer's Problem, x (requires grad), weight and bias (initialised as the module does, requiring grad)
    and a random grad_y."""
    prob = Problem(n, ci, co, sp, k, s, p)
    x = torch.randn(n, ci, *sp, device="cuda", requires_grad=True)
    w = (torch.randn(ci, co, k, k, k, device="cuda") / (ci * k ** 3) ** 0.5).requires_grad_()
    b = torch.randn(co, device="cuda", requires_grad=True)
    gy = torch.randn((n, co) + prob.out_spatial, device="cuda")
    return prob, x, w, b, gy


def _assert_grads_match_float64(x, w, b, gy, s, p):
    """x, w and b's gradients (of a backward of gy) against PyTorch's conv_transpose3d in float64."""
    xd, wd, bd = (t.detach().double().requires_grad_() for t in (x, w, b))
    F.conv_transpose3d(xd, wd, bd, s, p).backward(gy.double())
    for got, ref in ((x.grad, xd.grad), (w.grad, wd.grad), (b.grad, bd.grad)):
        assert rel_l2(got, ref) <= TOL["fp32"]


def _nc_inputs(case):
    n, ci, co, sp, k, s, p = case
    prob = Problem(n, ci, co, sp, k, s, p)
    x = torch.randn(n, ci, *sp, device="cuda")
    gy = torch.randn((n, co) + prob.out_spatial, device="cuda")
    return prob, x, gy


@pytest.mark.parametrize("cfg", NC_KERNELS, ids=lambda k: k.name)
@pytest.mark.parametrize("case", NC_CASES, ids=lambda c: "x".join(map(str, c[:3])) + f"_k{c[4]}s{c[5]}p{c[6]}")
def test_ffma_wgrad_reads_ncdhw_in_place_and_matches_float64(cfg, case, nc_on_every_tile):
    prob, x, gy = _nc_inputs(case)
    n, ci, co, sp, k, s, p = case
    assert direct.ffma_wgrad_reads_ncdhw(cfg, prob)
    poison_allocator()
    names = cuda_kernel_counts(lambda: launch.grad_weight(gy, x, prob, "fp32", cfg.name))
    assert not [nm for nm in names if "transpose" in nm or "elementwise" in nm], names  # nothing converted
    poison_allocator()
    gw = launch.grad_weight(gy, x, prob, "fp32", cfg.name)
    wd = torch.zeros(ci, co, k, k, k, dtype=torch.float64, device="cuda", requires_grad=True)
    F.conv_transpose3d(x.double(), wd, None, s, p).backward(gy.double())
    assert rel_l2(gw, wd.grad) <= TOL["fp32"]


@pytest.mark.parametrize("cfg", NC_KERNELS, ids=lambda k: k.name)
def test_ffma_wgrad_ncdhw_splits_the_reduction_and_stays_bitwise_reproducible(cfg, nc_on_every_tile):
    """Split-K slices (whole BK blocks in NC mode) and stream-K pieces, summed in a fixed order."""
    case = STREAMK_CASES[cfg.tile[0]]
    prob, x, gy = _nc_inputs(case)
    n, ci, co, sp, k, s, p = case
    plan = launch._plan(prob, "wgrad", "fp32", cfg.name, torch.device("cuda"), None)
    assert (plan.slices == 1) == cfg.streamk
    poison_allocator()
    first = launch.grad_weight(gy, x, prob, "fp32", cfg.name)
    wd = torch.zeros(ci, co, k, k, k, dtype=torch.float64, device="cuda", requires_grad=True)
    F.conv_transpose3d(x.double(), wd, None, s, p).backward(gy.double())
    assert rel_l2(first, wd.grad) <= TOL["fp32"]
    for _ in range(2):
        poison_allocator()
        assert torch.equal(first, launch.grad_weight(gy, x, prob, "fp32", cfg.name))


def test_ffma_wgrad_ncdhw_is_refused_to_kernels_that_read_ndhwc():
    from convt3d_cutlass import _extension
    prob, x, gy = _nc_inputs((1, 64, 32, (4, 4, 4), 3, 2, 1))
    partials = torch.empty((1, 64, 3, 3, 3, 32), device="cuda")
    for name in ("ffma_wgrad_fp32_32x256x16_s4", "wgrad_fp32_128x64x8_64x32x8_s4"):
        if name in _extension.compiled_kernels():
            with pytest.raises(RuntimeError, match="reads NDHWC operands only"):
                torch.ops.convt3d_cutlass.wgrad(name, x, gy, partials, [1] * 3, [2] * 3, True)


@pytest.mark.parametrize("node", [True, False])
def test_ncdhw_step_converts_neither_x_nor_grad_y_for_the_ffma_grad_weight(node, monkeypatch):
    """An exact-fp32 NCDHW layer whose grad_input reads grad_y in place (the tap-reuse rows) and whose grad_weight is
    the 64-row FFMA tile: the backward copies neither x nor grad_y (the eager node and the Python Function alike),
    and its gradients match float64."""
    import convt3d_cutlass as ct
    monkeypatch.setenv("CONVT3D_EAGER_NODE", "1" if node else "0")
    s, p = 1, 2
    prob, x, w, b, gy = _step_layer(2, 64, 32, (16, 16, 16), 5, s, p)
    assert launch._plan(prob, "wgrad", "fp32", None, x.device, None, out_ncdhw=True).k.family == "ffma"
    assert launch.grad_y_in_place(gy, x, w, prob, "fp32", None, True, True)
    y = ct.conv_transpose3d(x, w, b, s, p, precision="fp32", strict=True)
    poison_allocator()
    names = cuda_kernel_counts(lambda: y.backward(gy))
    assert not [nm for nm in names if "transpose" in nm], names
    _assert_grads_match_float64(x, w, b, gy, s, p)


def test_ffma_wgrad_nc_residency_is_the_selectors_mirror():
    """The NC kernels' CTAs per SM, asked of the runtime (the split-K grid's whole waves), are those
    selector.FFMA_NC_STREAMK_PER_SM assumes for the stream-K grid; the 32-row tile has no NC kernel."""
    from convt3d_cutlass import _extension, selector
    names = _extension.compiled_kernels()
    for k in FFMA_WGRAD_KERNELS:
        if k.name not in names:
            continue
        r = _extension.resident_ctas(k.name, torch.cuda.current_device(), True)
        assert r == (selector.FFMA_NC_STREAMK_PER_SM[k.tile[0]] if k.tile[0] >= 64 else 0), (k.name, r)


# Depth slabs (direct.ffma_wgrad_slabs) of the 32-row tile on NCDHW layers: uneven slabs, strides, output padding,
# k7, and a padding past the filter whose first slab's taps reach no row of grad_y.
SLAB_CASES = [
    (1, 32, 16, (9, 8, 12), 5, 1, 2, 0),
    (2, 20, 16, (6, 5, 8), 3, 2, 1, 0),
    (1, 16, 12, (7, 6, 8), 3, 2, 1, 1),
    (1, 12, 36, (5, 6, 8), 7, 1, 3, 0),
    (1, 16, 8, (5, 6, 8), 3, 1, 3, 0),
]
THIN = [k for k in FFMA_WGRAD_KERNELS if k.tile[0] == 32]


@pytest.mark.parametrize("cfg", THIN, ids=lambda k: k.name)
@pytest.mark.parametrize("case", SLAB_CASES, ids=lambda c: "x".join(map(str, c[:3])) + f"_k{c[4]}s{c[5]}p{c[6]}o{c[7]}")
def test_ffma_wgrad_depth_slabs_match_float64_and_stay_bitwise_reproducible(cfg, case, monkeypatch):
    """NCDHW x and grad_y on the 32-row tile: each slab's x and window of grad_y converted (two transposes a slab
    with a window, nothing whole), the gradient against float64, and the same bits on every run."""
    monkeypatch.setattr(direct, "FFMA_WGRAD_SLAB_MIN_BYTES", 0)  # small layers run whole by default
    n, ci, co, sp, k, s, p, op = case
    prob = Problem(n, ci, co, sp, k, s, p, op)
    x = torch.randn(n, ci, *sp, device="cuda")
    gy = torch.randn((n, co) + prob.out_spatial, device="cuda")
    slabs = direct.ffma_wgrad_slabs(cfg, prob)
    assert len(slabs) == min(direct.FFMA_WGRAD_SLABS, sp[0]) > 1
    names = cuda_kernel_counts(lambda: launch.grad_weight(gy, x, prob, "fp32", cfg.name))
    transposes = sum(c for nm, c in names.items() if "transpose" in nm)
    assert transposes == 2 * sum(sl.a1 > sl.a0 for sl in slabs), names
    poison_allocator()
    first = launch.grad_weight(gy, x, prob, "fp32", cfg.name)
    wd = torch.zeros(ci, co, k, k, k, dtype=torch.float64, device="cuda", requires_grad=True)
    F.conv_transpose3d(x.double(), wd, None, s, p, op).backward(gy.double())
    assert rel_l2(first, wd.grad) <= TOL["fp32"]
    poison_allocator()
    assert torch.equal(first, launch.grad_weight(gy, x, prob, "fp32", cfg.name))


@pytest.fixture
def fresh_plans():
    clear_plans()
    yield
    clear_plans()


@pytest.mark.parametrize("node", [True, False])
def test_ncdhw_step_on_the_32_row_tile_converts_depth_slabs_only(node, monkeypatch, fresh_plans):
    """V-Net refine's form (32 -> 16, k5 s1 p2) in NCDHW: grad_weight on the 32-row tile by depth slabs, grad_input
    reading grad_y in place, so the backward converts no whole x or grad_y (two transposes a slab) and its peak is
    lower than with whole copies (FFMA_WGRAD_SLABS = 1); gradients against float64 (the eager node and the Python
    Function alike)."""
    import convt3d_cutlass as ct
    monkeypatch.setenv("CONVT3D_EAGER_NODE", "1" if node else "0")
    monkeypatch.setattr(direct, "FFMA_WGRAD_SLAB_MIN_BYTES", 0)  # x is 8 MiB: one slab by default
    # large enough that the copies, not the partial sums (about 12 MiB here), set the difference in peaks
    s, p = 1, 2
    prob, x, w, b, gy = _step_layer(1, 32, 16, (40, 40, 40), 5, s, p)
    plan = launch._plan(prob, "wgrad", "fp32", None, x.device, None, out_ncdhw=True)
    assert plan.k.family == "ffma" and plan.k.tile[0] == 32
    slabs = direct.ffma_wgrad_slabs(plan.k, prob)
    assert len(slabs) == direct.FFMA_WGRAD_SLABS
    assert launch.grad_y_in_place(gy, x, w, prob, "fp32", None, True, True)

    def backward_peak():
        x.grad = w.grad = b.grad = None
        y = ct.conv_transpose3d(x, w, b, s, p, precision="fp32", strict=True)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        y.backward(gy)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base

    y = ct.conv_transpose3d(x, w, b, s, p, precision="fp32", strict=True)
    poison_allocator()
    names = cuda_kernel_counts(lambda: y.backward(gy))
    assert sum(c for nm, c in names.items() if "transpose" in nm) == 2 * len(slabs), names
    _assert_grads_match_float64(x, w, b, gy, s, p)
    sliced = backward_peak()
    monkeypatch.setattr(direct, "FFMA_WGRAD_SLABS", 1)
    clear_plans()
    whole = backward_peak()
    assert sliced < whole - x.numel() * 4 // 2, (sliced, whole)
