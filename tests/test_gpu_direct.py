"""The tap-reuse (direct) kernels on the GPU: every compiled config, forward, grad_input and
grad_weight, on problems with partial tiles in every dimension (spatial borders, channel chunks,
N tiles)."""
import re

import pytest
import torch
import torch.nn.functional as F

from convt3d_cutlass import _extension, direct, launch, selector
from convt3d_cutlass.kernel_table import (BY_NAME, DIRECT_KERNELS, DIRECT_SIMT_KERNELS, DIRECT_WGRAD_KERNELS,
                                          DIRECT_WGRAD_SIMT_KERNELS, IGEMM_KERNELS, IGEMM_WGRAD_KERNELS,
                                          WGMMA_KERNELS, WGMMA_WGRAD_KERNELS)
from convt3d_cutlass.layouts import CL, ndhwc
from convt3d_cutlass.problem import Problem

from conftest import TOL, poison_allocator, rel_l2, requires_gpu

pytestmark = [requires_gpu, pytest.mark.gpu]


def _poisoned(shape):
    poison_allocator()
    return torch.full(shape, float("nan"), device="cuda").to(memory_format=CL)


def _layer_tensors(prob):
    """x [N, C_in, D, H, W] channels_last_3d, w [C_in, C_out, k, k, k] scaled to unit-variance outputs, b
    [C_out]: fresh random operands for prob."""
    k = prob.k
    x = torch.randn(prob.n, prob.c_in, *prob.spatial, device="cuda").to(memory_format=CL)
    w = torch.randn(prob.c_in, prob.c_out, k, k, k, device="cuda") / (prob.c_in * k ** 3) ** 0.5
    return x, w, torch.randn(prob.c_out, device="cuda")


@pytest.mark.parametrize("cfg", DIRECT_KERNELS + DIRECT_SIMT_KERNELS + WGMMA_KERNELS + IGEMM_KERNELS,
                         ids=lambda k: k.name)
@pytest.mark.parametrize("k,s,p,op", [(3, 1, 1, 0), (3, 2, 1, 0), (5, 2, 2, 0), (1, 1, 0, 0), (3, 3, 0, 0),
                                      (3, 1, 0, 0), (1, 2, 0, 0), (3, 4, 0, 0), (3, 2, 1, 1), (2, 2, 0, 1),
                                      (4, 2, 1, 0), (2, 1, 1, 0), (4, 3, 2, 2), (5, 1, 2, 0), (5, 1, 0, 0)])
def test_direct_config_forward_and_grad_input(cfg, k, s, p, op):
    if cfg.name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    prob = Problem(2, 12, 40, (5, 11, 19), k, s, p, op)  # 12 = 8 + 4 channels, 40 = partial N tiles
    dev = torch.cuda.current_device()
    limit, cc = _extension.smem_optin(dev), _extension.capability(dev)
    fits = {op: selector.direct_fits(prob, op, cfg, limit, cc) for op in ("dgrad", "fprop")}
    if not fits["dgrad"]:
        with pytest.raises(ValueError, match="cannot run"):
            launch.forward(torch.empty(2, 12, *prob.spatial, device="cuda"), torch.empty(12, 40, k, k, k, device="cuda"),
                           None, prob, cfg.precision, cfg.name)
        return
    x, w, b = _layer_tensors(prob)
    y = launch.forward(x, w, b, prob, cfg.precision, cfg.name, out=_poisoned((2, 40) + prob.out_spatial))
    ref = F.conv_transpose3d(x.double(), w.double(), b.double(), s, p, op)
    assert rel_l2(y, ref) <= TOL[cfg.precision]
    if not fits["fprop"]:  # a strided grad_input's halo is stride-times wider: too big for this block
        return
    gy = torch.randn((2, 40) + prob.out_spatial, device="cuda").to(memory_format=CL)
    gx = launch.grad_input(gy, w, prob, cfg.precision, cfg.name, out=_poisoned((2, 12) + prob.spatial))
    ref = F.conv3d(gy.double(), w.double(), None, s, p)
    assert rel_l2(gx, ref) <= TOL[cfg.precision]


@pytest.mark.parametrize("cfg", IGEMM_KERNELS, ids=lambda k: k.name)
@pytest.mark.parametrize("k,s,p,op,spatial", [(3, 2, 1, 0, (5, 9, 19)), (3, 1, 1, 0, (4, 10, 17)),
                                              (5, 3, 2, 0, (3, 7, 9)), (2, 2, 0, 0, (4, 6, 9)),
                                              (3, 2, 1, 1, (4, 7, 10)), (4, 2, 1, 1, (3, 5, 9))])
def test_igemm_channel_blocks_and_chunks(cfg, k, s, p, op, spatial):
    """The implicit-GEMM rows over several 32-channel chunks with a tail (72 = 2 x 32 + 8) and several
    output-channel blocks with a tail (136 = 128 + 8; 72 on grad_input), batch 3, bias, partial tiles:
    every element written (NaN-poisoned output), forward and grad_input against float64."""
    if cfg.name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    prob = Problem(3, 72, 136, spatial, k, s, p, op)
    x, w, b = _layer_tensors(prob)
    y = launch.forward(x, w, b, prob, cfg.precision, cfg.name, out=_poisoned((3, 136) + prob.out_spatial))
    assert rel_l2(y, F.conv_transpose3d(x.double(), w.double(), b.double(), s, p, op)) <= TOL[cfg.precision]
    gy = torch.randn((3, 136) + prob.out_spatial, device="cuda").to(memory_format=CL)
    gx = launch.grad_input(gy, w, prob, cfg.precision, cfg.name, out=_poisoned((3, 72) + spatial))
    assert rel_l2(gx, F.conv3d(gy.double(), w.double(), None, s, p)) <= TOL[cfg.precision]


def _grouped_forward(cfg, spatial, c_in, c_out, k, s, p, op):
    """(problem, SMs): a strided forward with more groups (sample, tile, C_out block) than SMs on row cfg, so
    that the implicit GEMM walks by groups, the last round partial."""
    sms = _extension.num_sms(torch.cuda.current_device())
    table = direct.forward_plan(Problem(1, c_in, c_out, spatial, k, s, p, op))[0]
    n = sms // direct.igemm_groups(table, 1, c_out, cfg.block, cfg.bn) + 2
    assert direct.igemm_walks_groups(table, n, c_out, cfg.block, cfg.bn, sms)
    return Problem(n, c_in, c_out, spatial, k, s, p, op), sms


def _forward_ncdhw_same_bits(cfg, prob):
    """The forward on row cfg into a NaN-poisoned channels_last_3d output, against float64; then stored NCDHW
    by the kernel (NaN-poisoned allocator): the same bits."""
    x, w, b = _layer_tensors(prob)
    y = launch.forward(x, w, b, prob, cfg.precision, cfg.name, out=_poisoned((prob.n, prob.c_out) + prob.out_spatial))
    ref = F.conv_transpose3d(x.double(), w.double(), b.double(), prob.stride, prob.padding, prob.output_padding)
    assert rel_l2(y, ref) <= TOL[cfg.precision]
    poison_allocator()
    y2 = launch.forward(x, w, b, prob, cfg.precision, cfg.name, ncdhw=True)
    assert y2.is_contiguous() and not y2.is_contiguous(memory_format=CL)
    assert torch.equal(y2, y)


@pytest.mark.parametrize("cfg", IGEMM_KERNELS, ids=lambda k: k.name)
@pytest.mark.parametrize("k,s,p,op", [(3, 2, 1, 1), (5, 2, 2, 1), (3, 3, 0, 0), (4, 2, 1, 0)])
def test_igemm_forward_walks_groups_of_phases(cfg, k, s, p, op):
    """A strided forward with more groups (sample, tile, C_out block) than SMs, walked by groups with
    their phases in a row (csrc/igemm_sm90.cuh): phases of different tap counts, two C_out blocks where
    the N block is 32, a partial last round of groups. Every element written (NaN-poisoned output),
    against float64; stored NCDHW (rows 16 or 24 wide, the policy's choice), the same bits."""
    if cfg.name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    prob, sms = _grouped_forward(cfg, (3, 7, 8), 24, 40, k, s, p, op)
    assert direct.writes_ncdhw(cfg, prob, "dgrad", sms)
    _forward_ncdhw_same_bits(cfg, prob)


