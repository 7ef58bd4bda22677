"""The tap-reuse kernel's launch plans (phase tables, filter layouts) on the CPU: a float64 emulation
of the kernel's contract (csrc/direct_launch.h) must reproduce PyTorch's conv_transpose3d and its
grad_input for every kernel size, stride and padding of the fast path."""
import itertools
import pathlib

import pytest
import torch
import torch.nn.functional as F

from convt3d_cutlass import direct, selector
from convt3d_cutlass.kernel_table import BY_NAME, KERNELS
from convt3d_cutlass.problem import Problem


def _phases(inp, table, margin=16):
    """in [N, Di, Hi, Wi, Cr] zero-padded by margin on each spatial side (every tap read lands inside), and per
    phase of the table with outputs its (first, count, dmin, taps, weight offset)."""
    padded = F.pad(inp, (0, 0, margin, margin, margin, margin, margin, margin))
    rows = []
    for i in range(0, len(table), 13):
        first, count, dmin, taps, off = table[i:i + 3], table[i + 3:i + 6], table[i + 6:i + 9], \
            table[i + 9:i + 12], table[i + 12]
        if min(count) > 0:
            rows.append((first, count, dmin, taps, off))
    return padded, rows


def emulate(inp, wflat, bias, table, s_in, s_out, out_shape, sum_phases=False):
    """out [N, Do, Ho, Wo, Co] per the kernel contract, from in [N, Di, Hi, Wi, Cr] (NDHWC); sum_phases:
    every phase adds into the same outputs, tap j reading s_in * (q + j) + dmin."""
    n, co = out_shape[0], out_shape[4]
    cr = inp.shape[4]
    out = torch.full(out_shape, float("nan"), dtype=inp.dtype)
    if sum_phases:
        out.zero_()
    m = 16
    padded, rows = _phases(inp, table, m)
    for first, count, dmin, taps, off in rows:
        acc = torch.zeros((n,) + tuple(count) + (co,), dtype=inp.dtype)
        ntaps = taps[0] * taps[1] * taps[2]
        if ntaps:
            w = wflat[off:off + ntaps * co * cr].view(*taps, co, cr).to(inp.dtype)
            for j in itertools.product(*(range(t) for t in taps)):
                sl = [slice(None)]
                for a in range(3):
                    start = m + dmin[a] + (s_in * j[a] if sum_phases else j[a])
                    sl.append(slice(start, start + s_in * (count[a] - 1) + 1, s_in))
                acc += padded[tuple(sl)] @ w[j].T
        if bias is not None and not sum_phases:
            acc += bias.to(inp.dtype)
        dst = out[:, first[0]::s_out, first[1]::s_out, first[2]::s_out][:, :count[0], :count[1], :count[2]]
        if sum_phases:
            dst += acc
        else:
            dst.copy_(acc)
    if sum_phases and bias is not None:
        out += bias.to(inp.dtype)
    return out


CASES = [(k, s, p, op) for k in (1, 2, 3, 4, 5) for s in (1, 2, 3) for p in range(0, k) for op in range(s)]
SPATIAL = (4, 5, 3)


def _layer(k, s, p, op=0):
    """A 4 -> 8 channel layer on SPATIAL and its float64 weight (skips empty outputs)."""
    torch.manual_seed(0)
    prob = Problem(2, 4, 8, SPATIAL, k, s, p, op)
    if min(prob.out_spatial) <= 0:
        pytest.skip("empty output")
    return prob, torch.randn(4, 8, k, k, k, dtype=torch.float64)


@pytest.mark.parametrize("k,s,p,op", CASES)
def test_forward_plan_reproduces_conv_transpose3d(k, s, p, op):
    prob, w = _layer(k, s, p, op)
    x = torch.randn(2, 4, *SPATIAL, dtype=torch.float64)
    b = torch.randn(8, dtype=torch.float64)
    ref = F.conv_transpose3d(x, w, b, s, p, op)
    table, _ = direct.forward_plan(prob)
    wflat = direct.forward_filter(w, prob, "fp32")
    out = emulate(x.permute(0, 2, 3, 4, 1), wflat, b, table, 1, s, (2,) + prob.out_spatial + (8,))
    assert torch.isfinite(out).all(), "the phases must write every output exactly"
    torch.testing.assert_close(out.permute(0, 4, 1, 2, 3), ref)


