"""Forward pass on the CUTLASS kernels against float64 PyTorch (needs a GPU and the extension)."""
import itertools

import pytest
import torch
import torch.nn.functional as F

import convt3d_cutlass as ct
from convt3d_cutlass import _extension, launch
from convt3d_cutlass.kernel_table import KERNELS
from convt3d_cutlass.layouts import CL
from convt3d_cutlass.problem import Problem

from conftest import TOL, cuda_kernel_counts, grouped_phases_built, poison_allocator, rel_l2, requires_gpu

pytestmark = [requires_gpu, pytest.mark.gpu]
CHANNELS = (1, 3, 8, 24, 48, 64)


def _case(n, c_in, c_out, spatial, k, s, p, bias, channels_last, op=0):
    x = torch.randn(n, c_in, *spatial, device="cuda")
    if channels_last:
        x = x.to(memory_format=CL)
    w = torch.randn(c_in, c_out, k, k, k, device="cuda") / (c_in * k ** 3) ** 0.5
    b = torch.randn(c_out, device="cuda") if bias else None
    ref = F.conv_transpose3d(x.double(), w.double(), b.double() if bias else None, s, p, op)
    return x, w, b, ref


def _run_poisoned(x, w, b, k, s, p, prec, config=None, op=0):
    """Low-level forward into a NaN-filled output, so unwritten elements fail the check."""
    prob = Problem(x.shape[0], x.shape[1], w.shape[1], tuple(x.shape[2:]), k, s, p, op)
    out = torch.full((prob.n, prob.c_out) + prob.out_spatial, float("nan"), device="cuda").to(memory_format=CL)
    poison_allocator()
    return launch.forward(x, w, b, prob, prec, config, out=out)


_GRID = [c for c in itertools.product(("fp32", "tf32", "3xtf32"), (1, 2, 3), (1, 3, 5), ("0", "k//2", "k-1"),
                                      (False, True))]