@pytest.mark.parametrize("cfg", [k for k in IGEMM_KERNELS if direct.igemm_sector_ring(k.bn, k.stages, k.split)],
                         ids=lambda k: k.name)
@pytest.mark.parametrize("k,s,p,op", [(3, 2, 1, 0), (3, 2, 1, 1), (2, 2, 0, 0), (5, 2, 2, 1), (4, 2, 1, 0),
                                      (1, 2, 0, 1)])
def test_igemm_forward_stores_ncdhw_rows(cfg, k, s, p, op):
    """The strided forward's NCDHW epilogue by rows (out_sectors: each (d, h) pair of w-sibling phases
    staged in shared memory, rows of 2 x TW outputs stored whole): outputs 33 or 34 wide (rows off the
    sectors; at 33 the last tile lies past one sibling's count), phases without taps (k1: bias only), two
    C_out blocks with a tail, a walk by groups with a partial last round. Every element written
    (NaN-poisoned allocator), the same bits as the channels_last_3d result, which is checked against
    float64."""
    if cfg.name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    prob, sms = _grouped_forward(cfg, (3, 5, 17), 24, 40 if cfg.bn == 32 else 72, k, s, p, op)
    assert direct.igemm_sector_pairs(cfg, prob, sms) and direct.writes_ncdhw(cfg, prob, "dgrad", sms)
    _forward_ncdhw_same_bits(cfg, prob)
    # ... and the kernel took the SECTORS form (its plain stores would give the same bits)
    assert _igemm_forward_sectors(cfg, prob)