def emulate_wfold(inp, wflat, bias, table, s, out_shape, halo_w=16):
    """out [N, Do, Ho, Wo, Co] as the Hopper kernel's w-fold form computes it (csrc/direct_sm90.cuh, WF): per
    phase (d, h) and tile of halo_w input positions along w, the kw partial sums P[u][kw] of every halo
    position, each output of a stored position (u >= R) summed from P[u - r][t + s r]."""
    n, co = out_shape[0], out_shape[4]
    cr = inp.shape[4]
    out = torch.full(out_shape, float("nan"), dtype=inp.dtype)
    m = 16
    padded, rows = _phases(inp, table, m)
    for first, count, dmin, taps, off in rows:
        k = taps[2]
        r_max = (k - 1) // s
        tw = halo_w - r_max
        w = wflat[off:off + taps[0] * taps[1] * k * co * cr].view(*taps, co, cr).to(inp.dtype)
        for q0w in range(0, count[2], tw):
            ix0 = q0w + dmin[2]
            # P[n, qd, qh, u, kw, co]
            part = torch.zeros((n, count[0], count[1], halo_w, k, co), dtype=inp.dtype)
            for jd in range(taps[0]):
                for jh in range(taps[1]):
                    sl = (slice(None), slice(m + dmin[0] + jd, m + dmin[0] + jd + count[0]),
                          slice(m + dmin[1] + jh, m + dmin[1] + jh + count[1]),
                          slice(m + ix0, m + ix0 + halo_w))
                    part += torch.einsum("ndhuc,koc->ndhuko", padded[sl], w[jd, jh])
            for u in range(r_max, halo_w):
                if q0w + u - r_max >= count[2]:
                    break
                for t in range(s):
                    o = s * (ix0 + u) + t + first[2]
                    if not 0 <= o < out_shape[3]:
                        continue
                    acc = sum(part[:, :, :, u - r, t + s * r] for r in range((k - 1 - t) // s + 1)
                              if t + s * r < k)
                    if bias is not None:
                        acc = acc + bias.to(inp.dtype)
                    dst = out[:, first[0]::s, first[1]::s, o][:, :count[0], :count[1]]
                    dst.copy_(acc)
    return out


WFOLD_CASES = ([(k, 2, p, op) for k in (2, 3, 4, 5) for p in range(0, k) for op in range(2)]
               + [(3, 3, 1, 2), (4, 3, 0, 0)])


@pytest.mark.parametrize("k,s,p,op", WFOLD_CASES)
@pytest.mark.parametrize("spatial", [SPATIAL, (3, 2, 20)])
def test_wfold_plan_reproduces_conv_transpose3d(k, s, p, op, spatial):
    """The w-fold rows' plan (direct.forward_plan_wfold, forward_filter(wf=True)) with the kernel's tiles
    along w (16 - R inputs stored per 16-wide halo row, the overlap R) writes every output once, right."""
    torch.manual_seed(0)
    prob = Problem(2, 4, 8, spatial, k, s, p, op)
    if min(prob.out_spatial) <= 0:
        pytest.skip("empty output")
    w = torch.randn(4, 8, k, k, k, dtype=torch.float64)
    x = torch.randn(2, 4, *spatial, dtype=torch.float64)
    b = torch.randn(8, dtype=torch.float64)
    ref = F.conv_transpose3d(x, w, b, s, p, op)
    table, _ = direct.forward_plan_wfold(prob)
    assert len(table) == 13 * s * s
    wflat = direct.forward_filter(w, prob, "fp32", wf=True)
    out = emulate_wfold(x.permute(0, 2, 3, 4, 1), wflat, b, table, s, (2,) + prob.out_spatial + (8,))
    assert torch.isfinite(out).all(), "the tiles must write every output"
    torch.testing.assert_close(out.permute(0, 4, 1, 2, 3), ref)


def test_wfold_rows_take_the_stride2_forwards_they_fold_exactly():
    """The selector's w-fold rule (selector._wfold_wins, as measured in v0.47 and v0.65): stride-2 forwards with
    k = the row's fold, k5 at any C_out and k3 up to 32 output channels, channels_last_3d output, an other pick
    that cannot write NCDHW, or NCDHW rows off 32-byte sectors; never grad_input, unit stride, k2 (a k3 fold
    would idle a third of N) or stride 3."""
    def fwd(prob, out_ncdhw=False):
        return selector.select_config(prob, "dgrad", "tf32", num_sms=132, capability=(9, 0), out_ncdhw=out_ncdhw).name

    assert fwd(Problem(2, 64, 32, (64, 64, 64), 3, 2, 1)) == "wgmma_wf2_tf32_4x8x15_kx3_n32_wg2_s8"
    # NCDHW output: the w fold plus our transpose where rows are off sectors (127 wide), the implicit GEMM's
    # own stores where they start on them (64 wide, output_padding 1); v0.47's rule (H100) under the flag
    assert fwd(Problem(2, 64, 32, (64, 64, 64), 3, 2, 1), True) == "wgmma_wf2_tf32_4x8x15_kx3_n32_wg2_s8"
    assert fwd(Problem(4, 64, 32, (48, 48, 48), 3, 2, 1), True) == "wgmma_wf2_tf32_4x8x15_kx3_n32_wg2_s8"
    assert fwd(Problem(2, 64, 32, (32, 32, 32), 3, 2, 1, 1), True) == "igemm_tf32_1x8x16_n32_s10"
    selector.WFOLD_NCDHW_OFF_SECTORS = False
    try:
        assert fwd(Problem(2, 64, 32, (64, 64, 64), 3, 2, 1), True) == "igemm_tf32_1x8x16_n32_s10"
    finally:
        selector.WFOLD_NCDHW_OFF_SECTORS = True
    assert fwd(Problem(2, 64, 24, (16, 16, 16), 3, 2, 1)) == "wgmma_wf2_tf32_4x8x15_kx3_n32_wg2_s8"
    for c_out in (64, 128):  # the implicit GEMM's 64- and 128-wide N blocks
        assert fwd(Problem(2, 128, c_out, (32, 32, 32), 3, 2, 1)).startswith("igemm")
    for out_ncdhw in (False, True):  # the alternatives (kx3 ws rows) write channels_last_3d at stride 2 too
        assert fwd(Problem(16, 64, 32, (32, 32, 32), 5, 2, 2), out_ncdhw) == "wgmma_wf2_tf32_2x8x14_kx5_n32_wg2_s8"
        assert fwd(Problem(1, 128, 64, (24, 24, 24), 5, 2, 2), out_ncdhw) == "wgmma_wf2_tf32_2x8x14_kx5_n32_wg2_s8"
    selector.WGMMA_WFOLD = False
    try:
        assert fwd(Problem(2, 64, 32, (64, 64, 64), 3, 2, 1)) == "igemm_tf32_1x8x16_n32_s10"
    finally:
        selector.WGMMA_WFOLD = True
    assert "wf" not in fwd(Problem(2, 64, 32, (32, 32, 32), 2, 2, 0))
    assert "wf" not in fwd(Problem(2, 64, 32, (16, 16, 16), 3, 3, 1))
    assert "wf" not in fwd(Problem(2, 64, 32, (16, 16, 16), 3, 1, 1))
    for op in ("fprop", "wgrad"):
        assert "wf" not in selector.select_config(Problem(2, 64, 32, (16, 16, 16), 3, 2, 1), op, "tf32",
                                                  num_sms=132, capability=(9, 0)).name
    wf = BY_NAME["wgmma_wf2_tf32_4x8x15_kx3_n32_wg2_s8"]
    assert wf.serves("dgrad") and not wf.serves("fprop") and wf.block[2] == 15
    assert BY_NAME["wgmma_wf2_tf32_2x8x14_kx5_n32_wg2_s8"].block[2] == 14
    assert not selector.direct_fits(Problem(2, 64, 32, (16, 16, 16), 5, 2, 2), "dgrad", wf)


@pytest.mark.parametrize("k,s,p,op", CASES)
def test_grad_input_plan_reproduces_strided_conv(k, s, p, op):
    prob, w = _layer(k, s, p, op)
    gy = torch.randn(2, 8, *prob.out_spatial, dtype=torch.float64)
    ref = F.conv3d(gy, w, None, s, p)
    assert tuple(ref.shape[2:]) == SPATIAL
    out = emulate(gy.permute(0, 2, 3, 4, 1), direct.grad_input_filter(w, "fp32"), None,
                  direct.grad_input_plan(prob), s, 1, (2,) + SPATIAL + (4,))
    torch.testing.assert_close(out.permute(0, 4, 1, 2, 3), ref)


@pytest.mark.parametrize("k,s,p,op", CASES)
def test_grad_input_parity_plan_reproduces_strided_conv(k, s, p, op):
    """The exact-fp32 rows' grad_input: a sum over grad_y's stride^3 parities, one unit-stride phase each."""
    prob, w = _layer(k, s, p, op)
    gy = torch.randn(2, 8, *prob.out_spatial, dtype=torch.float64)
    ref = F.conv3d(gy, w, None, s, p)
    table = direct.grad_input_parity_plan(prob)
    assert len(table) == 13 * s ** 3
    assert sum(table[i + 9] * table[i + 10] * table[i + 11] for i in range(0, len(table), 13)) == k ** 3
    out = emulate(gy.permute(0, 2, 3, 4, 1), direct.grad_input_parity_filter(w, prob, "fp32"), None, table, s, 1,
                  (2,) + SPATIAL + (4,), sum_phases=True)
    torch.testing.assert_close(out.permute(0, 4, 1, 2, 3), ref)


def test_round_tf32_is_round_to_nearest_on_10_mantissa_bits():
    x = torch.tensor([1.0, 1.0 + 2 ** -11, 1.0 + 2 ** -11 + 2 ** -20, -(1.0 + 3 * 2 ** -11), float("inf"),
                      float("nan"), 0.0])
    r = direct.round_tf32(x)
    assert r[0] == 1.0 and r[1] == 1.0 + 2 ** -10 and r[2] == 1.0 + 2 ** -10 and r[3] == -(1.0 + 2 * 2 ** -10)
    assert torch.isinf(r[4]) and torch.isnan(r[5]) and r[6] == 0
    y = torch.randn(1000)
    assert ((direct.round_tf32(y).view(torch.int32) & 0x1FFF) == 0).all()
    assert ((direct.round_tf32(y) - y).abs() <= y.abs() * 2 ** -11).all()


HEADLINE = Problem(8, 48, 24, (96, 96, 96), 3)


def test_direct_policy_follows_the_measurements():
    wide = Problem(2, 128, 64, (32, 32, 32), 3, 1, 1)
    ampere = dict(capability=(8, 0), smem_limit=166912)
    assert selector.select_config(wide, "dgrad", "tf32", **ampere).family == "cutlass2x"
    assert selector.select_config(wide, "fprop", "tf32", **ampere).family == "cutlass2x"
    # Hopper: the wgmma kernel at unit stride for forwards with C_out <= 128 and grad_input with C_in < 128;
    # the implicit-GEMM rows for grad_input with C_in >= 128 and forwards with C_out > 128 ...
    assert selector.select_config(wide, "dgrad", "tf32").family == "wgmma"
    assert selector.select_config(wide, "fprop", "tf32").family == "igemm"
    wider = Problem(2, 64, 128, (32, 32, 32), 3, 1, 1)
    assert selector.select_config(wider, "dgrad", "tf32").family == "wgmma"
    assert selector.select_config(Problem(2, 64, 256, (16, 16, 16), 3, 1, 1), "dgrad", "tf32").family == "igemm"
    assert selector.select_config(wider, "dgrad", "tf32", **ampere).family == "cutlass2x"
    assert selector.select_config(wider, "fprop", "tf32").family == "wgmma"
    assert selector.select_config(Problem(2, 256, 64, (16, 16, 16), 3, 1, 1), "fprop", "tf32").family == "igemm"
    # ... and for strided layers: forwards with k < 2 * stride, grad_input always; Ampere keeps mma.sync
    # tap reuse for strided forwards and the stock fprop for strided grad_input.
    # (32 output channels, k3: the w fold for channels_last_3d output, and for NCDHW where the output's rows are
    # off 32-byte sectors; the implicit GEMM for NCDHW rows on sectors, which it writes by plain stores)
    assert selector.select_config(Problem(2, 64, 32, (64, 64, 64), 3, 2, 1), "dgrad", "tf32").wf == 2
    assert selector.select_config(Problem(2, 64, 32, (64, 64, 64), 3, 2, 1), "dgrad", "tf32",
                                  out_ncdhw=True).wf == 2
    assert selector.select_config(Problem(2, 64, 32, (32, 32, 32), 3, 2, 1, 1), "dgrad", "tf32",
                                  out_ncdhw=True).family == "igemm"
    assert selector.select_config(Problem(2, 64, 32, (64, 64, 64), 3, 2, 1), "dgrad", "tf32", capability=(8, 0),
                                  smem_limit=166912).family == "direct"
    assert selector.select_config(Problem(16, 128, 64, (16, 16, 16), 3, 2, 1), "dgrad", "tf32").family == "igemm"
    up = Problem(2, 256, 128, (16, 16, 16), 3, 2, 1)
    assert selector.select_config(up, "dgrad", "tf32").name == "igemm_tf32_1x8x16_n128_s6"
    assert selector.select_config(up, "fprop", "tf32").family == "igemm"
    assert selector.select_config(up, "dgrad", "tf32", **ampere).name == "direct_tf32_1x8x16_n64"  # strided: 1x8x16
    assert selector.select_config(up, "fprop", "tf32", **ampere).name == "fprop_tf32_128x64x32_64x32x32_s3"
    # grad_weight: tap reuse at unit stride (on Hopper the warp-specialized rows; since v0.38 k3 with C_in >= 128
    # and C_out >= 64 on the swapped kw fold) and for strided layers with C_in <= 64
    assert selector.select_config(wide, "wgrad", "tf32").name == "igemm_wgrad_tf32_1x4x8_n64_kx3_sw_s4"
    assert selector.select_config(Problem(2, 64, 64, (32, 32, 32), 3, 1, 1), "wgrad", "tf32").family == "wgmma"
    assert selector.select_config(wide, "wgrad", "tf32", **ampere).family == "direct"
    assert selector.select_config(up, "wgrad", "tf32").name == "igemm_wgrad_tf32_1x4x8_n64_kx3_sw_s4"
    assert selector.select_config(up, "wgrad", "tf32", **ampere).family == "cutlass2x"
    assert selector.select_config(Problem(2, 64, 32, (64, 64, 64), 3, 2, 1), "wgrad", "tf32", **ampere).family == "direct"
    # Hopper strided grad_weight needs x rows that fill its 16-wide tile; strided forwards with >= 2 taps
    # per axis in every phase (k >= 2 * stride) stay on the tap-reuse wgmma kernel
    narrow = Problem(16, 256, 128, (8, 8, 8), 3, 2, 1)
    assert selector.select_config(narrow, "wgrad", "tf32", **ampere).family == "cutlass2x"
    assert selector.select_config(narrow, "dgrad", "tf32").name == "igemm_tf32_2x8x8_n128_s6"
    assert selector.select_config(Problem(1, 128, 64, (24, 24, 24), 5, 2, 2), "dgrad", "tf32").family == "wgmma"


def test_even_kernel_and_output_padding_policy(monkeypatch):
    """The sweep's k2 s2 up and output_padding layers (H100 defaults): forward and grad_input on the
    implicit GEMM per tap (the k2 up's NCDHW passes on the patch rows since v0.75); grad_weight where k <=
    stride (nothing to reuse) on the stock wgrad, with output_padding on the Hopper tap-reuse rows as without it."""
    k2 = Problem(2, 64, 32, (32, 32, 32), 2, 2, 0)
    outpad = Problem(2, 64, 32, (32, 32, 32), 3, 2, 1, 1)
    assert selector.select_config(k2, "dgrad", "tf32", out_ncdhw=True).family == "patch"
    monkeypatch.setenv("CONVT3D_PATCH", "0")
    for p in (k2, outpad):
        assert selector.select_config(p, "dgrad", "tf32", out_ncdhw=True).family == "igemm"
        assert selector.select_config(p, "fprop", "tf32").family == "igemm"
    monkeypatch.delenv("CONVT3D_PATCH")
    assert selector.select_config(k2, "dgrad", "tf32").family == "igemm"
    assert selector.select_config(outpad, "dgrad", "tf32").name == "wgmma_wf2_tf32_4x8x15_kx3_n32_wg2_s8"
    assert selector.select_config(k2, "wgrad", "tf32").family == "cutlass2x"
    assert selector.select_config(k2, "wgrad", "tf32", capability=(8, 0), smem_limit=166912).family == "cutlass2x"
    assert selector.select_config(outpad, "wgrad", "tf32") == selector.select_config(
        Problem(2, 64, 32, (32, 32, 32), 3, 2, 1), "wgrad", "tf32")


def test_wgmma_wgrad_block_width():
    """Hopper grad_weight's C_in blocks: an extra block counts as WGMMA_WGRAD_BLOCK_CHANNELS channels, so
    C_in 128 takes three 48-wide blocks (one a third idle) over four 32-wide ones (v0.37: 0.174 against
    0.192 ms on medium); C_in 48 one 48-wide block, C_in 64 two 32-wide ones."""
    medium = Problem(2, 128, 64, (32, 32, 32), 3, 1, 1)
    video = Problem(4, 64, 32, (16, 64, 64), 3, 1, 1)
    hopper = [k.name for k in KERNELS if "_sw_" not in k.name]  # medium's tf32 takes the swapped kw fold (v0.38)
    assert selector.select_config(medium, "wgrad", "tf32", compiled=hopper).name == \
        "wgmma_wgrad_tf32_8x16_k3_n48_wg4_s2"
    assert selector.select_config(medium, "wgrad", "3xtf32").name == "wgmma_wgrad_3xtf32_8x16_k3_n48_wg2_s2"
    assert selector.select_config(HEADLINE, "wgrad", "tf32").name == "wgmma_wgrad_tf32_8x16_k3_n48_wg4_s2"
    assert selector.select_config(video, "wgrad", "tf32").name == "wgmma_wgrad_tf32_8x16_k3_n32_wg4_s2"
    # at the other families' 8 channels per block, C_in 128 would take the 32-wide blocks
    old = selector.WGMMA_WGRAD_BLOCK_CHANNELS
    try:
        selector.WGMMA_WGRAD_BLOCK_CHANNELS = 8
        assert selector.select_config(medium, "wgrad", "tf32", compiled=hopper).name == \
            "wgmma_wgrad_tf32_8x16_k3_n32_wg4_s2"
    finally:
        selector.WGMMA_WGRAD_BLOCK_CHANNELS = old


def test_igemm_wgrad_policy():
    """Strided grad_weight with C_in >= 128 and C_out >= 64 on the implicit-GEMM rows (tf32, Hopper): k = 3
    and k = 5 on the swapped kw-fold rows (the plain kw fold, or per tap at k = 5, where they are not
    built), other filter sizes per tap
    with the N block by C_out; the 32-position box by the volume's width; 64->32 layers, 3xtf32 and Ampere
    keep the other kernels. Unit stride: the swapped kw fold, then the warp-specialized tap reuse, then the
    plain kw fold."""
    cases = {Problem(16, 256, 128, (8, 8, 8), 3, 2, 1): "igemm_wgrad_tf32_1x4x8_n64_kx3_sw_s4",
             Problem(16, 128, 64, (16, 16, 16), 3, 2, 1): "igemm_wgrad_tf32_1x4x8_n64_kx3_sw_s4",
             Problem(2, 256, 128, (16, 16, 16), 3, 3, 1, 2): "igemm_wgrad_tf32_1x4x8_n64_kx3_sw_s4",
             Problem(1, 128, 64, (24, 24, 24), 5, 2, 2): "igemm_wgrad_tf32_1x4x8_n32_kx5_sw_s4",
             Problem(2, 256, 128, (16, 16, 16), 2, 2, 0): "igemm_wgrad_tf32_1x4x8_n128_s4"}
    for prob, name in cases.items():
        assert selector.select_config(prob, "wgrad", "tf32").name == name
        assert selector.select_config(prob, "wgrad", "3xtf32").family != "igemm"
        assert selector.select_config(prob, "wgrad", "tf32", capability=(8, 0), smem_limit=166912).family != "igemm"
    assert selector.select_config(Problem(2, 64, 32, (64, 64, 64), 3, 2, 1), "wgrad", "tf32").family == "wgmma"
    unswapped = [k.name for k in KERNELS if "_sw_" not in k.name]
    for prob in cases:
        if prob.k == 3:
            assert selector.select_config(prob, "wgrad", "tf32", compiled=unswapped).name == \
                "igemm_wgrad_tf32_1x4x8_n64_kx3_s3"
        if prob.k == 5:  # no unswapped k5 fold: per tap
            assert selector.select_config(prob, "wgrad", "tf32", compiled=unswapped).name == \
                "igemm_wgrad_tf32_1x4x8_n64_s6"
    # unit stride: the swapped kw fold (v0.38: medium 0.160 ms against 0.175 on the n48 tap-reuse row), then
    # the warp-specialized tap-reuse rows (v0.37: 0.174 against 0.227 on the plain kw fold), then the plain
    # kw fold where those do not fit
    medium = Problem(2, 128, 64, (32, 32, 32), 3, 1, 1)
    assert selector.select_config(medium, "wgrad", "tf32").name == "igemm_wgrad_tf32_1x4x8_n64_kx3_sw_s4"
    assert selector.select_config(medium, "wgrad", "tf32", compiled=unswapped).name == \
        "wgmma_wgrad_tf32_8x16_k3_n48_wg4_s2"
    without = [k.name for k in KERNELS if not k.name.startswith("wgmma_wgrad_tf32") and "_sw_" not in k.name]
    assert selector.select_config(medium, "wgrad", "tf32", compiled=without).name == \
        "igemm_wgrad_tf32_1x4x8_n64_kx3_s3"
    assert selector.select_config(Problem(1, 128, 64, (24, 24, 24), 5, 1, 2), "wgrad", "tf32").family == "wgmma"
    wide = Problem(2, 256, 128, (16, 16, 40), 3, 2, 1)  # 40 wide: the 8-wide box wastes nothing, 16 wastes 8
    assert selector.select_config(wide, "wgrad", "tf32").block == (1, 4, 8)


def test_3xtf32_long_reductions_avoid_the_split_tap_reuse_rows():
    """3xtf32 forwards and grad_inputs whose reduction per output exceeds SPLIT_WS_MAX_REDUCTION leave the
    split ws rows (1.5e-5 error measured at 6912) for the per-tap promoting igemm rows or, where those
    cannot run, the stock kernels; the headline (1296 and 648) keeps them."""
    assert direct.reduction_length(HEADLINE, "dgrad") == 1296 and direct.reduction_length(HEADLINE, "fprop") == 648
    assert direct.reduction_length(Problem(2, 64, 32, (8, 8, 8), 3, 2, 1), "dgrad") == 64 * 8
    assert direct.reduction_length(Problem(2, 64, 32, (8, 8, 8), 3, 2, 1), "fprop") == 32 * 27
    long = Problem(2, 256, 32, (16, 16, 16), 3, 1, 1)  # 6912 products per forward output, 32 channels out
    assert selector.select_config(long, "dgrad", "tf32").family == "wgmma"
    k = selector.select_config(long, "dgrad", "3xtf32")
    assert not (k.family == "wgmma" and k.split) and k.family == "igemm"
    without = [c.name for c in KERNELS if c.family != "igemm"]
    assert selector.select_config(long, "dgrad", "3xtf32", compiled=without).family == "cutlass2x"
    assert selector.select_config(HEADLINE, "dgrad", "3xtf32").name == "wgmma_ws_3xtf32_4x8x14_kx3_n24_wg2_s8"


def test_igemm_choice_follows_its_cost_model():
    """Tile shape, N block and waves as measured (docs/performance.md v0.9): 8-wide phases take the
    2x8x8 tile; 64 output channels the 64-wide N block, 128 the 128-wide one; V-Net's grad_input (24^3)
    fits one wave in 2x8x8 tiles (108 units) but not in 1x8x16 (144 on 132 SMs). tf32 and 3xtf32 (its
    64-wide rows); never exact fp32, never on Ampere."""
    vnet = Problem(1, 128, 64, (24, 24, 24), 5, 2, 2)
    assert selector.select_config(vnet, "fprop", "tf32").name == "igemm_tf32_2x8x8_n128_s6"
    g2 = Problem(16, 128, 64, (16, 16, 16), 3, 2, 1)
    assert selector.select_config(g2, "dgrad", "tf32").name == "igemm_tf32_1x8x16_n64_s8"
    assert selector.select_config(g2, "fprop", "tf32").name == "igemm_tf32_1x8x16_n128_s6"
    # Where the cost ties the two tile shapes, tf32 grad_input takes 2x8x8 from a reduction of
    # IGEMM_DEEP_TILE_MIN_REDUCTION (k^3 C_out) on (v0.65): U-Net 256->128 (3456) and 3D-GAN 64->32 (k5, 4000),
    # not U-Net 128->64 (1728); 3xtf32 keeps the table's order.
    dec1, dec2, g3 = (Problem(2, 256, 128, (16, 16, 16), 3, 2, 1), Problem(2, 128, 64, (32, 32, 32), 3, 2, 1),
                      Problem(16, 64, 32, (32, 32, 32), 5, 2, 2))
    assert selector.select_config(dec1, "fprop", "tf32").name == "igemm_tf32_2x8x8_n128_s6"
    assert selector.select_config(g3, "fprop", "tf32").name == "igemm_tf32_2x8x8_n64_s8"
    assert selector.select_config(dec2, "fprop", "tf32").name == "igemm_tf32_1x8x16_n128_s6"
    assert selector.select_config(dec1, "fprop", "3xtf32").name == "igemm_3xtf32_1x8x16_n64_s6"
    deep = selector.IGEMM_DEEP_TILE_MIN_REDUCTION
    selector.IGEMM_DEEP_TILE_MIN_REDUCTION = 0
    try:
        assert selector.select_config(dec1, "fprop", "tf32").name == "igemm_tf32_1x8x16_n128_s6"
    finally:
        selector.IGEMM_DEEP_TILE_MIN_REDUCTION = deep
    table = direct.forward_plan(g2)[0]
    cost = {bn: direct.igemm_cost(table, g2.n, 128, 64, (1, 8, 16), bn, 132) for bn in (64, 128)}
    assert cost[64] < cost[128]
    # Every stride phase's taps counted once: one unit per CTA when units <= SMs.
    one = Problem(1, 32, 128, (8, 8, 16), 3, 1, 1)
    assert direct.igemm_cost(direct.grad_input_plan(one), 1, 128, 32, (1, 8, 16), 128, 132) == (27 * 4 + 1) * 192
    assert selector.select_config(g2, "dgrad", "3xtf32").name == "igemm_3xtf32_1x8x16_n64_s6"
    # 32 output channels: the 32-wide 3xtf32 row (v0.41: forwards 1.18-1.25x over the half-padded 64-wide one);
    # grad_input of the same layer (64 input channels) keeps the 64-wide row
    dec3 = Problem(2, 64, 32, (64, 64, 64), 3, 2, 1)
    assert selector.select_config(dec3, "dgrad", "3xtf32").name == "igemm_3xtf32_1x8x16_n32_s9"
    assert selector.select_config(dec3, "fprop", "3xtf32").name == "igemm_3xtf32_1x8x16_n64_s6"
    assert selector.select_config(g2, "dgrad", "fp32").family != "igemm"
    # 3xtf32: 64 output channels and more at any stride and filter size, 32 when strided; narrower
    # layers (the headline's 24 and 48) keep the split tap-reuse rows.
    medium = Problem(2, 128, 64, (32, 32, 32), 3, 1, 1)
    assert selector.select_config(medium, "dgrad", "3xtf32").family == "igemm"
    assert selector.select_config(vnet, "dgrad", "3xtf32").name == "igemm_3xtf32_2x8x8_n64_s6"
    assert selector.select_config(Problem(4, 64, 32, (48, 48, 48), 3, 2, 1), "dgrad", "3xtf32").family == "igemm"
    assert selector.select_config(Problem(4, 64, 32, (16, 64, 64), 3, 1, 1), "dgrad", "3xtf32").family == "wgmma"
    assert selector.select_config(medium, "dgrad", "tf32").family == "wgmma"
    assert not selector.igemm_wins(Problem(2, 128, 16, (16, 16, 16), 3, 2, 1), "dgrad")  # 16 < 32 channels
    assert not selector.igemm_wins(HEADLINE, "fprop") and not selector.igemm_wins(HEADLINE, "dgrad")
    # A build without the rows falls back to the measured choice before them.
    compiled = [k.name for k in KERNELS if k.family != "igemm"]
    assert selector.select_config(g2, "dgrad", "tf32", compiled=compiled).family == "direct"


def test_igemm_cost_of_the_walk_by_groups():
    """A strided forward whose groups (sample, tile, C_out block) fill the grid is walked by groups, all
    phases of a group in a row: the busiest CTA runs ceil(groups / SMs) groups of every phase's taps.
    Fewer groups than SMs, or one phase, keep the round robin over units."""
    dec3 = Problem(2, 64, 32, (64, 64, 64), 3, 2, 1)
    table = direct.forward_plan(dec3)[0]
    groups = direct.igemm_groups(table, 2, 32, (1, 8, 16), 32)
    assert groups == 2 * 64 * 8 * 4  # 64 planes x 8 row blocks x 4 column blocks per sample
    assert direct.igemm_walks_groups(table, 2, 32, (1, 8, 16), 32, 132)
    taps = [r[9] * r[10] * r[11] for r in (table[i:i + 13] for i in range(0, len(table), 13))]
    assert sorted(taps) == [1, 2, 2, 2, 4, 4, 4, 8]
    chunks = 2
    assert direct.igemm_cost(table, 2, 64, 32, (1, 8, 16), 32, 132) == \
        -(-groups // 132) * sum((t * chunks + 1) * (32 + 64) for t in taps)
    # 64 groups on 132 SMs: the round robin over the 512 units
    dec1 = Problem(2, 256, 128, (16, 16, 16), 3, 2, 1)
    t1 = direct.forward_plan(dec1)[0]
    assert direct.igemm_groups(t1, 2, 128, (1, 8, 16), 128) == 64
    assert not direct.igemm_walks_groups(t1, 2, 128, (1, 8, 16), 128, 132)
    # one phase (grad_input, unit-stride forward): never by groups
    one = direct.grad_input_plan(Problem(8, 64, 32, (32, 32, 32), 3, 1, 1))
    assert not direct.igemm_walks_groups(one, 8, 32, (1, 8, 16), 32, 132)


def test_selector_takes_direct_for_tf32_and_hopper_3xtf32():
    ampere = dict(capability=(8, 0), smem_limit=166912)
    for op in ("dgrad", "fprop"):
        k = selector.select_config(HEADLINE, op, "tf32")
        assert k.tap_reuse and k.precision == "tf32" and k.serves(op)
        # 3xtf32 on tap reuse: the warp-specialized Hopper kernel only (its split form)
        k3 = selector.select_config(HEADLINE, op, "3xtf32")
        assert k3.split and k3.ws and k3.name == "wgmma_ws_3xtf32_4x8x14_kx3_n24_wg2_s8"
        assert selector.select_config(HEADLINE, op, "3xtf32", **ampere).family == "cutlass2x"
    assert selector.select_config(HEADLINE, "dgrad", "tf32", **ampere).name == "direct_tf32_4x8x16_n24"
    assert selector.select_config(HEADLINE, "fprop", "tf32", **ampere).name == "direct_tf32_4x8x16_n24"
    # The warp-specialized rows come first; the others remain for layers whose stages do not fit them.
    assert selector.select_config(HEADLINE, "dgrad", "tf32").name == "wgmma_ws_tf32_4x8x14_kx3_n24_wg2_s8"
    assert selector.select_config(HEADLINE, "fprop", "tf32").name == "wgmma_ws_tf32_2x8x14_kx3_n48_wg2_s8"
    # The k3 RS twins (rs_ncdhw) take the forward only where x is NCDHW (the output wanted NCDHW with it).
    assert selector.select_config(HEADLINE, "dgrad", "tf32", out_ncdhw=True).name == \
        "wgmma_rs_tf32_4x8x14_kx3_n24_wg2_s8"
    assert selector.select_config(HEADLINE, "fprop", "tf32", out_ncdhw=True).name == \
        "wgmma_ws_tf32_2x8x14_kx3_n48_wg2_s8"
    wide = Problem(2, 128, 24, (16, 16, 16), 3, 1, 1)  # the filter is not resident: no NCDHW read, no twin
    assert not direct._reads_ncdhw_fits(BY_NAME["wgmma_rs_tf32_4x8x14_kx3_n24_wg2_s8"],
                                        tuple(direct.forward_plan(wide)[0]), 128)
    assert selector.select_config(wide, "dgrad", "tf32", out_ncdhw=True).name == "wgmma_ws_tf32_4x8x14_kx3_n24_wg2_s8"
    assert selector.select_config(Problem(2, 48, 24, (16, 16, 18), 3), "dgrad", "tf32", out_ncdhw=True).name == \
        "wgmma_ws_tf32_4x8x14_kx3_n24_wg2_s8"  # W = 18: TMA's 16-byte row strides rule out the NCDHW read
    head = Problem(1, 32, 8, (128, 128, 128), 3, 1, 1)
    assert selector.select_config(head, "dgrad", "tf32").name == "wgmma_ws_tf32_4x8x14_kx3_n8_wg2_s8"
    assert selector.select_config(head, "dgrad", "tf32", out_ncdhw=True).name == "wgmma_rs_tf32_4x8x14_kx3_n8_wg2_s8"
    # 9-16 output channels keep the n16 rows (an n8 row would take two N tiles, each re-staging the halo)
    wider = Problem(1, 32, 12, (128, 128, 128), 3, 1, 1)
    assert selector.select_config(wider, "dgrad", "tf32").name == "wgmma_ws_tf32_4x8x14_kx3_n16_wg2_s8"
    assert selector.select_config(wider, "dgrad", "fp32").name == "direct_fp32_8x8x16_n16_m8"
    assert selector.select_config(head, "dgrad", "fp32").name == "direct_fp32_8x8x16_n8_m8"
    # k5 at unit stride: the RS twin of the k5 row (selector.WGMMA_RS_TWINS); strided k5 phases (1-3 taps
    # per axis) and k3 on the k5 row keep the ws row.
    refine = Problem(1, 32, 16, (64, 64, 64), 5, 1, 2)
    for op in ("dgrad", "fprop"):
        assert selector.select_config(refine, op, "tf32").name == "wgmma_rs_tf32_4x8x12_kx5_n16_wg2_s8"
    rs = BY_NAME["wgmma_rs_tf32_4x8x12_kx5_n16_wg2_s8"]
    assert not selector.direct_fits(Problem(1, 32, 16, (16, 16, 16), 5, 2, 2), "dgrad", rs)
    assert not selector.direct_fits(Problem(1, 32, 16, (16, 16, 16), 3, 1, 1), "dgrad", rs)
    saved = selector.WGMMA_RS_TWINS
    try:
        selector.WGMMA_RS_TWINS = False
        assert selector.select_config(refine, "dgrad", "tf32").name == "wgmma_ws_tf32_4x8x12_kx5_n16_wg2_s8"
    finally:
        selector.WGMMA_RS_TWINS = saved
    # exact fp32: the FFMA tap-reuse rows, on any arch; the stock SIMT kernel where forced to the family
    for op, name in (("dgrad", "direct_fp32_8x8x16_n24_m8"), ("fprop", "direct_fp32_4x8x16_n48_m4")):
        assert selector.select_config(HEADLINE, op, "fp32").name == name
        assert selector.select_config(HEADLINE, op, "fp32", **ampere).name == name
    assert selector.select_config(HEADLINE, "dgrad", "fp32", family="cutlass2x").family == "cutlass2x"
    assert selector.select_config(HEADLINE, "wgrad", "fp32").name == "direct_wgrad_fp32_4x16_m48n24"
    assert selector.select_config(Problem(1, 32, 16, (64, 64, 64), 5, 1, 2), "wgrad", "fp32").family == "ffma"
    assert selector.select_config(HEADLINE, "wgrad", "tf32").name == "wgmma_wgrad_tf32_8x16_k3_n48_wg4_s2"
    assert selector.select_config(HEADLINE, "wgrad", "tf32", **ampere).name == "direct_wgrad_tf32_8x16_m48n24"
    assert selector.select_config(HEADLINE, "wgrad", "3xtf32").name == "wgmma_wgrad_3xtf32_8x16_k3_n48_wg2_s2"
    assert selector.select_config(HEADLINE, "wgrad", "3xtf32", **ampere).family == "cutlass2x"
    k5 = Problem(1, 32, 16, (64, 64, 64), 5, 1, 2)  # no 3xtf32 split row for k5 (registers)
    assert selector.select_config(k5, "wgrad", "3xtf32").family == "cutlass2x"
    assert selector.select_config(k5, "wgrad", "tf32").family == "wgmma"
    # k5 at stride 2 (3D-GAN 64->32): the 4x16 k5 row, whose halo ring fits where the 8x16 one's does not, at
    # three stages (v0.46)
    g3 = Problem(16, 64, 32, (32, 32, 32), 5, 2, 2)
    assert selector.select_config(g3, "wgrad", "tf32").name == "wgmma_wgrad_tf32_4x16_k5_n32_wg4_s3"
    assert not selector.wgmma_wgrad_fits(g3, BY_NAME["wgmma_wgrad_tf32_8x16_k5_n32_wg4_s2"])
    assert selector.select_config(HEADLINE, "dgrad", "tf32", family="cutlass2x").family == "cutlass2x"


@pytest.mark.parametrize("k,s,p", [(3, 1, 1), (3, 2, 1), (5, 1, 2), (5, 2, 2), (7, 1, 3), (3, 3, 1)])
@pytest.mark.parametrize("c_in,c_out", [(8, 8), (64, 32), (256, 128), (32, 8)])
def test_direct_choices_fit_shared_memory_or_fall_back(k, s, p, c_in, c_out):
    prob = Problem(2, c_in, c_out, (16, 16, 16), k, s, p)
    for op, prec in itertools.product(("dgrad", "fprop"), ("tf32", "fp32")):
        for limit in (selector.DEFAULT_SMEM, 166912):
            cfg = selector.select_config(prob, op, prec, smem_limit=limit)
            if cfg.family == "direct":
                table, s_in, sums = direct.pass_plan(cfg, prob, op)
                assert sums == (cfg.simt and op == "fprop" and s > 1)
                assert direct.smem_bytes(cfg.block, cfg.bn, s_in, table, sums, cfg.kc) <= limit
            elif cfg.family == "wgmma":
                table, s_in, _ = selector.direct_plan(prob, op)
                c_r = c_in if op == "dgrad" else c_out
                need = direct.wgmma_smem_bytes(cfg.block, cfg.kx, cfg.bn, cfg.warpgroups, cfg.stages, table, c_r, cfg.ws,
                                               cfg.split)
                assert s_in == 1 and need is not None and need <= limit
            elif cfg.family == "igemm":
                assert selector.direct_plan(prob, op)[1] <= 8
                assert direct.igemm_smem_bytes(cfg.bn, cfg.stages, cfg.split) <= limit
            else:
                assert cfg.op == op


def test_unaligned_channels_and_big_strides_skip_direct():
    assert selector.select_config(Problem(1, 6, 8, (8, 8, 8), 3), "dgrad", "tf32").family == "cutlass2x"
    assert selector.select_config(Problem(1, 8, 8, (8, 8, 8), 5, 5, 0), "dgrad", "tf32").family == "cutlass2x"


def test_forced_direct_config_serves_both_passes_and_is_checked():
    name = "direct_tf32_1x8x16_n32"
    assert selector.select_config(HEADLINE, "dgrad", "tf32", config=name).name == name
    assert selector.select_config(HEADLINE, "fprop", "tf32", config=name).name == name
    assert selector.select_config(HEADLINE, "wgrad", "tf32", config=name).op == "wgrad"  # not name
    wname = "direct_wgrad_tf32_8x16_m64n32"
    assert selector.select_config(HEADLINE, "wgrad", "tf32", config=wname).name == wname
    assert selector.select_config(HEADLINE, "dgrad", "tf32", config=wname).name != wname
    big = Problem(1, 8, 64, (8, 8, 8), 7, 1, 3)  # 343 taps x 64 channels: no shared memory for it
    with pytest.raises(ValueError, match="cannot run"):
        selector.select_config(big, "dgrad", "tf32", config="direct_tf32_2x8x16_n64")
    hopper = "wgmma_tf32_4x8x14_kx3_n24_wg4_s3"
    assert selector.select_config(HEADLINE, "dgrad", "tf32", config=hopper).name == hopper
    with pytest.raises(ValueError, match="cannot run"):  # sm_90a code on an Ampere GPU
        selector.select_config(HEADLINE, "dgrad", "tf32", config=hopper, capability=(8, 0))
    with pytest.raises(ValueError, match="cannot run"):  # 5 taps along w, the fold holds 3
        selector.select_config(Problem(1, 8, 8, (8, 8, 8), 5, 1, 2), "dgrad", "tf32", config=hopper)
    with pytest.raises(ValueError, match="cannot run"):  # strided grad_input: input stride 2
        selector.select_config(Problem(1, 8, 8, (8, 8, 8), 3, 2, 1), "fprop", "tf32", config=hopper)
    assert BY_NAME[name].serves("fprop") and not BY_NAME[name].serves("wgrad")


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 7])
def test_wgrad_tap_groups_cover_every_tap_with_at_most_16_warps(k):
    per, groups = direct.wgrad_tap_groups(k)
    assert per <= direct.WGRAD_MAX_WARPS and per * groups >= k * k and per * (groups - 1) < k * k