@pytest.mark.parametrize("prec, s, k, pk, cl", _GRID)
def test_forward_matrix(prec, s, k, pk, cl):
    p = {"0": 0, "k//2": k // 2, "k-1": k - 1}[pk]
    i = _GRID.index((prec, s, k, pk, cl))
    c_in, c_out = CHANNELS[i % 6], CHANNELS[(i // 6 + 2) % 6]  # cycle through channel pairs
    bias = i % 2 == 0
    spatial = (5, 6, 7)
    x, w, b, ref = _case(2, c_in, c_out, spatial, k, s, p, bias, cl)
    y = _run_poisoned(x, w, b, k, s, p, prec)
    assert rel_l2(y, ref) <= TOL[prec], (c_in, c_out, bias)
    # public API: same numbers, torch's output format
    y2 = ct.conv_transpose3d(x, w, b, s, p, precision=prec, strict=True)
    assert y2.shape == ref.shape and rel_l2(y2, ref) <= TOL[prec]
    assert y2.is_contiguous(memory_format=CL) if cl else y2.is_contiguous()


# Even kernels and output_padding: every phase shape they make (one tap per axis at k = s, phases
# without taps at k < s, the extra far-end row that receives taps when padding > 0).
_WIDE = [c for c in itertools.product(("fp32", "tf32", "3xtf32"),
                                      ((2, 2, 0, 0), (2, 2, 0, 1), (4, 2, 1, 0), (4, 2, 1, 1), (3, 2, 1, 1),
                                       (5, 2, 2, 1), (2, 1, 0, 0), (2, 1, 1, 0), (4, 1, 2, 0), (6, 3, 2, 2),
                                       (3, 3, 1, 2), (1, 2, 0, 1), (2, 3, 1, 2)),
                                      (False, True))]


@pytest.mark.parametrize("prec, ksp, cl", _WIDE)
def test_forward_even_kernels_and_output_padding(prec, ksp, cl):
    k, s, p, op = ksp
    i = _WIDE.index((prec, ksp, cl))
    # c_in = 1 only without channels_last (cl alternates with i): a 1-channel tensor is both layouts.
    c_in, c_out = CHANNELS[i % 6], CHANNELS[(i // 3 + 3) % 6]
    x, w, b, ref = _case(2, c_in, c_out, (5, 6, 7), k, s, p, i % 2 == 0, cl, op)
    y = _run_poisoned(x, w, b, k, s, p, prec, op=op)
    assert rel_l2(y, ref) <= TOL[prec], (c_in, c_out)
    y2 = ct.conv_transpose3d(x, w, b, s, p, op, precision=prec, strict=True)
    assert y2.shape == ref.shape and rel_l2(y2, ref) <= TOL[prec]
    assert y2.is_contiguous(memory_format=CL) if cl else y2.is_contiguous()


@pytest.mark.parametrize("prec", ["fp32", "tf32", "3xtf32"])
@pytest.mark.parametrize("c_in, c_out", list(itertools.product(CHANNELS, CHANNELS)))
def test_forward_all_channel_pairs(prec, c_in, c_out):
    x, w, b, ref = _case(1, c_in, c_out, (4, 5, 6), 3, 2, 1, True, True)
    assert rel_l2(_run_poisoned(x, w, b, 3, 2, 1, prec), ref) <= TOL[prec]


@pytest.mark.parametrize("cfg", [k for k in KERNELS if k.serves("dgrad")], ids=lambda k: k.name)
def test_every_forward_config(cfg):
    # the RS rows take unit stride with k = kx only (their tap loops are compiled for it), the w-fold rows their
    # stride with k = kx
    # stride, the patch rows k == stride without padding
    ksp = ((cfg.kx, 1, 1),) if cfg.rs else ((cfg.kx, cfg.wf, 1),) if cfg.wf else \
        ((2, 2, 0), (3, 3, 0)) if cfg.family == "patch" else ((3, 1, 1), (3, 2, 1))
    for k, s, p in ksp:
        x, w, b, ref = _case(2, 24, 40, (6, 7, 8), k, s, p, True, True)
        y = _run_poisoned(x, w, b, k, s, p, cfg.precision, config=cfg.name)
        assert rel_l2(y, ref) <= TOL[cfg.precision], s


def test_stride_4_and_k7():
    x, w, b, ref = _case(1, 8, 8, (3, 4, 5), 7, 4, 3, True, False)
    assert rel_l2(_run_poisoned(x, w, b, 7, 4, 3, "3xtf32"), ref) <= 1e-5
    x, w, b, ref = _case(1, 8, 8, (3, 4, 5), 1, 3, 0, True, False)  # k < s: bias-only phases
    assert rel_l2(_run_poisoned(x, w, b, 1, 3, 0, "tf32"), ref) <= 5e-3


def test_non_contiguous_input_and_unbatched():
    x = torch.randn(2, 16, 6, 7, 8, device="cuda").transpose(2, 4)  # non-contiguous
    w = torch.randn(16, 8, 3, 3, 3, device="cuda")
    ref = F.conv_transpose3d(x.double(), w.double(), None, 1, 1)
    assert rel_l2(ct.conv_transpose3d(x, w, padding=1, precision="fp32", strict=True), ref) <= 1e-5
    xu = torch.randn(16, 5, 5, 5, device="cuda")
    refu = F.conv_transpose3d(xu.double(), w.double())
    yu = ct.conv_transpose3d(xu, w, precision="3xtf32", strict=True)
    assert yu.shape == refu.shape and rel_l2(yu, refu) <= 1e-5


def test_non_default_stream():
    x, w, b, ref = _case(2, 32, 24, (12, 12, 12), 3, 1, 1, True, True)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        y = ct.conv_transpose3d(x, w, b, 1, 1, precision="tf32", strict=True)
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    assert rel_l2(y, ref) <= 5e-3


@pytest.mark.parametrize("s", [2, 3])
@pytest.mark.parametrize("cfg", ["dgrad_fp32_128x64x8_64x32x8_s4", "dgrad_tf32_128x64x32_64x32x32_s3"])
def test_stride_phases_keep_the_callers_order(cfg, s):
    """The stock forward's stride phases (stride 2: one grouped launch; stride 3: one launch per phase on
    side streams) must start after the caller's stream has produced x and finish before its next kernel
    reads y (x arrives late, behind a sleep)."""
    x, w, b, ref = _case(2, 24, 40, (6, 7, 8), 3, s, 1, True, True)
    prob = Problem(2, 24, 40, (6, 7, 8), 3, s, 1)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        late = torch.full_like(x, float("nan"))
        out = torch.full((2, 40) + prob.out_spatial, float("nan"), device="cuda").to(memory_format=CL)
        torch.cuda._sleep(50_000_000)
        late.copy_(x)
        y = launch.forward(late, w, b, prob, cfg.split("_")[1], cfg, out=out)
        seen = y * 1.0
    torch.cuda.synchronize()
    assert rel_l2(seen, ref) <= TOL[cfg.split("_")[1]]


STOCK_PHASE_CFG = "dgrad_fp32_128x64x8_64x32x8_s4"


def _stock_phase_case(bias):
    """A strided layer's stock fp32 forward phases as the dgrad_phases op takes them: (x, w, b, float64
    reference, problem, kernel names, per-phase filters, phase ints, split-K slices)."""
    x, w, b, ref = _case(2, 24, 40, (6, 7, 8), 3, 2, 1, bias, True)
    prob = Problem(2, 24, 40, (6, 7, 8), 3, 2, 1)
    names, rs, ints, _, splits = launch._stock_phases(prob, "fp32", STOCK_PHASE_CFG, torch.cuda.current_device(), "")
    return x, w, b, ref, prob, list(names), [launch.filter_ktrsc(w, r, 2) for r in rs], list(ints), list(splits)


def test_stride_phases_raise_a_failing_phase_and_stay_usable():
    """A phase that cannot run raises, naming the kernel (every phase is checked before any is launched;
    a failure at launch joins the phases already running), and the op stays usable."""
    x, w, b, ref, prob, names, filters, ints, splits = _stock_phase_case(True)
    y = torch.empty((2, 40) + prob.out_spatial, device="cuda").to(memory_format=CL)
    with pytest.raises(RuntimeError, match="nope"):
        torch.ops.convt3d_cutlass.dgrad_phases([names[0], "nope"] + list(names[2:]), x.permute(0, 2, 3, 4, 1),
                                               filters, b, y.permute(0, 2, 3, 4, 1), ints, 2, list(splits))
    assert rel_l2(_run_poisoned(x, w, b, 3, 2, 1, "fp32", config=STOCK_PHASE_CFG), ref) <= TOL["fp32"]


def test_stride_phases_refuse_views_outside_the_result():
    """Phase ints whose first output or count miss the result (the op places each phase by arithmetic on the
    result's strides, no view tensor to catch it) raise, naming the phase, before anything is launched."""
    x, w, b, ref, prob, names, filters, ints, splits = _stock_phase_case(True)
    y = torch.full((2, 40) + prob.out_spatial, float("nan"), device="cuda").to(memory_format=CL)
    for at, delta in ((9 * 3 + 6, 1), (9 * 5 + 4, prob.out_spatial[1])):
        bad = list(ints)
        bad[at] += delta
        with pytest.raises(RuntimeError, match="phase .* does not fit the result"):
            torch.ops.convt3d_cutlass.dgrad_phases(names, x.permute(0, 2, 3, 4, 1), filters, b,
                                                   y.permute(0, 2, 3, 4, 1), bad, 2, list(splits))
    torch.cuda.synchronize()
    assert torch.isnan(y).all()


@pytest.mark.parametrize("bias", [False, True])
def test_stride_phases_split_k_adds_slices_in_order(bias):
    """Serial split-K of the stock phases (slices of two taps in fp32): the same result as one slice up to
    rounding, bitwise reproducible, bias added once; a slice count out of range raises, naming it."""
    x, w, b, ref, prob, names, filters, ints, splits = _stock_phase_case(bias)
    assert max(splits) == 4 and min(splits) == 1
    outs = []
    for sp in (splits, splits, []):
        poison_allocator()
        y = torch.full((2, 40) + prob.out_spatial, float("nan"), device="cuda").to(memory_format=CL)
        torch.ops.convt3d_cutlass.dgrad_phases(names, x.permute(0, 2, 3, 4, 1), filters, b,
                                               y.permute(0, 2, 3, 4, 1), ints, 2, sp)
        outs.append(y)
    assert torch.equal(outs[0], outs[1])
    assert rel_l2(outs[0], ref) <= TOL["fp32"] and rel_l2(outs[0], outs[2]) <= 1e-6
    with pytest.raises(RuntimeError, match="split_k must be 1 to 64"):
        torch.ops.convt3d_cutlass.dgrad_phases(names, x.permute(0, 2, 3, 4, 1), filters, b,
                                               outs[2].permute(0, 2, 3, 4, 1), ints, 2, [0] * len(names))


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("cfg", [k.name for k in KERNELS if k.family == "cutlass2x" and k.op == "dgrad"])
def test_stride_phases_in_one_launch_match_the_per_phase_launches(cfg, bias):
    """dgrad_phases runs a stride-2 forward's eight phases in one grouped launch (grouped_phases_kernel) and,
    with grouped=False, one launch per phase on side streams: the same kernel body and the same serial
    split-K order, so the two results are bitwise equal, every element written (NaN-poisoned y), within
    tolerance of float64. Stride 3 (27 phases) takes the per-phase launches whatever grouped says."""
    if cfg not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    prec = cfg.split("_")[1]
    for s, spatial in ((2, (6, 7, 9)), (3, (4, 5, 3))):
        x, w, b, ref = _case(2, 24, 40, spatial, 3, s, 1, bias, True)
        prob = Problem(2, 24, 40, spatial, 3, s, 1)
        names, rs, ints, _, splits = launch._stock_phases(prob, prec, cfg, torch.cuda.current_device(), "")
        filters = [launch.filter_ktrsc(w, r, s) for r in rs]
        outs, counts = [], []
        for grouped in (True, False):
            poison_allocator()
            y = torch.full((2, 40) + prob.out_spatial, float("nan"), device="cuda").to(memory_format=CL)
            counts.append(cuda_kernel_counts(lambda: torch.ops.convt3d_cutlass.dgrad_phases(
                list(names), x.permute(0, 2, 3, 4, 1), filters, b, y.permute(0, 2, 3, 4, 1), list(ints), s,
                list(splits), grouped)))
            outs.append(y)
        assert torch.equal(outs[0], outs[1]), (s, bias)
        assert rel_l2(outs[0], ref) <= TOL[prec], (s, bias)
        grouped_launches = [sum(c for k, c in cnt.items() if "grouped_phases_kernel" in k) for cnt in counts]
        assert grouped_launches == ([1, 0] if s == 2 and grouped_phases_built() else [0, 0]), (s, counts)
        per_phase = sum(c for k, c in counts[1].items() if "ImplicitGemmConvolution" in k)
        assert per_phase == len(names), counts[1]


def test_weight_cache_never_stale():
    x, w, b, _ = _case(1, 8, 8, (4, 4, 4), 3, 2, 1, False, True)
    y1 = ct.conv_transpose3d(x, w, None, 2, 1, precision="fp32")
    with torch.no_grad():
        w.mul_(2.0)  # in-place update bumps the version
    y2 = ct.conv_transpose3d(x, w, None, 2, 1, precision="fp32")
    assert rel_l2(y2, 2 * y1) <= 1e-6


def test_auto_precision_follows_cudnn_flag():
    x, w, _, ref = _case(1, 32, 32, (8, 8, 8), 3, 1, 1, False, True)
    old = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = False
        assert rel_l2(ct.conv_transpose3d(x, w, padding=1), ref) <= 1e-5
        torch.backends.cudnn.allow_tf32 = True
        err = rel_l2(ct.conv_transpose3d(x, w, padding=1), ref)
        assert 1e-5 < err <= 5e-3  # tf32 rounding is visible: the flag took effect
    finally:
        torch.backends.cudnn.allow_tf32 = old


@pytest.mark.slow
def test_seed_case_matches_native_module():
    """x (8, 48, 96^3) through ConvTranspose3d(48, 24, 3), same seed as nn.ConvTranspose3d."""
    torch.manual_seed(0)
    ours = ct.ConvTranspose3d(48, 24, 3, precision="3xtf32", strict=True).cuda()
    torch.manual_seed(0)
    ref_mod = torch.nn.ConvTranspose3d(48, 24, 3).cuda()
    assert torch.equal(ours.weight, ref_mod.weight)
    x = torch.randn(8, 48, 96, 96, 96, device="cuda").to(memory_format=CL)
    with torch.no_grad():
        y = ours(x)
        ref = F.conv_transpose3d(x.double(), ref_mod.weight.double(), ref_mod.bias.double())
    assert y.shape == (8, 24, 98, 98, 98)
    assert rel_l2(y, ref) <= 1e-5


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs (layer on cuda:1 while cuda:0 is current)")
def test_layer_on_second_gpu():
    m = ct.ConvTranspose3d(16, 8, 3, stride=2, padding=1, precision="fp32", strict=True).to("cuda:1")
    x = torch.randn(2, 16, 5, 6, 7, device="cuda:1").to(memory_format=CL).requires_grad_()
    y = m(x)
    y.square().sum().backward()
    assert y.device == torch.device("cuda:1") and m.weight.grad.device == torch.device("cuda:1")
    xd = x.detach().double().requires_grad_()
    wd = m.weight.detach().double().requires_grad_()
    ref = F.conv_transpose3d(xd, wd, m.bias.detach().double(), 2, 1)
    ref.square().sum().backward()
    assert rel_l2(y, ref) <= 1e-5 and rel_l2(x.grad, xd.grad) <= 1e-5 and rel_l2(m.weight.grad, wd.grad) <= 1e-5


@pytest.mark.parametrize("cfg", [k.name for k in KERNELS if k.family == "cutlass2x" and k.op == "dgrad"])
@pytest.mark.parametrize("split", [False, True])
def test_stride_phases_write_their_views_in_place(cfg, split):
    """Every stock forward row writes each stride phase straight into its strided view of y (the strided
    epilogue), grouped (one launch) and per phase (one launch each): no copy kernel, every element written
    (y poisoned with NaN), within tolerance of float64, with the bias, and with the policy's serial split-K
    slices (fp32: several on the multi-tap phases) adding into the views."""
    if cfg not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    prec = cfg.split("_")[1]
    x, w, b, ref = _case(2, 24, 40, (6, 7, 8), 3, 2, 1, True, True)
    prob = Problem(2, 24, 40, (6, 7, 8), 3, 2, 1)
    names, rs, ints, _, splits = launch._stock_phases(prob, prec, cfg, torch.cuda.current_device(), "")
    filters = [launch.filter_ktrsc(w, r, 2) for r in rs]
    for grouped in (True, False):
        poison_allocator()
        y = torch.full((2, 40) + prob.out_spatial, float("nan"), device="cuda").to(memory_format=CL)
        run = lambda: torch.ops.convt3d_cutlass.dgrad_phases(list(names), x.permute(0, 2, 3, 4, 1), filters, b,
                                                             y.permute(0, 2, 3, 4, 1), list(ints), 2,
                                                             list(splits) if split else [1] * len(names), grouped)
        launched = cuda_kernel_counts(run)
        assert not any("direct_copy" in k for k in launched), launched
        one = grouped and grouped_phases_built()
        assert sum(c for k, c in launched.items() if "cutlass" in k) == (1 if one else len(names)), launched
        assert rel_l2(y, ref) <= TOL[prec], grouped


def test_stride_phases_past_32_bit_offsets_go_through_temporaries():
    """A result view spanning 2^31 elements or more (here: samples 2^31 floats apart in an 8 GiB buffer) is
    refused by the strided epilogue's 32-bit offsets; its phases fall back to packed temporaries and a copy
    each, and the result is still right in every element (the view poisoned with NaN)."""
    x, w, b, ref, prob, names, filters, ints, splits = _stock_phase_case(True)
    do, ho, wo = prob.out_spatial
    stride_n = 2 ** 31
    try:
        buf = torch.empty(stride_n + do * ho * wo * 40, device="cuda")
    except torch.cuda.OutOfMemoryError:
        pytest.skip("needs 8 GiB of free GPU memory")
    y = buf.as_strided((2, do, ho, wo, 40), (stride_n, ho * wo * 40, wo * 40, 40, 1))
    y.fill_(float("nan"))
    launched = cuda_kernel_counts(lambda: torch.ops.convt3d_cutlass.dgrad_phases(
        names, x.permute(0, 2, 3, 4, 1), filters, b, y, ints, 2, list(splits)))
    # At least one copy per phase: torch splits a copy whose view spans 2^31 elements into several launches.
    assert sum(c for k, c in launched.items() if "cutlass" in k) == len(names), launched
    assert sum(c for k, c in launched.items() if "direct_copy" in k) >= len(names), launched
    assert rel_l2(y.permute(0, 4, 1, 2, 3), ref) <= TOL["fp32"]