def _igemm_forward_sectors(cfg, prob) -> bool:
    """Whether the NCDHW forward of prob on igemm row cfg ran the kernel's SECTORS form (by the profiler's
    kernel names: both forms write the same bits)."""
    x, w, b = _layer_tensors(prob)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        launch.forward(x, w, b, prob, cfg.precision, cfg.name, ncdhw=True)
        torch.cuda.synchronize()
    names = [e.key for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    igemm = [nm for nm in names if "igemm_kernel<" in nm]
    assert igemm, names
    return any(re.search(r"igemm_kernel<\d+, \d+, \d+, \d+, (true|false), false, true(, false)?>", nm) for nm in igemm)


@pytest.mark.parametrize("cfg", [k for k in IGEMM_KERNELS if k.split], ids=lambda k: k.name)
def test_igemm_3xtf32_forward_half_block_plain_ncdhw(cfg):
    """The 3xtf32 rows where C_out fills at most half the N block (direct.igemm_sectors_pay): the strided
    forward off the sectors (33 wide) still writes NCDHW itself, by plain stores: every element written, the
    same bits as the channels_last_3d result (checked against float64), and not the SECTORS form."""
    if cfg.name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    prob, sms = _grouped_forward(cfg, (3, 5, 17), 24, cfg.bn // 2, 3, 2, 1, 0)
    assert direct.igemm_sector_pairs(cfg, prob, sms) and not direct.igemm_sectors_pay(cfg, prob)
    assert direct.writes_ncdhw(cfg, prob, "dgrad", sms) and not direct.ncdhw_sectors(cfg, prob, "dgrad", sms)
    _forward_ncdhw_same_bits(cfg, prob)
    assert not _igemm_forward_sectors(cfg, prob)


@pytest.mark.parametrize("cfg", IGEMM_KERNELS, ids=lambda k: k.name)
@pytest.mark.parametrize("k,s,p,op,spatial", [(3, 2, 1, 1, (3, 5, 8)), (3, 1, 1, 0, (3, 5, 16)),
                                              (4, 2, 1, 0, (2, 5, 8)), (3, 2, 1, 0, (3, 5, 9))])
def test_igemm_writes_ncdhw(cfg, k, s, p, op, spatial):
    """The implicit-GEMM rows' NCDHW epilogue, forward (phases walked round robin: fewer groups than
    SMs) and grad_input: the same bits as their channels_last_3d result, every element written
    (NaN-poisoned allocator), bias included. Rows whose W is not a multiple of 8 keep channels_last_3d
    (the policy: partly written sectors)."""
    if cfg.name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    prob = Problem(2, 40, 72, spatial, k, s, p, op)
    x, w, b = _layer_tensors(prob)
    poison_allocator()
    y = launch.forward(x, w, b, prob, cfg.precision, cfg.name, ncdhw=True)
    assert y.is_contiguous(memory_format=CL) != direct.writes_ncdhw(cfg, prob, "dgrad")
    assert torch.equal(y, launch.forward(x, w, b, prob, cfg.precision, cfg.name))
    assert rel_l2(y, F.conv_transpose3d(x.double(), w.double(), b.double(), s, p, op)) <= TOL[cfg.precision]
    gy = torch.randn((2, 72) + prob.out_spatial, device="cuda").to(memory_format=CL)
    poison_allocator()
    gx = launch.grad_input(gy, w, prob, cfg.precision, cfg.name, ncdhw=True)
    assert gx.is_contiguous(memory_format=CL) != direct.writes_ncdhw(cfg, prob, "fprop")
    assert torch.equal(gx, launch.grad_input(gy, w, prob, cfg.precision, cfg.name))
    assert rel_l2(gx, F.conv3d(gy.double(), w.double(), None, s, p)) <= TOL[cfg.precision]


def test_igemm_3xtf32_keeps_fp32_accuracy_over_long_reductions():
    """3xtf32 on the implicit-GEMM rows over a 6912-long reduction (256 channels x 27 taps): the
    accumulators are promoted into fp32 registers per tap, so the error stays at fp32's level (the
    tensor cores' own accumulation over thousands of steps measured 4e-5 in the grad_weight kernel)."""
    names = [k.name for k in IGEMM_KERNELS if k.split and k.name in _extension.compiled_kernels()]
    if not names:
        pytest.skip("not in this build")
    prob = Problem(1, 64, 256, (6, 8, 16), 3, 2, 1)
    w = torch.randn(64, 256, 3, 3, 3, device="cuda") / (256 * 27) ** 0.5
    gy = torch.randn((1, 256) + prob.out_spatial, device="cuda").to(memory_format=CL)
    ref = F.conv3d(gy.double(), w.double(), None, 2, 1)
    for name in names:
        gx = launch.grad_input(gy, w, prob, "3xtf32", name, out=_poisoned((1, 64) + prob.spatial))
        assert rel_l2(gx, ref) < 3e-6, name


def test_igemm_rounds_to_nearest():
    """Rounding to nearest (direct::to_tf32) of the A fragments and host rounding of the filter: cuDNN-class
    tf32 error, not truncation's."""
    name = IGEMM_KERNELS[0].name
    if name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    prob = Problem(2, 128, 64, (16, 16, 16), 3, 2, 1)
    x = torch.randn(2, 128, 16, 16, 16, device="cuda").to(memory_format=CL)
    w = torch.randn(128, 64, 3, 3, 3, device="cuda")
    y = launch.forward(x, w, None, prob, "tf32", name)
    err = rel_l2(y, F.conv_transpose3d(x.double(), w.double(), None, 2, 1))
    assert 1e-5 < err < 5e-4


@pytest.mark.parametrize("cfg", [k for k in WGMMA_KERNELS if k.ws] + list(DIRECT_SIMT_KERNELS), ids=lambda k: k.name)
@pytest.mark.parametrize("k,s,p", [(3, 1, 1), (3, 1, 0), (5, 1, 2), (3, 2, 1)])
@pytest.mark.parametrize("spatial", [(5, 11, 19), (5, 11, 96)])
def test_ws_writes_ncdhw_output(cfg, k, s, p, spatial, monkeypatch):
    """The ws and exact-fp32 rows' NCDHW epilogue (forced on: the reduction-depth rule is tested on the CPU): the same
    bits as their channels_last_3d result (the same accumulators, stored by channel plane), every
    element written (NaN-poisoned allocator), bias included; a strided forward (positions not dense
    along w) keeps channels_last_3d on the ws rows, and the exact-fp32 rows write it NCDHW too (their
    phases' CTAs side by side) up to SIMT_STRIDED_NCDHW_MAX_REDUCTION (12 channels: always here). Rows 96 wide
    start on 32-byte sectors: there the ws rows can store whole sectors, handing the one two tiles share from
    the first to the second (groups of w-neighbour tiles; 98 wide, the forward at p = 0, keeps the plain
    stores). The policy (direct.ncdhw_sectors) asks for that on some rows; here it is forced on every row for
    both passes, the same bits again."""
    if cfg.name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    monkeypatch.setattr(direct, "NCDHW_MIN_REDUCTION", 0)
    prob = Problem(2, 12, 40, spatial, k, s, p)
    dev = torch.cuda.current_device()
    limit, cc = _extension.smem_optin(dev), _extension.capability(dev)
    x, w, b = _layer_tensors(prob)
    if selector.direct_fits(prob, "dgrad", cfg, limit, cc):
        poison_allocator()
        y = launch.forward(x, w, b, prob, cfg.precision, cfg.name, ncdhw=True)
        ncdhw = s == 1 or (cfg.simt and direct.reduction_length(prob, "dgrad")
                           <= direct.SIMT_STRIDED_NCDHW_MAX_REDUCTION)
        assert y.is_contiguous() == ncdhw and y.is_contiguous(memory_format=CL) == (not ncdhw)
        assert torch.equal(y, launch.forward(x, w, b, prob, cfg.precision, cfg.name))
        assert rel_l2(y, F.conv_transpose3d(x.double(), w.double(), b.double(), s, p)) <= TOL[cfg.precision]
    if selector.direct_fits(prob, "fprop", cfg, limit, cc):
        gy = torch.randn((2, 40) + prob.out_spatial, device="cuda").to(memory_format=CL)
        poison_allocator()
        gx = launch.grad_input(gy, w, prob, cfg.precision, cfg.name, ncdhw=True)
        assert gx.is_contiguous() and not gx.is_contiguous(memory_format=CL)
        assert torch.equal(gx, launch.grad_input(gy, w, prob, cfg.precision, cfg.name))
        assert rel_l2(gx, F.conv3d(gy.double(), w.double(), None, s, p)) <= TOL[cfg.precision]
    if spatial[2] % 8 == 0 and not cfg.simt:
        monkeypatch.setattr(direct, "ncdhw_sectors", lambda *a: True)
        if selector.direct_fits(prob, "dgrad", cfg, limit, cc) and s == 1:
            poison_allocator()
            assert torch.equal(launch.forward(x, w, b, prob, cfg.precision, cfg.name, ncdhw=True), y)
        if selector.direct_fits(prob, "fprop", cfg, limit, cc):
            poison_allocator()
            assert torch.equal(launch.grad_input(gy, w, prob, cfg.precision, cfg.name, ncdhw=True), gx)


def test_only_ws_rows_write_ncdhw():
    """Rows without the NCDHW epilogue refuse the mode with an exception, never a wrong layout."""
    others = [k for k in DIRECT_KERNELS + WGMMA_KERNELS
              if not k.ws and not k.simt and k.name in _extension.compiled_kernels()]
    if not others:
        pytest.skip("not in this build")
    x = torch.randn(1, 8, 4, 4, 16, device="cuda").to(memory_format=CL)
    for cfg in others[:3]:
        out = torch.empty(1, 8, 4, 4, 16, device="cuda")
        w = torch.randn(8 * 8 * 27 * 2, device="cuda")
        phase = [0, 0, 0, 4, 4, 16, -1, -1, -1, 3, 3, 3, 0]
        with pytest.raises(RuntimeError, match="cannot run this problem"):
            torch.ops.convt3d_cutlass.direct(cfg.name, ndhwc(x), w, None, out, phase, 1, 1, True)


@pytest.mark.parametrize("prec", ["tf32", "fp32"])
@pytest.mark.parametrize("c_in,c_out,k,s,p", [(48, 24, 3, 1, 0), (64, 128, 3, 2, 1), (32, 8, 5, 1, 2),
                                              (16, 64, 5, 2, 2)])
def test_selected_direct_kernel_on_bigger_layers(prec, c_in, c_out, k, s, p):
    prob = Problem(2, c_in, c_out, (9, 17, 33), k, s, p)
    k_fwd = launch._select(prob, "dgrad", prec, None, torch.device("cuda", torch.cuda.current_device()))
    assert k_fwd.tap_reuse or prec == "fp32"  # exact fp32: where its rows fit and fill (test_direct_plan_cpu)
    x, w, _ = _layer_tensors(prob)
    y = launch.forward(x, w, None, prob, prec, out=_poisoned((2, c_out) + prob.out_spatial))
    assert rel_l2(y, F.conv_transpose3d(x.double(), w.double(), None, s, p)) <= TOL[prec]
    gy = torch.randn((2, c_out) + prob.out_spatial, device="cuda").to(memory_format=CL)
    gx = launch.grad_input(gy, w, prob, prec, out=_poisoned((2, c_in) + prob.spatial))
    assert rel_l2(gx, F.conv3d(gy.double(), w.double(), None, s, p)) <= TOL[prec]


def test_tf32_error_is_round_to_nearest_class():
    """Rounding to nearest (direct::to_tf32) of the input and host rounding of the filter: cuDNN-class TF32
    error (about 3e-4 on unit-variance data), not truncation's (about 8e-4)."""
    prob = Problem(2, 64, 32, (16, 16, 16), 3, 1, 1)
    x = torch.randn(2, 64, 16, 16, 16, device="cuda").to(memory_format=CL)
    w = torch.randn(64, 32, 3, 3, 3, device="cuda")
    y = launch.forward(x, w, None, prob, "tf32")
    err = rel_l2(y, F.conv_transpose3d(x.double(), w.double(), None, 1, 1))
    assert 1e-5 < err < 5e-4


def test_fp32_tap_reuse_is_exact_fp32():
    """The FFMA tap-reuse kernels: fp32 products and sums, no tf32 anywhere (the error of a 1296-long
    fp32 dot product, about 1e-7, where tf32's would be 3e-4), the same bits on a rerun; grad_weight too."""
    prob = Problem(2, 48, 24, (12, 20, 36), 3, 1, 0)
    x = torch.randn(2, 48, *prob.spatial, device="cuda").to(memory_format=CL)
    w = torch.randn(48, 24, 3, 3, 3, device="cuda")
    for op in ("dgrad", "fprop"):
        assert launch._select(prob, op, "fp32", None, x.device).name.startswith("direct_fp32_")
    y = launch.forward(x, w, None, prob, "fp32", out=_poisoned((2, 24) + prob.out_spatial))
    assert rel_l2(y, F.conv_transpose3d(x.double(), w.double(), None, 1, 0)) < 1e-6
    assert torch.equal(y, launch.forward(x, w, None, prob, "fp32"))
    gy = torch.randn((2, 24) + prob.out_spatial, device="cuda").to(memory_format=CL)
    gx = launch.grad_input(gy, w, prob, "fp32", out=_poisoned((2, 48) + prob.spatial))
    assert rel_l2(gx, F.conv3d(gy.double(), w.double(), None, 1, 0)) < 1e-6
    assert launch._select(prob, "wgrad", "fp32", None, x.device).name.startswith("direct_wgrad_fp32_")
    poison_allocator()
    gw = launch.grad_weight(gy, x, prob, "fp32")
    assert rel_l2(gw, _grad_weight_ref(x, gy, gw.shape, 1, 0)) < 1e-6
    assert torch.equal(gw, launch.grad_weight(gy, x, prob, "fp32"))
    # x in NCDHW storage, gathered in place: the same partial sums, the same bits
    x_ncdhw = x.contiguous()
    assert direct.wgrad_reads_ncdhw(launch._select(prob, "wgrad", "fp32", None, x.device), x_ncdhw)
    assert torch.equal(gw, launch.grad_weight(gy, x_ncdhw, prob, "fp32"))
    # grad_y in NCDHW storage too, gathered in place (gy_ncdhw): the same bits
    assert direct.wgrad_reads_gy_ncdhw(launch._select(prob, "wgrad", "fp32", None, x.device), gy.contiguous())
    assert torch.equal(gw, launch.grad_weight(gy.contiguous(), x_ncdhw, prob, "fp32"))
    for s_, p_ in ((1, 1), (2, 1)):  # partial tiles, strided, NCDHW x
        pr = Problem(2, 12, 40, (5, 11, 19), 3, s_, p_)
        xs = torch.randn(2, 12, *pr.spatial, device="cuda")
        gys = torch.randn((2, 40) + pr.out_spatial, device="cuda").to(memory_format=CL)
        for name in (k.name for k in DIRECT_WGRAD_SIMT_KERNELS if selector.direct_wgrad_fits(pr, k)):
            g = launch.grad_weight(gys, xs, pr, "fp32", name)
            assert rel_l2(g, _grad_weight_ref(xs, gys, g.shape, s_, p_)) < 1e-6
            assert torch.equal(g, launch.grad_weight(gys.contiguous(), xs, pr, "fp32", name))


def _grad_weight_ref(x, gy, w_shape, s, p, op=0):
    w = torch.zeros(w_shape, dtype=torch.float64, device=x.device, requires_grad=True)
    F.conv_transpose3d(x.double(), w, None, s, p, op).backward(gy.double())
    return w.grad


@pytest.mark.parametrize("cfg", DIRECT_WGRAD_KERNELS + DIRECT_WGRAD_SIMT_KERNELS, ids=lambda k: k.name)
@pytest.mark.parametrize("k,s,p,op", [(3, 1, 1, 0), (3, 2, 1, 0), (5, 2, 2, 0), (1, 1, 0, 0), (2, 2, 0, 0),
                                      (3, 3, 0, 0), (7, 1, 3, 0), (3, 1, 0, 0), (3, 2, 1, 1), (2, 2, 0, 1),
                                      (4, 2, 1, 1), (4, 1, 2, 0), (6, 3, 1, 2)])
def test_direct_wgrad_config(cfg, k, s, p, op):
    """Every (kh, kw) tap group, C_in and C_out blocks with partial tails (52 = 48 + 4, 40 = 32 + 8),
    spatial tiles with partial rows and columns; the partial-sum buffer is poisoned first."""
    if cfg.name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    prob = Problem(2, 52, 40, (3, 11, 19), k, s, p, op)
    if not selector.direct_wgrad_fits(prob, cfg, _extension.smem_optin(torch.cuda.current_device())):
        pytest.skip("does not fit this GPU's shared memory")
    x = torch.randn(2, 52, *prob.spatial, device="cuda").to(memory_format=CL)
    gy = torch.randn((2, 40) + prob.out_spatial, device="cuda").to(memory_format=CL)
    poison_allocator()
    gw = launch.grad_weight(gy, x, prob, cfg.precision, cfg.name)
    assert gw.shape == (52, 40, k, k, k)
    assert rel_l2(gw, _grad_weight_ref(x, gy, gw.shape, s, p, op)) <= TOL[cfg.precision]


def test_direct_wgrad_is_deterministic_and_rounds_to_nearest():
    """Bitwise the same twice (fixed slices, fixed-order sum); cuDNN-class tf32 error."""
    prob = Problem(4, 48, 24, (16, 24, 40), 3, 1, 1)
    name = "direct_wgrad_tf32_8x16_m48n24"
    if name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    x = torch.randn(4, 48, *prob.spatial, device="cuda").to(memory_format=CL)
    gy = torch.randn((4, 24) + prob.out_spatial, device="cuda").to(memory_format=CL)
    a = launch.grad_weight(gy, x, prob, "tf32", name)
    b = launch.grad_weight(gy, x, prob, "tf32", name)
    assert torch.equal(a, b)
    err = rel_l2(a, _grad_weight_ref(x, gy, a.shape, 1, 1))
    assert 1e-6 < err < 6e-4


def _wgmma_wgrad_or_skip(cfg, prob):
    if cfg.name not in _extension.compiled_kernels():
        pytest.skip("not in this build (sm_90a only)")
    if not selector.direct_fits(prob, "wgrad", cfg, _extension.smem_optin(torch.cuda.current_device()),
                                _extension.capability(torch.cuda.current_device())):
        pytest.skip("filter size, stride or shared memory: this row cannot take the problem")


@pytest.mark.parametrize("cfg", WGMMA_WGRAD_KERNELS, ids=lambda k: k.name)
@pytest.mark.parametrize("c_in,c_out,k,s,p,op", [(52, 40, 3, 1, 1, 0), (52, 40, 3, 1, 0, 0), (8, 4, 3, 1, 1, 0),
                                                 (20, 32, 3, 1, 1, 0), (20, 24, 3, 2, 1, 0), (20, 8, 3, 1, 1, 0),
                                                 (52, 40, 3, 2, 1, 0), (36, 12, 5, 1, 2, 0), (36, 12, 5, 2, 2, 0),
                                                 (100, 76, 3, 1, 1, 0), (52, 40, 3, 2, 1, 1), (36, 12, 5, 2, 2, 1),
                                                 (52, 40, 3, 3, 1, 0), (36, 12, 5, 3, 2, 2)])
def test_wgmma_wgrad_config(cfg, c_in, c_out, k, s, p, op):
    """C_in blocks with tails (52 = 48 + 4), several C_out blocks (40 -> 2 x 20 at k3), partial x tiles
    in H and W, halo planes out of range in depth, grad_y one row longer per axis (output_padding),
    strides 1-3 (halo planes read by k, some or one x plane each); the partial-sum buffer is poisoned
    first. The M tiles of (kd, kh, kw, C_out) shared out unevenly (k3 C_out 40: 9 tiles on the three
    MMA warpgroups of the warp-specialized tf32 form, 32: 7, 24: 11 (4, 4, 3), 8: 4, 4: 3; k5 C_out 12:
    17 on three at unit stride, on four at stride 2 and 3), kd blocks padded to 16 rows (24 -> 216 of 224)."""
    prob = Problem(2, c_in, c_out, (5, 11, 19), k, s, p, op)
    _wgmma_wgrad_or_skip(cfg, prob)
    x = torch.randn(2, c_in, *prob.spatial, device="cuda").to(memory_format=CL)
    gy = torch.randn((2, c_out) + prob.out_spatial, device="cuda").to(memory_format=CL)
    poison_allocator()
    gw = launch.grad_weight(gy, x, prob, cfg.precision, cfg.name)
    assert gw.shape == (c_in, c_out, k, k, k)
    assert rel_l2(gw, _grad_weight_ref(x, gy, gw.shape, s, p, op)) <= TOL[cfg.precision]


@pytest.mark.parametrize("cfg", WGMMA_WGRAD_KERNELS, ids=lambda k: k.name)
@pytest.mark.parametrize("c_in,c_out,k,s,p,spatial", [(52, 40, 3, 1, 1, (5, 11, 20)), (8, 4, 3, 2, 1, (4, 9, 12)),
                                                      (36, 12, 5, 1, 2, (3, 17, 36)), (48, 24, 3, 1, 0, (6, 8, 16))])
def test_wgmma_wgrad_reads_ncdhw_x(cfg, c_in, c_out, k, s, p, spatial):
    """x in its NCDHW storage (TMA box [ci][positions], staged on bank-spread diagonals; on the two-stage
    warp-specialized k3 rows landed K-major by TMA itself, XD, unless CONVT3D_WGRAD_STAGE_X=1) gives the same
    bits as its channels_last_3d copy: the same x^T tile reaches the same MMAs. Partial tiles in H and
    W, a C_in tail (52), poisoned partial sums."""
    prob = Problem(2, c_in, c_out, spatial, k, s, p)
    _wgmma_wgrad_or_skip(cfg, prob)
    x = torch.randn(2, c_in, *spatial, device="cuda")
    gy = torch.randn((2, c_out) + prob.out_spatial, device="cuda").to(memory_format=CL)
    assert direct.wgrad_reads_ncdhw(cfg, x)
    poison_allocator()
    got = launch.grad_weight(gy, x, prob, cfg.precision, cfg.name)
    ref = launch.grad_weight(gy, x.to(memory_format=CL), prob, cfg.precision, cfg.name)
    assert torch.equal(got, ref)
    assert rel_l2(got, _grad_weight_ref(x, gy, got.shape, s, p)) <= TOL[cfg.precision]


def test_wgmma_wgrad_ncdhw_needs_w_multiple_of_4():
    """W % 4 != 0: 16-byte TMA row strides are impossible, so launch converts x; the kernel itself
    refuses the NCDHW mode with an exception, not a wrong result."""
    cfg = WGMMA_WGRAD_KERNELS[0]
    prob = Problem(2, 48, 24, (4, 8, 18), 3, 1, 1)
    _wgmma_wgrad_or_skip(cfg, prob)
    x = torch.randn(2, 48, *prob.spatial, device="cuda")
    gy = torch.randn((2, 24) + prob.out_spatial, device="cuda").to(memory_format=CL)
    assert not direct.wgrad_reads_ncdhw(cfg, x)
    gw = launch.grad_weight(gy, x, prob, "tf32", cfg.name)
    assert rel_l2(gw, _grad_weight_ref(x, gy, gw.shape, 1, 1)) <= TOL["tf32"]
    partials = torch.empty((2 * 1 * 2, 27, 48, 24), device="cuda")
    with pytest.raises(RuntimeError, match="cannot run this problem"):
        torch.ops.convt3d_cutlass.direct_wgrad(cfg.name, x, ndhwc(gy), partials, 3, 1, 1, 1, True)


def test_mma_sync_wgrad_refuses_ncdhw_x():
    cfg = DIRECT_WGRAD_KERNELS[0]
    if cfg.name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    x = torch.randn(1, 8, 4, 8, 16, device="cuda")
    gy = torch.randn(1, 6, 8, 16, 8, device="cuda")  # NDHWC, C_out 8
    partials = torch.empty((1, 27, 8, 8), device="cuda")
    with pytest.raises(RuntimeError, match="cannot run this problem"):
        torch.ops.convt3d_cutlass.direct_wgrad(cfg.name, x, gy, partials, 3, 1, 1, 9, True)


@pytest.mark.parametrize("segs", [1, 2, 3, 7, 25])
def test_wgmma_wgrad_depth_segments(segs):
    """The form without a producer warpgroup (3xtf32): any split of the depth into segments sums to the
    same gradient, empty trailing segments (25 > 20 planes) included; a slice count that is not a
    multiple of the columns is refused."""
    cfg = next(k for k in WGMMA_WGRAD_KERNELS if k.split and k.bn == 48)
    prob = Problem(2, 48, 24, (20, 9, 17), 3, 1, 1)
    _wgmma_wgrad_or_skip(cfg, prob)
    x = torch.randn(2, 48, *prob.spatial, device="cuda").to(memory_format=CL)
    gy = torch.randn((2, 24) + prob.out_spatial, device="cuda").to(memory_format=CL)
    columns = prob.n * -(-prob.spatial[1] // cfg.block[1]) * -(-prob.spatial[2] // cfg.block[2])
    partials = torch.full((columns * segs, 27, 48, 24), float("nan"), device="cuda")
    ops = torch.ops.convt3d_cutlass
    ops.direct_wgrad(cfg.name, ndhwc(x), ndhwc(gy), partials, 3, 1, 1, 1)
    gw = partials.sum(0).view(3, 3, 3, 48, 24).permute(3, 4, 0, 1, 2)
    assert rel_l2(gw, _grad_weight_ref(x, gy, gw.shape, 1, 1)) <= 5e-6
    bad = torch.empty((columns * segs + 1, 27, 48, 24), device="cuda")
    with pytest.raises(RuntimeError):
        ops.direct_wgrad(cfg.name, ndhwc(x), ndhwc(gy), bad, 3, 1, 1, 1)


@pytest.mark.parametrize("k,s,spatial", [(3, 2, (20, 9, 17)), (3, 1, (7, 9, 17)), (3, 3, (5, 11, 19))])
def test_wgmma_wgrad_three_stages_same_bits(k, s, spatial):
    """The three-stage row (TMA two steps ahead, two x^T buffers) adds the same products in the same order
    as its two-stage twin: equal bits, at strides 1-3, on the selector's ranges, some of which walk into
    a further column (short columns: 5-20 planes), where a run's first step waits for its predecessor's
    MMAs before its loads are issued."""
    s3, s2 = (next(c for c in WGMMA_WGRAD_KERNELS if c.name == f"wgmma_wgrad_tf32_4x16_k3_n32_wg4_s{n}")
              for n in (3, 2))
    prob = Problem(2, 32, 24, spatial, k, s, 1)
    _wgmma_wgrad_or_skip(s3, prob)
    _wgmma_wgrad_or_skip(s2, prob)
    x = torch.randn(2, 32, *prob.spatial, device="cuda").to(memory_format=CL)
    gy = torch.randn((2, 24) + prob.out_spatial, device="cuda").to(memory_format=CL)
    poison_allocator()
    a = launch.grad_weight(gy, x, prob, "tf32", s3.name)
    b = launch.grad_weight(gy, x, prob, "tf32", s2.name)
    assert torch.equal(a, b)
    assert rel_l2(a, _grad_weight_ref(x, gy, a.shape, s, 1)) <= TOL["tf32"]


@pytest.mark.parametrize("s,spatial", [(2, (12, 9, 17)), (3, (5, 11, 19))])
def test_wgmma_wgrad_k5_three_stages(s, spatial):
    """The k5 three-stage row runs the warp-specialized form at stride > 1 (its two-stage twin the plain one, in
    depth segments): against float64, bitwise repeatable, and within tf32 rounding of the twin's result."""
    s3, s2 = (next(c for c in WGMMA_WGRAD_KERNELS if c.name == f"wgmma_wgrad_tf32_4x16_k5_n32_wg4_s{n}")
              for n in (3, 2))
    prob = Problem(2, 32, 12, spatial, 5, s, 2)
    _wgmma_wgrad_or_skip(s3, prob)
    _wgmma_wgrad_or_skip(s2, prob)
    assert direct.wgmma_wgrad_pw(5, s, 4, 3, False) and not direct.wgmma_wgrad_pw(5, s, 4, 2, False)
    x = torch.randn(2, 32, *prob.spatial, device="cuda").to(memory_format=CL)
    gy = torch.randn((2, 12) + prob.out_spatial, device="cuda").to(memory_format=CL)
    poison_allocator()
    a = launch.grad_weight(gy, x, prob, "tf32", s3.name)
    assert torch.equal(a, launch.grad_weight(gy, x, prob, "tf32", s3.name))
    ref = _grad_weight_ref(x, gy, a.shape, s, 2)
    assert rel_l2(a, ref) <= TOL["tf32"]
    assert rel_l2(a, launch.grad_weight(gy, x, prob, "tf32", s2.name)) <= 1e-5


@pytest.mark.parametrize("slices", [1, 5, 7, 13, 36, 37, 200, 1000])
@pytest.mark.parametrize("k,s", [(3, 1), (3, 2), (5, 1)])
def test_wgmma_wgrad_ranges_cross_columns(slices, k, s):
    """The warp-specialized form splits all (column, x plane) pairs evenly over any number of slices, so a
    CTA's range walks into further columns (reloading every halo plane there; at stride 2, k3, a step adds
    only `stride` planes otherwise) or is empty (1000 slices > 720 pairs: zero partial sums, not NaN). The
    sum over slices is the gradient whatever the count, and one count's bits repeat."""
    cfg = next(c for c in WGMMA_WGRAD_KERNELS if c.ksize == k and not c.split and c.block[1] == (8 if s == 1 else 4))
    prob = Problem(2, 32, 24, (20, 9, 17), k, s, k // 2)
    _wgmma_wgrad_or_skip(cfg, prob)
    assert direct.wgmma_wgrad_pw(k, s, cfg.warpgroups, cfg.stages, cfg.split)
    x = torch.randn(2, 32, *prob.spatial, device="cuda").to(memory_format=CL)
    gy = torch.randn((2, 24) + prob.out_spatial, device="cuda").to(memory_format=CL)
    partials = torch.full((slices, k ** 3, 32, 24), float("nan"), device="cuda")
    ops = torch.ops.convt3d_cutlass
    ops.direct_wgrad(cfg.name, ndhwc(x), ndhwc(gy), partials, k, s, prob.padding, 1)
    assert not partials.isnan().any()
    gw = partials.sum(0).view(k, k, k, 32, 24).permute(3, 4, 0, 1, 2)
    assert rel_l2(gw, _grad_weight_ref(x, gy, gw.shape, s, prob.padding)) <= TOL["tf32"]
    again = torch.full_like(partials, float("nan"))
    ops.direct_wgrad(cfg.name, ndhwc(x), ndhwc(gy), again, k, s, prob.padding, 1)
    assert torch.equal(again, partials)


def test_wgmma_wgrad_is_deterministic_and_rounds_to_nearest():
    """Bitwise the same twice (fixed slices, fixed-order sum); cuDNN-class tf32 error."""
    prob = Problem(4, 48, 24, (16, 24, 40), 3, 1, 1)
    cfg = WGMMA_WGRAD_KERNELS[0]
    _wgmma_wgrad_or_skip(cfg, prob)
    x = torch.randn(4, 48, *prob.spatial, device="cuda").to(memory_format=CL)
    gy = torch.randn((4, 24) + prob.out_spatial, device="cuda").to(memory_format=CL)
    a = launch.grad_weight(gy, x, prob, "tf32", cfg.name)
    b = launch.grad_weight(gy, x, prob, "tf32", cfg.name)
    assert torch.equal(a, b)
    err = rel_l2(a, _grad_weight_ref(x, gy, a.shape, 1, 1))
    assert 1e-6 < err < 6e-4


@pytest.mark.parametrize("cfg", [None, "wgmma_tf32_4x8x14_kx3_n24_wg4_s3", "direct_tf32_2x8x16_n24",
                                 "dgrad_tf32_128x32x32_32x32x32_s4"])
def test_misaligned_input_and_bias_views(cfg):
    """Views into flat buffers (FSDP's flat parameters) start at any element; the kernels' 16-byte
    loads (cp.async, TMA, the float4 bias read) get aligned copies instead of a fatal CUDA error."""
    import convt3d_cutlass as ct
    if cfg is not None and cfg not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    if cfg is not None and cfg.startswith("wgmma") and _extension.capability(torch.cuda.current_device()) != (9, 0):
        pytest.skip("sm_90a kernel")
    n, ci, co, sp = 2, 8, 24, (5, 6, 7)
    flat = torch.randn(1 + n * ci * sp[0] * sp[1] * sp[2], device="cuda")
    x = flat[1:].view(n, *sp, ci).permute(0, 4, 1, 2, 3)  # channels_last_3d, 4 bytes past a boundary
    pbuf = torch.randn(1 + co, device="cuda")
    b = torch.nn.Parameter(pbuf[1:])
    w = torch.nn.Parameter(torch.randn(ci, co, 3, 3, 3, device="cuda") / (ci * 27) ** 0.5)
    assert x.data_ptr() % 16 == 4 and b.data_ptr() % 16 == 4
    y = ct.conv_transpose3d(x, w, b, 1, 1, precision="tf32", config=cfg)
    gy = torch.randn_like(y)
    y.backward(gy)
    wd, bd = w.detach().double().requires_grad_(), b.detach().double().requires_grad_()
    ref = F.conv_transpose3d(x.double(), wd, bd, 1, 1)
    ref.backward(gy.double())
    assert rel_l2(y, ref) <= TOL["tf32"]
    assert rel_l2(w.grad, wd.grad) <= TOL["tf32"] and rel_l2(b.grad, bd.grad) <= TOL["tf32"]


def test_3xtf32_split_kernels_reach_fp32_class_error():
    """The Hopper split kernels (3xtf32): each pass lands near fp32's error, far below tf32's."""
    prob = Problem(2, 48, 24, (8, 12, 20), 3, 1, 1)
    dev = torch.device("cuda", torch.cuda.current_device())
    picks = {op: launch._select(prob, op, "3xtf32", None, dev) for op in ("dgrad", "fprop", "wgrad")}
    if not all(k.split for k in picks.values()):
        pytest.skip("no Hopper split kernel here (needs sm_90a)")
    x = torch.randn(2, 48, *prob.spatial, device="cuda").to(memory_format=CL)
    w = torch.randn(48, 24, 3, 3, 3, device="cuda") / (48 * 27) ** 0.5
    gy = torch.randn((2, 24) + prob.out_spatial, device="cuda").to(memory_format=CL)
    ref = {"dgrad": F.conv_transpose3d(x.double(), w.double(), None, 1, 1),
           "fprop": F.conv3d(gy.double(), w.double(), None, 1, 1),
           "wgrad": _grad_weight_ref(x, gy, w.shape, 1, 1)}
    for prec, lo, hi in (("3xtf32", 0, 5e-6), ("tf32", 1e-4, 1e-3)):
        got = {"dgrad": launch.forward(x, w, None, prob, prec, out=_poisoned((2, 24) + prob.out_spatial)),
               "fprop": launch.grad_input(gy, w, prob, prec, out=_poisoned((2, 48) + prob.spatial)),
               "wgrad": launch.grad_weight(gy, x, prob, prec)}
        for op in got:
            assert lo <= rel_l2(got[op], ref[op]) < hi, (prec, op)


@pytest.mark.parametrize("cfg", [k for k in WGMMA_WGRAD_KERNELS if k.split], ids=lambda k: k.name)
def test_3xtf32_wgrad_long_segment_stays_fp32_class(cfg):
    """One depth segment of 96 planes per CTA (the headline's reductions are this long): the split
    kernel promotes its tensor-core accumulators to fp32 registers per plane, so the error stays near
    fp32's (without it: 4.3e-5 on the headline)."""
    prob = Problem(1, 48, 24, (96, 8, 16), 3, 1, 1)
    _wgmma_wgrad_or_skip(cfg, prob)
    x = torch.randn(1, 48, *prob.spatial, device="cuda").to(memory_format=CL)
    gy = torch.randn((1, 24) + prob.out_spatial, device="cuda").to(memory_format=CL)
    columns = -(-prob.spatial[1] // cfg.block[1]) * -(-prob.spatial[2] // cfg.block[2])
    partials = torch.full((columns, 27, 48, 24), float("nan"), device="cuda")
    torch.ops.convt3d_cutlass.direct_wgrad(cfg.name, ndhwc(x), ndhwc(gy), partials, 3, 1, 1, 1)
    gw = partials.sum(0).view(3, 3, 3, 48, 24).permute(3, 4, 0, 1, 2)
    assert rel_l2(gw, _grad_weight_ref(x, gy, gw.shape, 1, 1)) < 3e-6


@pytest.mark.parametrize("cfg", IGEMM_WGRAD_KERNELS, ids=lambda k: k.name)
@pytest.mark.parametrize("k,s,p,op,spatial", [(3, 2, 1, 0, (3, 7, 19)), (3, 1, 1, 0, (4, 5, 9)),
                                              (5, 2, 2, 0, (2, 6, 10)), (1, 1, 0, 0, (3, 4, 5)),
                                              (2, 2, 0, 0, (3, 5, 8)), (3, 3, 1, 0, (2, 5, 7)),
                                              (3, 2, 1, 1, (3, 6, 9)), (4, 2, 1, 1, (2, 5, 8))])
def test_igemm_wgrad_config(cfg, k, s, p, op, spatial):
    """The implicit-GEMM grad_weight rows: C_in blocks with a tail (136 = 128 + 8), C_out blocks with a
    tail (72), partial position boxes, every tap and stride, the partial-sum buffer NaN-poisoned; then
    with more slices than position tiles (empty slices must write zeros) and bitwise twice the same."""
    if cfg.name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    prob = Problem(2, 136, 72, spatial, k, s, p, op)
    if not selector.igemm_wgrad_fits(prob, cfg, _extension.smem_optin(torch.cuda.current_device())):
        assert cfg.kx > 1 and cfg.kx != k  # only the kw-fold rows refuse, and only other filter sizes
        pytest.skip("a kw-fold row takes its own filter size only")
    x = torch.randn(2, 136, *spatial, device="cuda").to(memory_format=CL)
    gy = torch.randn((2, 72) + prob.out_spatial, device="cuda").to(memory_format=CL)
    ref = _grad_weight_ref(x, gy, (136, 72, k, k, k), s, p, op)
    poison_allocator()
    gw = launch.grad_weight(gy, x, prob, cfg.precision, cfg.name)
    assert rel_l2(gw, ref) <= TOL[cfg.precision]
    assert torch.equal(gw, launch.grad_weight(gy, x, prob, cfg.precision, cfg.name))
    d, h, w = spatial
    tiles = 2 * -(-d // cfg.block[0]) * -(-h // cfg.block[1]) * -(-w // cfg.block[2])
    partials = torch.full((tiles + 3, k ** 3, 136, 72), float("nan"), device="cuda")
    torch.ops.convt3d_cutlass.direct_wgrad(cfg.name, ndhwc(x), ndhwc(gy), partials, k, s, p, 1, False)
    gw2 = partials.sum(0).view(k, k, k, 136, 72).permute(3, 4, 0, 1, 2)
    assert rel_l2(gw2, ref) <= TOL[cfg.precision]


def _igemm_wgrad_pair(names, block, s, op, k=3, spatial=(3, 7, 13)):
    """(partial sums of both named rows, x, grad_y, Problem): the same random channels_last x and grad_y of a
    layer 136 -> 72 with filter k (padding k // 2) at stride s over ``spatial`` (C_in and C_out tails, grad_y
    boxes past every border), one slice per position tile of ``block`` plus an empty one, NaN-poisoned. Skips
    where either row is not built."""
    if not set(names) <= _extension.compiled_kernels():
        pytest.skip("not in this build")
    prob = Problem(2, 136, 72, spatial, k, s, k // 2, op)
    x = torch.randn(2, 136, *prob.spatial, device="cuda").to(memory_format=CL)
    gy = torch.randn((2, 72) + prob.out_spatial, device="cuda").to(memory_format=CL)
    d, h, w = spatial
    tiles = 2 * -(-d // block[0]) * -(-h // block[1]) * -(-w // block[2])
    got = []
    for name in names:
        partials = torch.full((tiles + 1, k ** 3, 136, 72), float("nan"), device="cuda")
        torch.ops.convt3d_cutlass.direct_wgrad(name, ndhwc(x), ndhwc(gy), partials, k, s, k // 2, 1, False)
        got.append(partials)
    return got, x, gy, prob


@pytest.mark.parametrize("block", [(1, 4, 8), (1, 2, 16)])
@pytest.mark.parametrize("s,op", [(1, 0), (2, 0), (2, 1), (3, 0), (4, 2)])
def test_igemm_wgrad_kw_fold_matches_per_tap_rows(block, s, op):
    """The kw fold (N = 3 x 64) sums each tap over the same k-blocks in the same order as the per-tap row
    with the same position box: the same partial sums (C_in and C_out tails, several slices with an
    empty one, grad_y boxes past every border)."""
    b = "x".join(map(str, block))
    got, x, gy, _ = _igemm_wgrad_pair((f"igemm_wgrad_tf32_{b}_n64_kx3_s3", f"igemm_wgrad_tf32_{b}_n64_s6"),
                                      block, s, op)
    assert torch.isfinite(got[0]).all()
    assert torch.equal(got[0], got[1])
    ref = _grad_weight_ref(x, gy, (136, 72, 3, 3, 3), s, 1, op)
    assert rel_l2(got[0].sum(0).view(3, 3, 3, 136, 72).permute(3, 4, 0, 1, 2), ref) <= TOL["tf32"]


@pytest.mark.parametrize("block", [(1, 4, 8), (1, 2, 16)])
@pytest.mark.parametrize("s,op", [(1, 0), (2, 0), (2, 1), (3, 0)])
def test_igemm_wgrad_swap_matches_kw_fold(block, s, op):
    """The swapped kw fold (M = (kw, C_out), x transposed) against the kw fold with the same position box:
    both round both operands to tf32 and sum the same k-blocks in the same order, so they differ only in
    the order of fp32 sums inside an MMA (C_in and C_out tails, several slices with an empty one, grad_y
    boxes past every border; the partial sums NaN-poisoned)."""
    b = "x".join(map(str, block))
    got, _, _, _ = _igemm_wgrad_pair((f"igemm_wgrad_tf32_{b}_n64_kx3_s3", f"igemm_wgrad_tf32_{b}_n64_kx3_sw_s4"),
                                     block, s, op)
    assert torch.isfinite(got[1]).all()
    assert rel_l2(got[1], got[0]) < 1e-6
    assert not got[1][-1].any()  # the empty slice


@pytest.mark.parametrize("block", [(1, 4, 8), (1, 2, 16)])
@pytest.mark.parametrize("s,op,spatial", [(2, 0, (3, 7, 13)), (2, 1, (2, 5, 9)), (3, 0, (2, 4, 8)), (1, 0, (2, 6, 11))])
def test_igemm_wgrad_k5_swap_matches_per_tap_rows(block, s, op, spatial):
    """The k5 swapped kw fold (M = 5 x 32 rows of (kw, C_out) on three warpgroups, the last one's second half
    idle) against the per-tap row with the same position box: the same tf32 operands summed over the same
    k-blocks in the same order, so only the order of fp32 sums inside an MMA differs. C_in and C_out tails
    (136, 72: three 32-channel C_out blocks, the last 8 wide), grad_y boxes past every border, several slices
    with an empty one, NaN-poisoned partial sums; then through launch.grad_weight against float64."""
    b = "x".join(map(str, block))
    names = (f"igemm_wgrad_tf32_{b}_n64_s6", f"igemm_wgrad_tf32_{b}_n32_kx5_sw_s4")
    got, x, gy, prob = _igemm_wgrad_pair(names, block, s, op, 5, spatial)
    assert torch.isfinite(got[1]).all()
    assert rel_l2(got[1], got[0]) < 1e-6
    assert not got[1][-1].any()  # the empty slice
    poison_allocator()
    gw = launch.grad_weight(gy, x, prob, "tf32", names[1])
    assert rel_l2(gw, _grad_weight_ref(x, gy, gw.shape, s, 2, op)) <= TOL["tf32"]


@pytest.mark.parametrize("name,w", [("igemm_wgrad_tf32_1x4x8_n128_s4", 8), ("igemm_wgrad_tf32_1x4x8_n64_kx3_s3", 8),
                                    ("igemm_wgrad_tf32_1x4x8_n64_kx3_sw_s4", 10),
                                    ("igemm_wgrad_tf32_1x2x16_n64_kx3_sw_s4", 18)])
def test_igemm_wgrad_refuses_ncdhw_x(name, w):
    """The unswapped rows read a channels_last_3d x only, and the swapped ones an NCDHW x only where W % 4
    == 0 (16-byte TMA strides): an exception, not a wrong result."""
    if name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    x = torch.randn(1, 8, 4, 4, w, device="cuda")
    gy = torch.randn(1, 4, 4, w, 8, device="cuda")
    partials = torch.empty(1, 27, 8, 8, device="cuda")
    with pytest.raises(RuntimeError, match="cannot run this problem"):
        torch.ops.convt3d_cutlass.direct_wgrad(name, x, gy, partials, 3, 1, 1, 1, True)


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("block", [(1, 4, 8), (1, 2, 16)])
@pytest.mark.parametrize("s,op,spatial", [(1, 0, (3, 7, 12)), (2, 0, (3, 7, 12)), (2, 1, (2, 5, 20)),
                                          (3, 0, (3, 6, 8))])
def test_igemm_wgrad_swap_reads_ncdhw_x(block, s, op, spatial, k):
    """The swapped rows with x in its NCDHW storage (TMA lands it K-major, 32- or 64-byte swizzled, where the
    transposing warps write x^T from a channels_last_3d x): the same tf32 operands reach the same MMAs in
    the same order, so the same bits. C_in and C_out tails (136, 72), partial position boxes along h and w,
    several slices and an empty one, NaN-poisoned partial sums; then through launch.grad_weight, which
    takes the NCDHW x as it is, against float64."""
    name = f"igemm_wgrad_tf32_{'x'.join(map(str, block))}_" + ("n64_kx3_sw_s4" if k == 3 else "n32_kx5_sw_s4")
    if name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    pad = k // 2
    prob = Problem(2, 136, 72, spatial, k, s, pad, op)
    x = torch.randn(2, 136, *spatial, device="cuda")
    gy = torch.randn((2, 72) + prob.out_spatial, device="cuda").to(memory_format=CL)
    d, h, w = spatial
    tiles = 2 * -(-d // block[0]) * -(-h // block[1]) * -(-w // block[2])
    got = []
    for xin, xn in ((x, True), (ndhwc(x), False)):
        partials = torch.full((tiles + 1, k ** 3, 136, 72), float("nan"), device="cuda")
        torch.ops.convt3d_cutlass.direct_wgrad(name, xin, ndhwc(gy), partials, k, s, pad, 1, xn)
        got.append(partials)
    assert torch.isfinite(got[0]).all()
    assert torch.equal(got[0], got[1])
    assert not got[0][-1].any()  # the empty slice
    assert direct.wgrad_reads_ncdhw(BY_NAME[name], x)
    poison_allocator()
    gw = launch.grad_weight(gy, x, prob, "tf32", name)
    assert rel_l2(gw, _grad_weight_ref(x, gy, gw.shape, s, pad, op)) <= TOL["tf32"]


@pytest.mark.parametrize("cfg", [k for k in WGMMA_KERNELS if k.rs], ids=lambda k: k.name)
def test_rs_rows_match_their_ss_twins(cfg):
    """The RS rows (A from registers, rounded there, each fragment shared by the kd taps) against the ws
    row of the same tile: the same tf32 operands, so only the order of fp32 accumulation differs. Several
    chunks with a tail (44 = 5 x 8 + 4), C_out blocks with a tail, tiles cut along every axis, bias; and
    cuDNN-class tf32 error against float64 (rounded, not truncated)."""
    twin = cfg.name.replace("wgmma_rs_", "wgmma_ws_")
    if cfg.name not in _extension.compiled_kernels() or twin not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    k = cfg.kx
    prob = Problem(2, 44, 52, (9, 13, 31), k, 1, (k - 1) // 2 - 1 if k > 3 else 0)
    x, w, b = _layer_tensors(prob)
    y = launch.forward(x, w, b, prob, "tf32", cfg.name, out=_poisoned((2, 52) + prob.out_spatial))
    ref = F.conv_transpose3d(x.double(), w.double(), b.double(), 1, prob.padding)
    assert rel_l2(y, launch.forward(x, w, b, prob, "tf32", twin)) < 1e-5
    assert 1e-5 < rel_l2(y, ref) < 5e-4
    gy = torch.randn((2, 52) + prob.out_spatial, device="cuda").to(memory_format=CL)
    gx = launch.grad_input(gy, w, prob, "tf32", cfg.name, out=_poisoned((2, 44) + prob.spatial))
    assert rel_l2(gx, launch.grad_input(gy, w, prob, "tf32", twin)) < 1e-5
    assert 1e-5 < rel_l2(gx, F.conv3d(gy.double(), w.double(), None, 1, prob.padding)) < 5e-4


@pytest.mark.parametrize("layout", ["NDHWC", "NCDHW"])
@pytest.mark.parametrize("c_in,c_out,k,p,op,spatial,bias", [
    (64, 32, 3, 1, 0, (6, 9, 37), True),     # three tiles along w, partial h and d tiles
    (16, 24, 3, 1, 1, (3, 5, 16), False),   # output_padding; a partial N block
    (24, 8, 3, 1, 0, (4, 4, 8), True),      # one tile along w, 8 of 32 channels
    (32, 32, 5, 2, 0, (5, 6, 29), True),    # k5: R = 2, 14 inputs stored per halo row
    (8, 64, 5, 1, 1, (3, 3, 13), False),    # k5, padding 1, two n32 blocks
])
def test_wfold_forward_through_the_api(layout, c_in, c_out, k, p, op, spatial, bias):
    """The w-fold rows (selected for stride-2 forwards of k5, and of k3 up to 32 output channels) through the
    public function and the eager node, both layouts (NCDHW k3 layers whose output rows start on 32-byte sectors
    keep the implicit GEMM, which writes NCDHW itself: the 32-wide case here; at 73 and 15 wide the w fold writes
    channels_last_3d and our transpose follows), against float64; the forward and, with the selector's backward,
    the step."""
    import convt3d_cutlass as ct
    prob = Problem(2, c_in, c_out, spatial, k, 2, p, op)
    dev = torch.cuda.current_device()
    name = selector.select_config(prob, "dgrad", "tf32", num_sms=_extension.num_sms(dev),
                                  compiled=_extension.compiled_kernels(), smem_limit=_extension.smem_optin(dev),
                                  capability=_extension.capability(dev)).name
    if not name.startswith("wgmma_wf2_"):
        pytest.skip(f"the selector picked {name} (w-fold rows not built or not taken)")
    x, w, b = _layer_tensors(prob)
    if layout == "NCDHW":
        x = x.contiguous()
    b = b if bias else None
    poison_allocator()
    xg, wg = x.detach().requires_grad_(), w.detach().requires_grad_()
    y = ct.conv_transpose3d(xg, wg, b, 2, p, op, precision="tf32")
    ref = F.conv_transpose3d(x.double(), w.double(), None if b is None else b.double(), 2, p, op)
    assert rel_l2(y, ref) <= TOL["tf32"]
    gy = torch.randn_like(y)
    y.backward(gy)
    xd, wd = x.double().requires_grad_(), w.double().requires_grad_()
    F.conv_transpose3d(xd, wd, None, 2, p, op).backward(gy.double())
    assert rel_l2(xg.grad, xd.grad) <= TOL["tf32"]
    assert rel_l2(wg.grad, wd.grad) <= TOL["tf32"]


@pytest.mark.parametrize("cfg", [k for k in WGMMA_KERNELS if k.ws and not k.wf], ids=lambda k: k.name)
@pytest.mark.parametrize("k,p", [(3, 0), (3, 1), (3, 2), (5, 2), (5, 0)])
@pytest.mark.parametrize("width", [16, 17, 46, 96])
def test_ws_wcarry_tiles_same_bits(cfg, k, p, width, monkeypatch):
    """The ws rows' tiles of 16 input positions along w that hand the partial sums of their last kx - 1 outputs
    to the next tile (Geometry::wcarry; CONVT3D_WS_WCARRY=2 takes them wherever the row can, 0 never): the same
    bits as the tiles of 16 - kx + 1 outputs, because each output adds the same kx terms in the same order; and
    those tiles walked by whole rows (CONVT3D_WS_WCARRY=3, the walk the carry takes, priced alone) too. Widths
    with a tail tile, one tile, and rows whose last tile stores the outputs past the input itself; first tiles
    starting on input 0 with one or two carried positions left of them (p < k - 1), or on none (grad_input at
    p = 0); two channel chunks with a tail, C_out blocks with a tail, bias; channels_last_3d and NCDHW out, and
    the forward from an NCDHW x (the RS rows' raw boxes); every element written (NaN-poisoned), and float64."""
    if cfg.name not in _extension.compiled_kernels():
        pytest.skip("not in this build")
    prob = Problem(2, 12, 40, (3, 5, width), k, 1, p)
    dev = torch.cuda.current_device()
    limit, cc = _extension.smem_optin(dev), _extension.capability(dev)
    fits = {op: selector.direct_fits(prob, op, cfg, limit, cc) for op in ("dgrad", "fprop")}
    if not any(fits.values()):
        pytest.skip("the row does not run this problem")
    monkeypatch.setattr(direct, "NCDHW_MIN_REDUCTION", 0)
    x, w, b = _layer_tensors(prob)
    gy = torch.randn((2, 40) + prob.out_spatial, device="cuda").to(memory_format=CL)

    def runs():
        out = []
        if fits["dgrad"]:
            for xx, ncdhw in ((x, False), (x, True), (x.contiguous(), True)):
                poison_allocator()
                out.append(launch.forward(xx, w, b, prob, cfg.precision, cfg.name, ncdhw=ncdhw))
        if fits["fprop"]:
            for ncdhw in (False, True):
                poison_allocator()
                out.append(launch.grad_input(gy, w, prob, cfg.precision, cfg.name, ncdhw=ncdhw))
        return out

    monkeypatch.setenv("CONVT3D_WS_WCARRY", "0")
    tiles = runs()
    monkeypatch.setenv("CONVT3D_WS_WCARRY", "2")
    carried = runs()
    monkeypatch.setenv("CONVT3D_WS_WCARRY", "3")
    walked = runs()
    refs = ([F.conv_transpose3d(x.double(), w.double(), b.double(), 1, p)] * 3 if fits["dgrad"] else []) + \
           ([F.conv3d(gy.double(), w.double(), None, 1, p)] * 2 if fits["fprop"] else [])
    for a, c, r, ref in zip(tiles, carried, walked, refs):
        assert torch.equal(a, c)
        assert torch.equal(a, r)
        assert rel_l2(c, ref) <= TOL[cfg.precision]