@pytest.mark.parametrize("c_in,c_out", [(48, 24), (256, 128), (32, 8), (64, 32), (8, 8), (12, 20)])
@pytest.mark.parametrize("k,s,p", [(3, 1, 1), (3, 2, 1), (5, 2, 2), (7, 1, 3)])
def test_direct_wgrad_choice_fits_and_slices_are_sane(c_in, c_out, k, s, p):
    prob = Problem(2, c_in, c_out, (16, 16, 16), k, s, p)
    for limit in (selector.DEFAULT_SMEM, 166912):
        cfg = selector.select_config(prob, "wgrad", "tf32", smem_limit=limit)
        if cfg.family != "direct":
            assert cfg.op == "wgrad"
            continue
        assert direct.wgrad_smem_bytes(cfg.block, cfg.tile[0], cfg.tile[1], k, s) <= limit
        slices = direct.wgrad_slices(prob, cfg.block, cfg.tile[0], cfg.tile[1], 132)
        assert 1 <= slices <= direct.wgrad_tiles(prob, cfg.block)


def test_wgmma_wgrad_layout_and_slices():
    """Hopper grad_weight sizing: C_out blocks fill the 64-row M tiles, the halo pitch spreads a quad's
    A loads over banks (stride * pitch = 8 or 24 mod 32), slices are whole columns of x tiles times
    depth segments within the partial-sum budget, and the selector's rows fit shared memory."""
    from convt3d_cutlass.kernel_table import BY_NAME
    k48 = BY_NAME["wgmma_wgrad_tf32_8x16_k3_n48_wg4_s2"]
    assert direct.wgmma_wgrad_layout(HEADLINE, k48.block, 4, 2) == (24, 24, 10, 18, 17280, 4)
    assert direct.wgmma_wgrad_smem_bytes(HEADLINE, k48.block, 48, 4, 2) == 193080
    # 9 x 24 rows per kd padded to 224: 11 M tiles, within 4 warpgroups' 3 each (the kernel's
    # warp-specialized form runs them as 4, 4, 3 on three MMA warpgroups beside a producer).
    assert direct.wgmma_wgrad_tiles(HEADLINE, k48.block, 4, 2) == (224, 11)
    columns = 8 * 12 * 6
    # The warp-specialized form: one wave of ranges over all 576 x 96 (column, plane) pairs, 419 planes
    # each across up to 6 columns, against whole depth segments (2 per column: 1152 slices in 8.7 waves).
    assert direct.wgmma_wgrad_pw(3, 1, 4, 2, False) and not direct.wgmma_wgrad_pw(3, 1, 2, 2, True)
    assert direct.wgmma_wgrad_slices(HEADLINE, k48.block, 48, 4, 2, 132) == 132
    assert direct.wgmma_wgrad_slices(HEADLINE, k48.block, 48, 4, 2, 132, max_partial_bytes=1) == 132
    assert direct.wgmma_wgrad_slices(HEADLINE, k48.block, 48, 4, 2, 132, ranges=False) == 2 * columns
    assert direct.wgmma_wgrad_slices(HEADLINE, k48.block, 48, 4, 2, 132, ranges=False,
                                     max_partial_bytes=1) == columns
    assert direct.wgmma_wgrad_slices(HEADLINE, k48.block, 48, 2, 2, 132, split=True) % columns == 0
    for c_out in (4, 8, 12, 24, 40, 64, 76, 128, 200):
        for k, s in ((3, 1), (3, 2), (5, 1), (5, 2)):
            p = Problem(2, 32, c_out, (9, 20, 33), k, s, k // 2)
            for row in (k48, BY_NAME["wgmma_wgrad_tf32_4x16_k3_n32_wg4_s2"]):
                lay = direct.wgmma_wgrad_layout(p, row.block, row.warpgroups, row.stages)
                cb, pitch = lay[:2]
                assert k * k * cb <= 64 * row.warpgroups and cb % 4 == 0 and -(-c_out // cb) * cb >= c_out
                assert pitch >= cb and (s * pitch) % 32 in (8, 24)
                cols = 2 * -(-20 // row.block[1]) * -(-33 // row.block[2])
                slices = direct.wgmma_wgrad_slices(p, row.block, row.bn, row.warpgroups, row.stages, 132)
                if direct.wgmma_wgrad_pw(k, s, row.warpgroups, row.stages, row.split):
                    assert 1 <= slices <= cols * 9
                else:
                    assert slices % cols == 0 and 1 <= slices // cols <= 9
            cfg = selector.select_config(p, "wgrad", "tf32")
            if cfg.family == "wgmma":
                assert selector.wgmma_wgrad_fits(p, cfg) and cfg.ksize == k


def test_wgmma_wgrad_three_stages_strided_only():
    """The three-stage grad_weight row (TMA two steps ahead): two x^T buffers and four done barriers in
    its shared memory, the warp-specialized form, taken at stride > 1 where its deeper ring fits (else its
    two-stage twin) and never at unit stride, where it measured slower."""
    from convt3d_cutlass.kernel_table import BY_NAME
    s3, s2 = BY_NAME["wgmma_wgrad_tf32_4x16_k3_n32_wg4_s3"], BY_NAME["wgmma_wgrad_tf32_4x16_k3_n32_wg4_s2"]
    dec3 = Problem(2, 64, 32, (64, 64, 64), 3, 2, 1)
    x_bytes = 4 * 16 * 32 * 4
    lay3 = direct.wgmma_wgrad_layout(dec3, s3.block, 4, 3)
    assert lay3[5] == 3 + 2 * 2 and direct.wgmma_wgrad_layout(dec3, s2.block, 4, 2)[5] == 3 + 2
    assert direct.wgmma_wgrad_smem_bytes(dec3, s3.block, 32, 4, 3) == 1024 + 5 * x_bytes + 7 * lay3[4] + 9 * 8
    # Three stages always run the warp-specialized form, k5 strided too (its two-stage row runs the plain one).
    assert direct.wgmma_wgrad_pw(3, 2, 4, 3, False) and direct.wgmma_wgrad_pw(5, 2, 4, 3, False)
    assert not direct.wgmma_wgrad_pw(5, 2, 4, 2, False) and not direct.wgmma_wgrad_pw(3, 2, 2, 3, True)
    assert selector.select_config(dec3, "wgrad", "tf32", capability=(9, 0)).name == s3.name
    assert selector.select_config(dec3, "wgrad", "3xtf32", capability=(9, 0)).stages == 2
    gan3 = Problem(16, 64, 32, (32, 32, 32), 5, 2, 2)
    assert selector.select_config(gan3, "wgrad", "tf32", capability=(9, 0)).name == "wgmma_wgrad_tf32_4x16_k5_n32_wg4_s3"
    refine = Problem(1, 32, 16, (64, 64, 64), 5, 1, 2)
    assert selector.select_config(refine, "wgrad", "tf32", capability=(9, 0)).stages == 2
    for c_out, k in ((4, 3), (8, 3), (12, 3), (24, 3), (28, 3), (32, 3), (64, 3), (128, 3), (8, 5), (32, 5)):
        for s in (1, 2, 3):
            p = Problem(2, 32, c_out, (9, 20, 33), k, s, k // 2)
            cfg = selector.select_config(p, "wgrad", "tf32", capability=(9, 0))
            if cfg.family != "wgmma":
                continue
            assert cfg.stages == 2 or s > 1
            twin = BY_NAME.get(cfg.name[:-3] + "_s3") if cfg.name.endswith("_s2") else None
            if s > 1 and twin is not None:
                assert not selector.wgmma_wgrad_fits(p, twin)  # the twin only where three stages do not fit


def test_ws_filter_modes_both_run_in_the_gpu_config_test():
    # test_gpu_direct.test_direct_config_forward_and_grad_input's problem: the 64-wide warp-specialized
    # row keeps the filter resident for the forward (12 channels) and stages it per chunk for
    # grad_input (40), so the GPU test runs both modes of the kernel.
    p = Problem(2, 12, 40, (5, 11, 19), 3, 1, 1)
    row = BY_NAME["wgmma_ws_tf32_2x8x14_kx3_n64_wg2_s8"]
    assert direct.wgmma_ws_resident(row.block, row.kx, row.bn, row.stages, direct.forward_plan(p)[0], p.c_in)
    assert not direct.wgmma_ws_resident(row.block, row.kx, row.bn, row.stages, direct.grad_input_plan(p), p.c_out)
    # The headline's selected rows keep it resident (forward: 4x8 n24; grad_input: 2x8 n48).
    r = BY_NAME["wgmma_ws_tf32_4x8x14_kx3_n24_wg2_s8"]
    assert direct.wgmma_ws_resident(r.block, r.kx, r.bn, r.stages, direct.forward_plan(HEADLINE)[0], 48)
    r = BY_NAME["wgmma_ws_tf32_2x8x14_kx3_n48_wg2_s8"]
    assert direct.wgmma_ws_resident(r.block, r.kx, r.bn, r.stages, direct.grad_input_plan(HEADLINE), 24)


def test_wgmma_wgrad_reads_ncdhw_policy():
    """The Hopper grad_weight reads x in place only when it is packed NCDHW with W % 4 == 0; a
    channels_last_3d x (no copy to save) and the mma.sync rows keep the NDHWC path."""
    import torch
    from convt3d_cutlass.kernel_table import DIRECT_WGRAD_KERNELS, WGMMA_WGRAD_KERNELS
    for row in WGMMA_WGRAD_KERNELS:
        assert direct.wgrad_reads_ncdhw(row, torch.empty(2, 8, 3, 5, 12))
        assert not direct.wgrad_reads_ncdhw(row, torch.empty(2, 8, 3, 5, 10))
        assert not direct.wgrad_reads_ncdhw(row, torch.empty(2, 8, 3, 5, 12).to(
            memory_format=torch.channels_last_3d))
        assert not direct.wgrad_reads_ncdhw(row, torch.empty(2, 8, 3, 5, 24)[..., :12])
    assert not direct.wgrad_reads_ncdhw(DIRECT_WGRAD_KERNELS[0], torch.empty(2, 8, 3, 5, 12))


def test_igemm_wgrad_swap_reads_ncdhw_policy(monkeypatch):
    """The swapped implicit-GEMM grad_weight rows take a packed NCDHW x with W % 4 == 0 by TMA (x^T needs no
    transpose then); a channels_last_3d or strided x, W % 4 != 0, the unswapped rows and the knob off keep
    the channels_last_3d copy."""
    import torch
    from convt3d_cutlass.kernel_table import KERNELS
    swapped = [r for r in KERNELS if r.family == "igemm" and r.op == "wgrad" and r.swap]
    plain = [r for r in KERNELS if r.family == "igemm" and r.op == "wgrad" and not r.swap]
    assert swapped and plain
    for row in swapped:
        assert row.block[2] in (8, 16)
        assert direct.wgrad_reads_ncdhw(row, torch.empty(2, 8, 3, 5, 12))
        assert not direct.wgrad_reads_ncdhw(row, torch.empty(2, 8, 3, 5, 10))
        assert not direct.wgrad_reads_ncdhw(row, torch.empty(2, 8, 3, 5, 12).to(
            memory_format=torch.channels_last_3d))
        assert not direct.wgrad_reads_ncdhw(row, torch.empty(2, 8, 3, 5, 24)[..., :12])
        monkeypatch.setattr(direct, "IGEMM_WGRAD_NCDHW_X", False)
        assert not direct.wgrad_reads_ncdhw(row, torch.empty(2, 8, 3, 5, 12))
        monkeypatch.setattr(direct, "IGEMM_WGRAD_NCDHW_X", True)
    for row in plain:
        assert not direct.wgrad_reads_ncdhw(row, torch.empty(2, 8, 3, 5, 12))


def test_writes_ncdhw_policy():
    """The warp-specialized Hopper rows store NCDHW only where a launch's output positions are dense
    along w (the forward at stride 1, grad_input at any stride) and for reductions of at least
    NCDHW_MIN_REDUCTION per output element (3xtf32 rows count their three MMAs per product), or
    grad_input at any reduction on the rows that store whole sectors; the exact-fp32 rows at any depth,
    strided forwards too; the implicit-GEMM rows wherever the output's rows start on 32-byte sectors."""
    from convt3d_cutlass.kernel_table import DIRECT_KERNELS, DIRECT_SIMT_KERNELS, WGMMA_KERNELS
    deep = Problem(2, 64, 64, (4, 4, 16), 3, 1, 1)           # 64 x 27 = 1728 both ways
    deep_strided = Problem(2, 64, 256, (4, 4, 16), 3, 2, 1)  # grad_input: 256 x 2^3 = 2048
    shallow = Problem(2, 24, 8, (4, 4, 16), 3, 1, 1)         # forward 648, grad_input 216
    thin = Problem(2, 8, 8, (4, 4, 16), 3, 1, 1)             # 216 both ways: below 768 even x 3
    for row in WGMMA_KERNELS:
        assert direct.writes_ncdhw(row, deep, "dgrad") == row.ws
        assert direct.writes_ncdhw(row, deep, "fprop") == row.ws
        assert direct.writes_ncdhw(row, deep_strided, "fprop") == row.ws
        assert not direct.writes_ncdhw(row, deep_strided, "dgrad")
        # 648 x 3 MMAs per product on the 3xtf32 rows: past NCDHW_MIN_REDUCTION
        assert direct.writes_ncdhw(row, shallow, "dgrad") == (row.ws and row.split)
        assert not direct.writes_ncdhw(row, thin, "dgrad")
        assert direct.writes_ncdhw(row, shallow, "fprop") == direct.ncdhw_sectors(row, shallow, "fprop")
        assert direct.writes_ncdhw(row, thin, "fprop") == direct.ncdhw_sectors(row, thin, "fprop")
    assert any(direct.writes_ncdhw(row, shallow, "fprop") for row in WGMMA_KERNELS)
    assert any(row.ws and row.split for row in WGMMA_KERNELS)
    # the headline's grad_input (648 per output) on the row the selector gives it: written NCDHW by the
    # kernel by whole sectors, on a 2-plane tile in tf32 and a 4-plane one in 3xtf32 (v0.49)
    for prec in ("3xtf32", "tf32"):
        gi = selector.select_config(HEADLINE, "fprop", prec, capability=(9, 0))
        assert gi.ws and direct.writes_ncdhw(gi, HEADLINE, "fprop")
        assert direct.ncdhw_sectors(gi, HEADLINE, "fprop")
        assert gi.block[0] == (4 if prec == "3xtf32" else 2)
    assert not any(direct.writes_ncdhw(row, deep, "dgrad") for row in DIRECT_KERNELS)
    # the exact-fp32 rows: at any reduction depth; the strided forward up to SIMT_STRIDED_NCDHW_MAX_REDUCTION
    # (U-Net 64->32: 64 x 2^3 = 512 per output; 128->64: 1024, written NCDHW under the pair rule, direct.nc_pair)
    for row in DIRECT_SIMT_KERNELS:
        assert direct.writes_ncdhw(row, shallow, "dgrad") and direct.writes_ncdhw(row, deep_strided, "fprop")
        assert direct.writes_ncdhw(row, deep_strided, "dgrad")  # 64 x 2^3
        assert direct.writes_ncdhw(row, Problem(2, 64, 32, (64, 64, 64), 3, 2, 1), "dgrad")
        assert direct.writes_ncdhw(row, Problem(2, 128, 64, (32, 32, 32), 3, 2, 1), "dgrad")  # the pair rule
        assert not direct.writes_ncdhw(row, Problem(2, 128, 62, (32, 32, 32), 3, 2, 1), "dgrad")  # C_out % 4: no pair
        assert not direct.writes_ncdhw(row, Problem(1, 128, 64, (24, 24, 24), 5, 2, 2), "dgrad")
        # past 2^32 output elements (the kernel's 32-bit launch-order index): the transpose path
        assert not direct.writes_ncdhw(row, Problem(1, 64, 32, (512, 512, 256), 3, 2, 1), "dgrad")
    # the implicit-GEMM rows: any pass, stride and depth, where the output's rows start on sectors; strided
    # forwards off the sectors where the row stores whole rows of sibling phases (igemm_sector_pairs)
    from convt3d_cutlass.kernel_table import IGEMM_KERNELS
    k2_up, outpad = Problem(2, 64, 32, (32, 32, 32), 2, 2, 0), Problem(2, 64, 32, (32, 32, 32), 3, 2, 1, 1)
    dec3 = Problem(2, 64, 32, (64, 64, 64), 3, 2, 1)  # 127 wide out, 64 in
    for row in IGEMM_KERNELS:
        assert direct.writes_ncdhw(row, k2_up, "dgrad") and direct.writes_ncdhw(row, outpad, "dgrad")
        staged = direct.igemm_sector_ring(row.bn, row.stages, row.split) > 0
        assert direct.writes_ncdhw(row, dec3, "dgrad", 132) == staged and direct.writes_ncdhw(row, dec3, "fprop")
        # 3xtf32 rows with C_out 32 on 64-wide blocks: plain stores (igemm_sectors_pay)
        half = row.split and 2 * dec3.c_out <= row.bn
        assert direct.ncdhw_sectors(row, dec3, "dgrad", 132) == (staged and not half)
        assert direct.igemm_sectors_pay(row, dec3) == (not half)
        assert direct.igemm_sectors_pay(row, Problem(2, 128, 64, (32, 32, 32), 3, 2, 1))
        assert not direct.writes_ncdhw(row, dec3, "dgrad", 10 ** 6)  # fewer groups than SMs: phase by phase
        assert direct.writes_ncdhw(row, deep, "fprop") and direct.writes_ncdhw(row, shallow, "dgrad")
        assert not direct.writes_ncdhw(row, Problem(2, 64, 32, (8, 8, 12), 3, 1, 1), "fprop")
        assert not direct.ncdhw_sectors(row, deep, "fprop")


def test_igemm_sector_pairs_policy():
    """The implicit GEMM's strided forward stores NCDHW by rows of sibling phases (out_sectors) on the rows
    whose ring keeps four stages or more beside the staged pair (N blocks of 32: 9 of 10 stages, 64: 6 of 8,
    3xtf32's 64: 5 of 6, its 32: 8 of 9; 128: none), at stride 2 with eight phases whose w-siblings start at 0
    and 1 (whichever comes first in the table: padding 1 puts the phase starting at 1 first), walked by
    groups."""
    from convt3d_cutlass.kernel_table import IGEMM_KERNELS
    rings = {row.name: direct.igemm_sector_ring(row.bn, row.stages, row.split) for row in IGEMM_KERNELS}
    assert rings == {"igemm_tf32_1x8x16_n128_s6": 0, "igemm_tf32_1x8x16_n64_s8": 6, "igemm_tf32_2x8x8_n128_s6": 0,
                     "igemm_tf32_2x8x8_n64_s8": 6, "igemm_tf32_1x8x16_n32_s10": 9, "igemm_tf32_2x8x8_n32_s10": 9,
                     "igemm_3xtf32_1x8x16_n64_s6": 5, "igemm_3xtf32_2x8x8_n64_s6": 5, "igemm_3xtf32_1x8x16_n32_s9": 8}
    n32 = next(row for row in IGEMM_KERNELS if row.name == "igemm_tf32_1x8x16_n32_s10")
    for prob in (Problem(2, 64, 32, (64, 64, 64), 3, 2, 1), Problem(2, 64, 32, (32, 32, 32), 2, 2, 0),
                 Problem(4, 64, 32, (48, 48, 48), 3, 2, 1), Problem(16, 64, 32, (32, 32, 32), 5, 2, 2)):
        rows = direct.forward_plan(prob)[0]
        assert {rows[2], rows[15]} == {0, 1}
        assert direct.igemm_sector_pairs(n32, prob, 132)
        assert not direct.igemm_sector_pairs(n32, prob, 10 ** 6)
    for prob in (Problem(2, 64, 32, (64, 64, 64), 3, 1, 1), Problem(2, 64, 32, (32, 32, 32), 3, 3, 1)):
        assert not direct.igemm_sector_pairs(n32, prob, 132)
    for row in IGEMM_KERNELS:
        assert direct.igemm_sector_pairs(row, Problem(2, 64, 32, (64, 64, 64), 3, 2, 1), 132) == (rings[row.name] > 0)


def test_ncdhw_sectors_policy():
    """Whole-sector NCDHW stores: grad_input only, on warp-specialized (not RS) rows with tiles at most
    2 planes deep (tf32) or 4 (3xtf32) whose carried sector fits, where W % 8 == 0."""
    from convt3d_cutlass.kernel_table import WGMMA_KERNELS
    p = Problem(2, 48, 24, (16, 16, 96), 3, 1, 1)
    odd = Problem(2, 48, 24, (16, 16, 98), 3, 1, 1)
    strided = Problem(2, 48, 24, (16, 16, 32), 3, 2, 1)
    got = {row.name for row in WGMMA_KERNELS if direct.ncdhw_sectors(row, p, "fprop")}
    want = {row.name for row in WGMMA_KERNELS if row.ws and not row.rs and row.block[0] <= (4 if row.split else 2) and direct.carry_fits(row)}
    assert got == want and got, got
    assert "wgmma_ws_tf32_2x8x14_kx3_n48_wg2_s8" in got and "wgmma_ws_tf32_2x8x14_kx3_n64_wg2_s8" not in got
    for row in WGMMA_KERNELS:
        assert not direct.ncdhw_sectors(row, p, "dgrad") and not direct.ncdhw_sectors(row, odd, "fprop")
        assert direct.ncdhw_sectors(row, strided, "fprop") == (row.name in got)


def test_sector_twin_for_ncdhw_grad_input():
    """grad_input wanted NCDHW: SR head's 4x8 n32 row (no registers for the carried sector: channels_last_3d
    plus our transpose) gives way to its 2x8 twin, which stores whole sectors; not where the output is
    channels_last_3d, nor where W % 8 != 0 (no sectors), nor where the pick writes NCDHW itself (video-gen's
    2x8 n64, plain stores: a narrower twin lost, v0.51)."""
    head = Problem(1, 32, 8, (128, 128, 128), 3, 1, 1)
    four, two = BY_NAME["wgmma_ws_tf32_4x8x14_kx3_n32_wg2_s8"], BY_NAME["wgmma_ws_tf32_2x8x14_kx3_n32_wg2_s8"]
    assert not direct.writes_ncdhw(four, head, "fprop") and direct.ncdhw_sectors(two, head, "fprop")
    assert selector.select_config(head, "fprop", "tf32").name == four.name
    assert selector.select_config(head, "fprop", "tf32", out_ncdhw=True).name == two.name
    assert selector.select_config(Problem(1, 32, 8, (64, 64, 60), 3, 1, 1), "fprop", "tf32",
                                  out_ncdhw=True).name == four.name
    assert selector.select_config(head, "fprop", "tf32", out_ncdhw=True, compiled=[four.name]).name == four.name
    assert selector.select_config(HEADLINE, "fprop", "tf32", out_ncdhw=True).name == \
        "wgmma_ws_tf32_2x8x14_kx3_n48_wg2_s8"
    video = Problem(4, 64, 32, (16, 64, 64), 3, 1, 1)
    n64 = "wgmma_ws_tf32_2x8x14_kx3_n64_wg2_s8"
    assert direct.writes_ncdhw(BY_NAME[n64], video, "fprop") and not direct.ncdhw_sectors(BY_NAME[n64], video, "fprop")
    assert selector.select_config(video, "fprop", "tf32").name == n64
    assert selector.select_config(video, "fprop", "tf32", out_ncdhw=True).name == n64
    saved = selector.SECTOR_TWINS
    try:
        selector.SECTOR_TWINS = False
        assert selector.select_config(head, "fprop", "tf32", out_ncdhw=True).name == four.name
    finally:
        selector.SECTOR_TWINS = saved


def test_ws_reads_ncdhw_input_policy(monkeypatch):
    """The warp-specialized rows read a packed NCDHW input in place only with W % 4 == 0 (16-byte TMA
    rows) and the filter resident beside the raw boxes with two halo stages: the headline's tf32 forward
    does; its 3xtf32 forward (filter not resident), a channels_last_3d input, W % 4 != 0 and the mma.sync
    rows do not. The implicit-GEMM 3xtf32 rows of 16-wide tiles read grad_input's grad_y with W % 4 == 0 at unit
    stride, unless switched off, and no forward's x. The exact-fp32 rows read any packed NCDHW input."""
    fwd = direct.forward_plan(HEADLINE)[0]
    x = torch.empty(8, 48, 96, 96, 96, device="meta")
    tf32, split = BY_NAME["wgmma_ws_tf32_4x8x14_kx3_n24_wg2_s8"], BY_NAME["wgmma_ws_3xtf32_4x8x14_kx3_n24_wg2_s8"]
    assert direct.reads_ncdhw(tf32, fwd, 48, x)
    assert not direct.reads_ncdhw(split, fwd, 48, x)
    assert not direct.reads_ncdhw(tf32, fwd, 48, x.to(memory_format=torch.channels_last_3d))
    odd = Problem(8, 48, 24, (96, 96, 94), 3)
    assert not direct.reads_ncdhw(tf32, direct.forward_plan(odd)[0], 48, torch.empty(8, 48, 96, 96, 94,
                                                                                            device="meta"))
    others = [k for k in KERNELS if k.tap_reuse and k.op != "wgrad" and not (k.family == "wgmma" and k.ws)
              and not k.simt and k.family not in ("patch", "igemm")]
    assert others and not any(direct.reads_ncdhw(k, fwd, 48, x) for k in others)
    igemm = [k for k in KERNELS if k.family == "igemm" and k.op != "wgrad"]
    assert not any(direct.reads_ncdhw(k, fwd, 48, x) for k in igemm)  # forwards: the copy (call609)
    nc = [k for k in igemm if k.split and k.block[2] == 16]
    assert nc and not any(direct.reads_ncdhw(k, fwd, 48, x, s_in=1) for k in igemm if k not in nc)
    for k in nc:  # grad_input at unit stride on the 3xtf32 rows of 16-wide tiles
        assert direct.reads_ncdhw(k, fwd, 48, x, s_in=1)
        assert not direct.reads_ncdhw(k, fwd, 48, x, s_in=2)  # TMA does not skip along w, the inner axis
        assert not direct.reads_ncdhw(k, fwd, 48, torch.empty(8, 48, 96, 96, 94, device="meta"), s_in=1)
        assert not direct.reads_ncdhw(k, fwd, 48, x.to(memory_format=torch.channels_last_3d), s_in=1)
        monkeypatch.setattr(direct, "IGEMM_READS_NCDHW", False)
        assert not direct.reads_ncdhw(k, fwd, 48, x, s_in=1)
        monkeypatch.setattr(direct, "IGEMM_READS_NCDHW", True)
    # The patch rows read any packed NCDHW input in place, and no channels_last_3d one as NCDHW.
    for k in [k for k in KERNELS if k.family == "patch"]:
        assert direct.reads_ncdhw(k, fwd, 48, x) and not direct.reads_ncdhw(
            k, fwd, 48, x.to(memory_format=torch.channels_last_3d))
    # The exact-fp32 rows gather any packed NCDHW input, whatever W, but in a strided forward (v0.61).
    from convt3d_cutlass.kernel_table import DIRECT_SIMT_KERNELS
    for k in DIRECT_SIMT_KERNELS:
        assert direct.reads_ncdhw(k, fwd, 48, x)
        assert not direct.reads_ncdhw(k, fwd, 48, x, strided_forward=True)
        assert direct.reads_ncdhw(k, fwd, 48, torch.empty(8, 48, 96, 96, 94, device="meta"))
        assert not direct.reads_ncdhw(k, fwd, 48, x.to(memory_format=torch.channels_last_3d))
    # ... and in a strided forward too with its x copy switched off (the A/B knob, v0.84)
    monkeypatch.setattr(direct, "SIMT_STRIDED_FORWARD_X_COPY", False)
    assert all(direct.reads_ncdhw(k, fwd, 48, x, strided_forward=True) for k in DIRECT_SIMT_KERNELS)
    # With the raw boxes, the headline keeps two of its three halo stages.
    taps = direct._wgmma_taps(fwd, tf32.kx)
    assert direct._wgmma_smem(tf32.block, tf32.kx, tf32.bn, 2, tf32.stages, *taps, 48, True, False, True).stages == 2
    assert direct._wgmma_smem(tf32.block, tf32.kx, tf32.bn, 2, tf32.stages, *taps, 48, True, False).bytes <= \
        direct.SM90_SMEM_OPTIN


def test_grad_input_copies_ncdhw_grad_y_policy(monkeypatch):
    """grad_input's ws SS rows with two warpgroups and up to 160 accumulators (Config::RING_SUMS) read an
    NCDHW grad_y in place while summing and copying it: the headline's (grad_y rows 98 wide: a box per halo
    row, 98 x 98 % 4 == 0) and 96-wide rows; not where H x W % 4 != 0 with W % 4 != 0 (no 16-byte plane
    stride), nor the RS, three-warpgroup or 192-accumulator rows, nor C_out % 4 != 0, nor a sample of 2^31
    elements or more."""
    n48 = BY_NAME["wgmma_ws_tf32_2x8x14_kx3_n48_wg2_s8"]
    assert not direct.COPY_GRAD_Y or __import__("os").environ.get("CONVT3D_COPY_GRAD_Y") == "1"  # opt-in
    p0 = Problem(2, 48, 24, (96, 96, 96), 3)
    monkeypatch.setattr(direct, "COPY_GRAD_Y", False)
    assert not direct.copies_input(n48, direct.grad_input_plan(p0), 24, p0.out_spatial)
    monkeypatch.setattr(direct, "COPY_GRAD_Y", True)
    assert direct.ring_sums(n48) and direct.ring_sums(BY_NAME["wgmma_ws_3xtf32_2x8x14_kx3_n32_wg2_s8"])
    assert not direct.ring_sums(BY_NAME["wgmma_ws_tf32_4x8x14_kx3_n32_wg2_s8"])  # 192 accumulators
    assert not any(direct.ring_sums(k) for k in KERNELS if k.family == "wgmma" and (k.rs or k.warpgroups != 2))
    for spatial, ok in (((96, 96, 96), True), ((96, 96, 94), True), ((33, 33, 35), False), ((33, 34, 35), True)):
        p = Problem(2, 48, 24, spatial, 3)
        assert direct.copies_input(n48, direct.grad_input_plan(p), 24, p.out_spatial) == ok, spatial
    odd = Problem(2, 48, 22, (96, 96, 96), 3)
    assert not direct.copies_input(n48, direct.grad_input_plan(odd), 22, odd.out_spatial)
    # warp 0's offsets into a sample of the copy are 32-bit: grad_y 24 x 440^3 is within them, 24 x 448^3 not
    for size, ok in ((438, True), (446, False)):
        big = Problem(1, 48, 24, (size,) * 3, 3)
        assert direct.copies_input(n48, direct.grad_input_plan(big), 24, big.out_spatial) == ok, size
    # the rows form's boxes are 128-byte aligned: odd halo depths take more of the ring
    r = direct._wgmma_smem((1, 8, 14), 3, 48, 2, 8, 3, 3, 24, True, False, True, False, True)
    assert r is None or r.bytes <= direct.SM90_SMEM_OPTIN


@pytest.mark.parametrize("padding", [0, 1, 2])
@pytest.mark.parametrize("spatial", [(96, 96, 96), (5, 9, 15), (16, 64, 64), (1, 1, 1)])
def test_grad_input_sums_its_input_policy(spatial, padding):
    """grad_input's warp-specialized rows sum grad_y as they round it (the bias gradient) where each
    tile's halo, cut where the next tile's starts, covers grad_y: at stride 1 (its only stride) always,
    which this checks by counting every grad_y position's owners with the kernel's rule; rows of other
    families never, and neither does a table whose last halos stop short of the input."""
    p = Problem(2, 48, 24, spatial, 3, 1, padding)
    if min(p.out_spatial) < 1:
        pytest.skip("no output")
    table = direct.grad_input_plan(p)
    ws = [k for k in KERNELS if k.family == "wgmma" and k.ws and not k.wf]
    assert ws and all(direct.sums_input(k, table, p.out_spatial) for k in ws)
    others = [k for k in KERNELS if k.tap_reuse and k.op == "direct" and not (k.family == "wgmma" and k.ws and not k.wf)
              and not (k.family == "igemm" and not k.split)]
    assert others and not any(direct.sums_input(k, table, p.out_spatial, 1, p.c_out) for k in others)
    for k in ws:  # the kernel's ownership rule (csrc/direct_sm90.cuh), one axis at a time
        for a in range(3):
            tile, count, dmin = k.block[a], table[3 + a], table[6 + a]
            halo = tile + 2 if a < 2 else 16
            owners = [0] * p.out_spatial[a]
            tiles = -(-count // tile)
            for t in range(tiles):
                own = halo if t == tiles - 1 else tile
                for h in range(own):
                    g = t * tile + dmin + h
                    if 0 <= g < len(owners):
                        owners[g] += 1
            assert owners == [1] * len(owners), (k.name, a, owners)
    short = list(table)
    short[3] = 1  # one tile along d over a deeper input: its halo cannot reach the end
    assert not direct.sums_input(ws[0], short, (64,) + p.out_spatial[1:])


@pytest.mark.parametrize("k,s,p,op", [(3, 2, 1, 0), (3, 2, 1, 1), (2, 2, 0, 0), (5, 2, 2, 0), (5, 2, 2, 1),
                                      (4, 2, 1, 0), (3, 3, 0, 0), (3, 3, 1, 2), (1, 2, 0, 0), (3, 1, 1, 0),
                                      (3, 1, 0, 0), (5, 1, 2, 0), (1, 1, 0, 0), (7, 3, 3, 2)])
@pytest.mark.parametrize("spatial", [(1, 1, 1), (5, 9, 16), (32, 8, 17)])
def test_igemm_sum_window_counts_each_grad_y_position_once(k, s, p, op, spatial):
    """The implicit-GEMM rows sum grad_y at the taps of one window per axis (csrc/igemm_sm90.cuh): where
    igemm_sum_window gives one, the kernel's reads at its taps meet every grad_y position exactly once
    (counted here with the kernel's addressing); where it gives none, no window of s consecutive taps
    does. Only tf32 rows whose shared rows fit take the sums."""
    prob = Problem(2, 40, 36, spatial, k, s, p, op)
    if min(prob.out_spatial) < 1:
        pytest.skip("no output")
    table = direct.grad_input_plan(prob)
    window = direct.igemm_sum_window(table, prob.out_spatial, s)

    def counts(a, first):
        count, dmin = table[3 + a], table[6 + a]
        owners = [0] * prob.out_spatial[a]
        for q in range(count):
            for t in range(first, first + s):
                j = s * q + dmin + t
                if 0 <= j < len(owners):
                    owners[j] += 1
        return owners

    if window is not None:
        for a in range(3):
            assert counts(a, window[a]) == [1] * prob.out_spatial[a], (a, window)
    else:
        assert any(all(counts(a, f) != [1] * prob.out_spatial[a] for f in range(0, table[9 + a] - s + 1))
                   for a in range(3))
    rows = [BY_NAME[n] for n in ("igemm_tf32_1x8x16_n128_s6", "igemm_tf32_1x8x16_n32_s10",
                                 "igemm_3xtf32_1x8x16_n64_s6")]
    assert direct.sums_input(rows[0], table, prob.out_spatial, s, 36) == (window is not None)
    assert direct.sums_input(rows[1], table, prob.out_spatial, s, 36) == (window is not None)
    assert not direct.sums_input(rows[2], table, prob.out_spatial, s, 36)  # 3xtf32: no sums
    assert not direct.sums_input(rows[0], table, prob.out_spatial, s, 0)
    assert not direct.sums_input(rows[0], table, prob.out_spatial, s, 8192)  # shared rows past the limit


@pytest.mark.parametrize("k,s,p,op", [(3, 2, 1, 0), (5, 2, 2, 0), (3, 3, 0, 0), (4, 2, 1, 1), (2, 2, 0, 0),
                                      (7, 3, 3, 2), (3, 1, 1, 0), (1, 2, 0, 0), (6, 3, 1, 2)])
def test_forward_filter_takes_phase_taps_by_views(k, s, p, op):
    """The phase sub-kernels by flips and strided slices (no index tensor to copy to the GPU, which CUDA
    graph capture forbids) equal fancy indexing with the plan's kernel indices."""
    prob = Problem(2, 4, 8, (5, 6, 7), k, s, p, op)
    w = torch.randn(4, 8, k, k, k)
    blocks = [w[:, :, list(i[0])][:, :, :, list(i[1])][:, :, :, :, list(i[2])].permute(2, 3, 4, 1, 0).reshape(-1)
              for i in direct.forward_plan(prob)[1] if min(len(a) for a in i) > 0]
    assert torch.equal(direct.forward_filter(w, prob, "fp32"), torch.cat(blocks))


def test_simt_rows_skip_half_empty_tiles(monkeypatch):
    """The FFMA rows where their 16-wide tiles fill; the stock SIMT forward on 8-wide layers (gan3d-g1). (The k2
    layers below are the patch rows' with those on: CONVT3D_PATCH=0 keeps the rule they exercise.)"""
    monkeypatch.setenv("CONVT3D_PATCH", "0")
    g1 = Problem(16, 256, 128, (8, 8, 8), 3, 2, 1)
    assert selector.select_config(g1, "dgrad", "fp32").family == "cutlass2x"
    g2 = Problem(16, 128, 64, (16, 16, 16), 3, 2, 1)
    assert selector.select_config(g2, "dgrad", "fp32").simt
    # grad_weight: the FFMA implicit GEMM's 128-row tile from C_in = 128 on; below, its 64-row tile, and
    # its 32-row tile up to C_in = 32 (the 64-row one in builds without it), except at unit stride with
    # k = 3, where the tap-reuse rows keep it
    def tile(p, **kw):  # the row's tile: its split-K or stream-K form (test_ffma_wgrad_stream_k_* tells which)
        name = selector.select_config(p, "wgrad", "fp32", **kw).name
        return name[:-3] if name.endswith("_sk") else name

    for p in (g1, g2, Problem(2, 128, 64, (32, 32, 32), 3, 1, 1)):
        assert tile(p) == "ffma_wgrad_fp32_128x128x32_s3"
    for p in (Problem(4, 64, 32, (48, 48, 48), 3, 2, 1), Problem(2, 64, 32, (32, 32, 32), 2, 2, 0),
              Problem(2, 36, 32, (32, 32, 32), 3, 2, 1)):
        assert tile(p) == "ffma_wgrad_fp32_64x128x16_s4"
    refine = Problem(1, 32, 16, (64, 64, 64), 5, 1, 2)
    assert tile(refine) == "ffma_wgrad_fp32_32x256x16_s4"
    without = [k.name for k in KERNELS if not k.name.startswith("ffma_wgrad_fp32_32x256x16_s4")]
    assert tile(refine, compiled=without) == "ffma_wgrad_fp32_64x128x16_s4"
    # past the 32-row tile's 32-bit table (grad_y of 2^30 positions) or 8 taps per axis: the 64-row tile;
    # past 2^31 positions of x: no FFMA row at all
    assert tile(Problem(1, 32, 16, (1024, 1024, 1024), 5, 1, 2)) == "ffma_wgrad_fp32_64x128x16_s4"
    assert tile(Problem(1, 32, 16, (16, 16, 16), 9, 1, 4)) == "ffma_wgrad_fp32_64x128x16_s4"
    assert selector.select_config(Problem(2, 128, 64, (1024, 1024, 1024), 3, 2, 1), "wgrad",
                                  "fp32").family != "ffma"
    assert selector.select_config(Problem(4, 64, 32, (16, 64, 64), 3, 1, 1), "wgrad", "fp32").simt
    # channels that are not multiples of 4, or a build without the rows: the stock SIMT kernels
    odd = Problem(2, 130, 64, (8, 8, 8), 3, 2, 1)
    assert selector.select_config(odd, "wgrad", "fp32").family == "cutlass2x"
    stock = [k.name for k in KERNELS if k.family == "cutlass2x"]
    assert selector.select_config(g1, "wgrad", "fp32", compiled=stock).family == "cutlass2x"
    # 8 rows per thread where a phase has 8 taps or more; on one-tap phases by whole waves x work per CTA
    # (SIMT_FEW_TAP_FORWARD_BY_WAVES): k2 s2's 512 CTAs of 8 rows (4 waves) over 1024 of 4, but pointwise's 128
    # CTAs of 4 rows over 64 of 8 (one wave either way); the fewest rows with the rule off
    assert selector.select_config(g2, "dgrad", "fp32").name == "direct_fp32_8x8x16_n32_m8"
    k2 = Problem(2, 64, 32, (32, 32, 32), 2, 2, 0)
    pw = Problem(2, 64, 32, (32, 32, 32), 1, 1, 0)
    assert selector.select_config(k2, "dgrad", "fp32", num_sms=132).name == "direct_fp32_8x8x16_n32_m8"
    assert selector.select_config(pw, "dgrad", "fp32", num_sms=132).name == "direct_fp32_4x8x16_n32_m4"
    monkeypatch.setattr(selector, "SIMT_FEW_TAP_FORWARD_BY_WAVES", False)
    assert selector.select_config(k2, "dgrad", "fp32", num_sms=132).name == "direct_fp32_4x8x16_n32_m4"


def test_simt_grad_input_over_parities_and_waves(monkeypatch):
    """Strided exact-fp32 grad_input on the FFMA rows (summed over grad_y's parities, NCDHW grad_y
    converted); the 8x8x16 block unless it would leave SMs idle that 4x8x16 fills; the stock 128x128
    tile where no row fills a wave (U-Net 256->128: 64 CTAs of 8x8x16, 128 of 4x8x16 on 132 SMs), and its
    4-warp form where that has two waves of tiles. (The FFMA Fprop row takes the stock tiles' place where it is
    on: test_selector_cpu.py's test_ffma_fprop_row_takes_the_stock_simt_grad_input; off here.)"""
    monkeypatch.setenv("CONVT3D_FFMA_FPROP", "0")
    s2 = Problem(2, 64, 32, (32, 32, 32), 3, 2, 1)  # one wave of the FFMA rows (SIMT_NARROW_FFMA_MAX_WAVES)
    k = selector.select_config(s2, "fprop", "fp32", num_sms=132)
    assert k.name == "direct_fp32_8x8x16_n32_m8" and direct.sums_parities(k, s2)
    assert not direct.reads_ncdhw(k, direct.pass_plan(k, s2, "fprop")[0], 32, torch.empty(2, 32, 3, 4, 5), True)
    dec1 = Problem(2, 256, 128, (16, 16, 16), 3, 2, 1)
    assert selector.select_config(dec1, "fprop", "fp32", num_sms=132).name == "fprop_fp32_128x128x8_64x64x8_s3"
    # two waves of stock tiles (128 on 64 SMs): the stock tile over the FFMA rows, which fill a wave there
    assert selector.select_config(dec1, "fprop", "fp32", num_sms=64).name == "fprop_fp32_128x128x8_64x64x8_s3"
    # 64 channels: no 128x128 stock tile to lose to, so 3/4 of a wave suffices (128 CTAs on 132 SMs)
    outpad = Problem(2, 64, 32, (32, 32, 32), 3, 2, 1, 1)
    assert selector.select_config(outpad, "fprop", "fp32", num_sms=132).name == "direct_fp32_8x8x16_n32_m8"
    # at unit stride, one dense phase as before
    assert not direct.sums_parities(selector.select_config(HEADLINE, "fprop", "fp32"), HEADLINE)


def test_igemm_wgrad_slices_take_the_fewest_within_the_slack(monkeypatch):
    """The partial sums are the backward's largest temporary on small layers: the slice count is the
    fewest within IGEMM_WGRAD_SLICE_SLACK of the cost model's best (U-Net 256->128: 3 slices, 10 MiB, not
    7 and 24 MiB), never more than the best's, and never more partial bytes. The cap of a third of x and
    grad_y (IGEMM_WGRAD_PARTIAL_FRACTION) takes V-Net up's k5 swapped row from the model's 5 slices to 2
    (8 MB of partial sums, not 20) and leaves the k3 layers' counts as the slack made them."""
    row = BY_NAME["igemm_wgrad_tf32_1x4x8_n64_kx3_s3"]
    dec1 = Problem(2, 256, 128, (16, 16, 16), 3, 2, 1)
    assert direct.igemm_wgrad_slices(dec1, row.block, row.bn, 132, kx=row.kx) == 3
    vnet = Problem(1, 128, 64, (24, 24, 24), 5, 2, 2)
    k5 = BY_NAME["igemm_wgrad_tf32_1x4x8_n32_kx5_sw_s4"]
    assert direct.igemm_wgrad_slices(vnet, k5.block, k5.bn, 132, kx=k5.kx) == 2
    expected = {Problem(2, 128, 64, (32, 32, 32), 3, 2, 1): 14, Problem(16, 256, 128, (8, 8, 8), 3, 2, 1): 3,
                Problem(2, 128, 64, (32, 32, 32), 3, 1, 1): 14}
    for p, n in expected.items():
        assert direct.igemm_wgrad_slices(p, row.block, row.bn, 132, kx=row.kx) == n
    monkeypatch.setattr(direct, "IGEMM_WGRAD_PARTIAL_FRACTION", 1e9)  # the cost model alone
    direct.igemm_wgrad_slices.cache_clear()
    assert direct.igemm_wgrad_slices(dec1, row.block, row.bn, 132, kx=row.kx, slack=0.0) == 7
    assert direct.igemm_wgrad_slices(dec1, row.block, row.bn, 132, kx=row.kx) == 3
    assert direct.igemm_wgrad_slices(vnet, k5.block, k5.bn, 132, kx=k5.kx) == 5
    for p, n in expected.items():
        assert direct.igemm_wgrad_slices(p, row.block, row.bn, 132, kx=row.kx) == n
    monkeypatch.undo()
    direct.igemm_wgrad_slices.cache_clear()
    for p in (dec1, Problem(2, 128, 64, (32, 32, 32), 3, 2, 1), Problem(16, 256, 128, (8, 8, 8), 3, 2, 1),
              Problem(2, 128, 64, (32, 32, 32), 3, 1, 1), Problem(1, 128, 64, (24, 24, 24), 5, 2, 2)):
        for k in (BY_NAME["igemm_wgrad_tf32_1x4x8_n64_kx3_s3"], BY_NAME["igemm_wgrad_tf32_1x4x8_n64_s6"]):
            kx = k.kx if p.k == 3 else 0
            best = direct.igemm_wgrad_slices(p, k.block, k.bn, 132, kx=kx, slack=0.0)
            some = direct.igemm_wgrad_slices(p, k.block, k.bn, 132, kx=kx)
            assert 1 <= some <= best
            assert direct.igemm_wgrad_slices(p, k.block, k.bn, 132, kx=kx, slack=1e3) == 1


def test_igemm_sums_take_up_to_128_reduction_channels():
    """The implicit-GEMM grad_input sums its input in its consumer threads' registers, four chunks of 32 channels
    (csrc/igemm_sm90.cuh, IgemmConfig::SUM_CHUNKS; its can_implement refuses more), then adds eight warps' shared
    rows of C_r floats: C_r up to 128 on every row, the caller's own pass beyond."""
    src = (pathlib.Path(__file__).resolve().parent.parent / "csrc" / "igemm_sm90.cuh").read_text()
    assert "static constexpr int SUM_CHUNKS = 4;" in src and "static constexpr int SUM_ROWS = 8;" in src
    assert direct.IGEMM_SUM_MAX_CR == 32 * 4 and direct.IGEMM_SUM_ROWS == 8
    for c_r, fits in ((128, True), (132, False), (256, False)):
        prob = Problem(2, 64, c_r, (8, 8, 16), 3, 2, 1, 1)
        table = direct.grad_input_plan(prob)
        assert direct.igemm_sum_window(table, prob.out_spatial, 2) is not None
        for name in ("igemm_tf32_1x8x16_n32_s10", "igemm_tf32_1x8x16_n128_s6"):
            assert direct.sums_input(BY_NAME[name], table, prob.out_spatial, 2, c_r) == fits


def test_ws_stages_run_past_a_units_chunks():
    """The ws rows' halo ring runs across units (the stage is the CTA's chunk count mod stages), so their
    stages are as many as fit up to the row's S, not capped by a unit's chunks as the one-warpgroup rows'
    are (v0.69: the headline's grad_input, 3 chunks of 8 grad_y channels, 3 -> 5 stages beside its resident
    filter; SR head's, one chunk, 1 -> 6). test_smem_mirror_host checks the C++ geometry agrees."""
    def smem(name, p, op):
        k = BY_NAME[name]
        plan, c_r = (direct.grad_input_plan(p), p.c_out) if op == "fprop" else (direct.forward_plan(p)[0], p.c_in)
        return direct._wgmma_smem(k.block, k.kx, k.bn, k.warpgroups, k.stages, *direct._wgmma_taps(plan, k.kx),
                                  c_r, k.ws, k.split)

    headline, sr_head = Problem(8, 48, 24, (96, 96, 96), 3), Problem(1, 32, 8, (128, 128, 128), 3, 1, 1)
    for name, p, op, stages in (("wgmma_ws_tf32_2x8x14_kx3_n48_wg2_s8", headline, "fprop", 5),
                                ("wgmma_ws_tf32_4x8x14_kx3_n32_wg2_s8", sr_head, "fprop", 6),
                                ("wgmma_ws_tf32_4x8x14_kx3_n16_wg2_s8", sr_head, "dgrad", 5),
                                ("wgmma_tf32_2x8x14_kx3_n48_wg2_s2", headline, "fprop", 2)):
        r = smem(name, p, op)
        assert r.stages == stages and r.bytes <= direct.SM90_SMEM_OPTIN, (name, r)
    assert smem("wgmma_ws_tf32_2x8x14_kx3_n48_wg2_s8", headline, "fprop").resident
    assert smem("wgmma_tf32_2x8x14_kx3_n48_wg2_s2", Problem(1, 48, 8, (32, 32, 32), 3), "fprop").stages == 1


def test_ffma_wgrad_reads_ncdhw_on_its_64_and_128_row_tiles_only(monkeypatch):
    """The FFMA grad_weight's NC mode (csrc/ffma_wgrad.cuh): 64- and 128-row tiles, x's positions per sample a
    multiple of 4, grad_y's element indices in 32 bits; the knob off turns it off."""
    from convt3d_cutlass.kernel_table import BY_NAME
    p = Problem(2, 64, 32, (16, 16, 16), 3, 2, 1)
    for name in ("ffma_wgrad_fp32_64x128x16_s4", "ffma_wgrad_fp32_64x128x16_s4_sk"):
        assert direct.ffma_wgrad_reads_ncdhw(BY_NAME[name], p)
    assert not direct.ffma_wgrad_reads_ncdhw(BY_NAME["ffma_wgrad_fp32_128x128x32_s3"], p)  # lost (v0.83)
    monkeypatch.setattr(direct, "FFMA_WGRAD_NCDHW_ROWS", (64, 128))
    assert direct.ffma_wgrad_reads_ncdhw(BY_NAME["ffma_wgrad_fp32_128x128x32_s3"], p)
    monkeypatch.setattr(direct, "FFMA_WGRAD_NCDHW_ROWS", (64,))
    assert not direct.ffma_wgrad_reads_ncdhw(BY_NAME["ffma_wgrad_fp32_32x256x16_s4"], p)
    assert not direct.ffma_wgrad_reads_ncdhw(BY_NAME["wgrad_fp32_128x64x8_64x32x8_s4"], p)
    row = BY_NAME["ffma_wgrad_fp32_64x128x16_s4"]
    assert not direct.ffma_wgrad_reads_ncdhw(row, Problem(2, 64, 32, (5, 6, 7), 3, 2, 1))  # 210 positions a sample
    assert direct.ffma_wgrad_reads_ncdhw(row, Problem(2, 64, 32, (5, 6, 8), 3, 2, 1))
    assert not direct.ffma_wgrad_reads_ncdhw(row, Problem(64, 64, 64, (128, 128, 128), 3, 2, 1))  # 2^31 elements
    monkeypatch.setattr(direct, "FFMA_WGRAD_NCDHW", False)
    assert not direct.ffma_wgrad_reads_ncdhw(row, p)


def _wgrad_window(x, gy, k, stride, padding, pad_d):
    """grad_w [C_in, C_out, k, k, k] of a conv3d wgrad whose output is x [N, C_in, Z, P, Q] and whose input is the
    grad_y window gy [N, C_out, Dw, Ho, Wo], read at z * stride - pad_d + t along depth and with padding along h and w,
    rows outside the window zero: the stock-contract wgrad as csrc/ffma_wgrad.cuh runs it on one depth slab."""
    n, ci, z, p, q = x.shape
    # front pad_d along depth, padding along h and w, and zeros past the window's end for the last taps
    back = max(0, (z - 1) * stride + k - pad_d - gy.shape[2])
    right = [max(0, (e - 1) * stride + k - padding - g) for e, g in zip((p, q), gy.shape[3:])]
    g = F.pad(gy, (padding, right[1], padding, right[0], pad_d, back))
    out = torch.empty(ci, gy.shape[1], k, k, k, dtype=x.dtype)
    for t, r, s in itertools.product(range(k), repeat=3):
        win = g[:, :, t:t + (z - 1) * stride + 1:stride, r:r + (p - 1) * stride + 1:stride,
                s:s + (q - 1) * stride + 1:stride]
        out[:, :, t, r, s] = torch.einsum("nczpq,nozpq->co", x, win)
    return out


SLAB_CASES = [  # (N, C_in, C_out, spatial, k, stride, padding, output_padding)
    (1, 8, 4, (9, 5, 6), 5, 1, 2, 0),  # V-Net refine's form, depth not a multiple of the slabs
    (2, 4, 4, (6, 4, 5), 3, 2, 1, 0),
    (1, 4, 8, (7, 4, 4), 3, 2, 1, 1),  # output_padding: grad_y's last depth row reached by no slab's taps but the last
    (1, 4, 4, (5, 4, 4), 7, 1, 3, 0),
    (2, 4, 4, (8, 3, 4), 2, 3, 0, 0),  # k < stride
    (1, 4, 4, (5, 6, 6), 3, 1, 3, 0),  # padding past the filter: the first slab's taps reach no row of grad_y
]


@pytest.mark.parametrize("case", SLAB_CASES, ids=lambda c: "x".join(map(str, c[:3])) + f"_k{c[4]}s{c[5]}p{c[6]}o{c[7]}")
def test_ffma_wgrad_depth_slabs_sum_to_the_gradient(case, monkeypatch):
    """direct.ffma_wgrad_slabs: the slabs cover x's depths once, in order, and the wgrad of each slab over its window
    of grad_y (its own front padding, rows past the window zero), summed in slab order, is PyTorch's grad_weight in
    float64."""
    n, ci, co, sp, k, s, p, op = case
    prob = Problem(n, ci, co, sp, k, s, p, op)
    monkeypatch.setattr(direct, "FFMA_WGRAD_SLABS", 4)
    monkeypatch.setattr(direct, "FFMA_WGRAD_SLAB_MIN_BYTES", 0)
    slabs = direct.ffma_wgrad_slabs(BY_NAME["ffma_wgrad_fp32_32x256x16_s4"], prob)
    assert len(slabs) == min(4, sp[0]) and slabs[0].z0 == 0 and slabs[-1].z1 == sp[0]
    assert all(a.z1 == b.z0 and a.z0 < a.z1 for a, b in zip(slabs, slabs[1:]))
    assert all(0 <= sl.a0 <= sl.a1 <= prob.out_spatial[0] and sl.pad_d >= 0 for sl in slabs)
    if p >= k:
        assert slabs[0].a0 == slabs[0].a1  # nothing to read: the slab adds nothing
    g = torch.Generator().manual_seed(5)
    x = torch.randn(n, ci, *sp, dtype=torch.float64, generator=g)
    gy = torch.randn((n, co) + prob.out_spatial, dtype=torch.float64, generator=g)
    got = sum(_wgrad_window(x[:, :, sl.z0:sl.z1], gy[:, :, sl.a0:sl.a1], k, s, p, sl.pad_d) for sl in slabs)
    w = torch.zeros(ci, co, k, k, k, dtype=torch.float64, requires_grad=True)
    F.conv_transpose3d(x, w, None, s, p, op).backward(gy)
    assert torch.allclose(got, w.grad, rtol=1e-10, atol=1e-10)


def test_ffma_wgrad_depth_slabs_only_where_the_tile_has_no_nc_mode(monkeypatch):
    """The 32-row tile (no NC mode) runs an NCDHW layer in FFMA_WGRAD_SLABS slabs, at most one per depth and one per
    FFMA_WGRAD_SLAB_MIN_BYTES of x; the NC tiles, the stock rows, small layers and the knob at 1 run whole."""
    p = Problem(1, 32, 16, (64, 64, 64), 5, 1, 2)  # V-Net refine: x 32 MiB
    thin = BY_NAME["ffma_wgrad_fp32_32x256x16_s4"]
    assert len(direct.ffma_wgrad_slabs(thin, p)) == direct.FFMA_WGRAD_SLABS == 4
    assert len(direct.ffma_wgrad_slabs(BY_NAME["ffma_wgrad_fp32_32x256x16_s4_sk"], p)) == 4
    assert len(direct.ffma_wgrad_slabs(thin, Problem(1, 32, 16, (3, 256, 256), 5, 1, 2))) == 3
    assert direct.ffma_wgrad_slabs(thin, Problem(1, 32, 16, (1, 256, 256), 5, 1, 2)) == ()
    assert len(direct.ffma_wgrad_slabs(thin, Problem(1, 32, 16, (32, 32, 64), 5, 1, 2))) == 2  # 8 MiB: two slabs
    assert direct.ffma_wgrad_slabs(thin, Problem(2, 24, 16, (5, 6, 8), 3, 2, 1)) == ()  # 46 KB: the host's pace
    monkeypatch.setattr(direct, "FFMA_WGRAD_SLAB_MIN_BYTES", 0)
    assert len(direct.ffma_wgrad_slabs(thin, Problem(2, 24, 16, (5, 6, 8), 3, 2, 1))) == 4
    for name in ("ffma_wgrad_fp32_64x128x16_s4", "wgrad_fp32_128x64x8_64x32x8_s4"):
        assert direct.ffma_wgrad_slabs(BY_NAME[name], p) == ()
    monkeypatch.setattr(direct, "FFMA_WGRAD_SLABS", 1)
    assert direct.ffma_wgrad_slabs(thin, p) == ()
