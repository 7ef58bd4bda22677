"""Selector decisions, split-K sizing, stride-phase math and fake-tensor shapes (CPU)."""
import pytest
import torch
import torch.nn.functional as F

from convt3d_cutlass import direct, ops, selector
from convt3d_cutlass.kernel_table import BY_NAME, KERNELS, PRECISIONS
from convt3d_cutlass.problem import Problem, out_size, phases

HEADLINE = Problem(8, 48, 24, (96, 96, 96), 3)
MEDIUM = Problem(2, 128, 64, (32, 32, 32), 3, 1, 1)


STOCK = dict(family="cutlass2x")  # the stock heuristic, where the direct family would otherwise win


def test_headline_forward_picks_tall_narrow_tile():
    assert selector.select_config(HEADLINE, "dgrad", "tf32", **STOCK).tile == (256, 32, 32)


def test_medium_forward_picks_64_wide_tile():
    assert selector.select_config(MEDIUM, "dgrad", "tf32", **STOCK).tile == (128, 64, 32)


def test_small_volume_narrow_n_uses_128_rows():
    p = Problem(1, 16, 16, (8, 8, 8), 3)
    assert selector.select_config(p, "dgrad", "tf32", **STOCK).tile == (128, 32, 32)


def test_wide_channels_use_wide_tile():
    p = Problem(2, 256, 256, (16, 16, 16), 3)
    assert selector.select_config(p, "dgrad", "tf32", **STOCK).tile == (128, 128, 16)
    assert selector.select_config(p, "fprop", "tf32", **STOCK).tile == (128, 128, 16)
    assert selector.select_config(p, "wgrad", "tf32", **STOCK).tile == (128, 128, 16)


def test_simt_stock_tiles_follow_channels(monkeypatch):
    """Exact fp32 on the stock SIMT kernels: 128x128 grad_input tiles past 64 channels; grad_weight tiles
    as tall as C_in fills (64, 128, 256 rows); the forward's 128x128 only where its stride phases,
    run together, fill two waves. (grad_input with the FFMA Fprop row off: it takes these tiles' place.)"""
    monkeypatch.setenv("CONVT3D_FFMA_FPROP", "0")
    wide = Problem(16, 256, 128, (8, 8, 8), 3, 2, 1)  # gan3d-g1
    assert selector.select_config(wide, "fprop", "fp32", **STOCK).name == "fprop_fp32_128x128x8_64x64x8_s3"
    assert selector.select_config(wide, "wgrad", "fp32", **STOCK).name == "wgrad_fp32_256x64x8_64x32x8_s4"
    assert selector.select_config(wide, "dgrad", "fp32", gemm_mn=(16 * 8 ** 3, 128),
                                  **STOCK).name == "dgrad_fp32_128x128x8_64x64x8_s3"
    # two waves of 128x128 tiles: the 4-warp form (16x8 per thread, two CTAs per SM), also over the
    # FFMA tap-reuse rows where the layer is strided and has more than 64 output channels
    dec2 = Problem(2, 128, 64, (32, 32, 32), 3, 2, 1)
    assert selector.select_config(dec2, "fprop", "fp32").name == "fprop_fp32_128x128x8_64x64x8_s3"
    assert selector.select_config(dec2, "fprop", "fp32", **STOCK).name == "fprop_fp32_128x128x8_64x64x8_s3"
    dec1 = Problem(2, 256, 128, (16, 16, 16), 3, 2, 1)
    assert selector.select_config(dec1, "dgrad", "fp32").name == "dgrad_fp32_128x128x8_64x64x8_s3"
    assert selector.select_config(dec1, "fprop", "fp32").name == "fprop_fp32_128x128x8_64x64x8_s3"
    # ... whose grad_input (128 tiles on 132 SMs) splits K in two for the second CTA per SM; 512 do not
    k = selector.select_config(dec1, "fprop", "fp32")
    assert selector.fprop_slices(dec1, k, 132) == 2 and selector.fprop_slices(dec1, k, 64) == 1
    assert selector.fprop_slices(dec2, k, 132) == 1
    # a short reduction stays whole (8 main-loop iterations per slice at least): C_out 4, k = 1
    assert selector.fprop_slices(Problem(2, 96, 4, (8, 8, 8), 1, 2, 0), k, 132) == 1
    assert selector.fprop_slices(Problem(2, 96, 8, (8, 8, 8), 3, 2, 1), k, 132) == 2
    assert selector.fprop_slices(dec1, selector.select_config(dec1, "fprop", "tf32", **STOCK), 132) == 1
    # 64 output channels keep the FFMA rows (no 128-wide tile to fill)
    assert selector.select_config(dec2, "dgrad", "fp32").family == "direct"
    # unit stride: one phase, whose own tiles would not fill the GPU
    one = Problem(2, 256, 128, (16, 16, 16), 3, 1, 1)
    assert selector.select_config(one, "dgrad", "fp32", **STOCK).tile == (128, 64, 8)
    assert selector.select_config(MEDIUM, "wgrad", "fp32", **STOCK).tile == (128, 64, 8)
    assert selector.select_config(MEDIUM, "fprop", "fp32", **STOCK).tile == (128, 128, 8)
    narrow = Problem(1, 32, 16, (64, 64, 64), 5, 1, 2)  # V-Net k5 refinement
    assert [selector.select_config(narrow, op, "fp32", **STOCK).tile for op in ("dgrad", "fprop")] == \
        [(128, 32, 8), (128, 32, 8)]


def test_one_tap_grad_input_goes_to_the_stock_simt_kernel(monkeypatch):
    """Exact-fp32 strided grad_input whose stride phases have one tap each (k == stride) has nothing to reuse
    across taps: the patch rows take it (one GEMM, either layout in place), and with those off (CONVT3D_PATCH=0)
    the stock implicit GEMM (U-Net k2 s2, k3 s3). Pointwise (one phase), k < stride and phases of two taps or
    more keep the FFMA rows; the forward of the same layers goes to the patch rows too, else the FFMA rows.
    (The stock kernel with the FFMA Fprop row off, which takes its place where on.)"""
    monkeypatch.setenv("CONVT3D_FFMA_FPROP", "0")
    k2 = Problem(2, 64, 32, (32, 32, 32), 2, 2, 0)  # unet3d-k2
    k3 = Problem(8, 64, 32, (32, 32, 32), 3, 3, 0)
    assert selector.select_config(k2, "fprop", "fp32").name == "patch_fp32_128x64"
    assert selector.select_config(Problem(2, 128, 64, (32, 32, 32), 2, 2, 0), "fprop", "fp32").name == \
        "patch_fp32_128x128"
    assert selector.select_config(k3, "fprop", "fp32").family == "patch"
    assert selector.select_config(k2, "dgrad", "fp32").name == "patch_fp32_128x128"
    # tf32 and 3xtf32: the forward on their tensor-core rows where the layer is NCDHW (the 64-column row where
    # s^3 C_out < 128), not on channels_last_3d, not grad_input; none with padding, output padding or k != stride
    assert selector.select_config(k2, "fprop", "tf32").family != "patch"
    assert selector.select_config(k2, "dgrad", "3xtf32").family != "patch"
    for prec in ("tf32", "3xtf32"):
        assert selector.select_config(k2, "dgrad", prec, out_ncdhw=True).name == f"patch_{prec}_128x128"
        assert selector.select_config(Problem(2, 64, 8, (32, 32, 32), 2, 2, 0), "dgrad", prec,
                                      out_ncdhw=True).name == f"patch_{prec}_128x64"
        assert selector.select_config(k2, "fprop", prec, out_ncdhw=True).family != "patch"
        assert selector.select_config(Problem(2, 64, 32, (32, 32, 32), 3, 2, 1), "dgrad", prec,
                                      out_ncdhw=True).family != "patch"
    for p in [Problem(2, 64, 32, (32, 32, 32), 2, 2, 1), Problem(2, 64, 32, (32, 32, 32), 2, 2, 0, 1),
              Problem(2, 64, 32, (32, 32, 32), 3, 2, 1), Problem(2, 64, 32, (32, 32, 32), 1, 1, 0)]:
        assert selector.select_config(p, "fprop", "fp32").family != "patch", p
    # a build without the patch rows
    assert selector.select_config(k2, "fprop", "fp32", compiled={"fprop_fp32_128x64x8_64x32x8_s4"}).name == \
        "fprop_fp32_128x64x8_64x32x8_s4"
    monkeypatch.setenv("CONVT3D_PATCH", "0")
    assert selector.select_config(k2, "fprop", "fp32").name == "fprop_fp32_128x64x8_64x32x8_s4"
    assert selector.select_config(k3, "fprop", "fp32").family == "cutlass2x"
    assert selector.select_config(k2, "dgrad", "fp32").family == "direct"
    # k < stride (phases of one tap or none, like pointwise) is not measured: it keeps the rows
    for p in [Problem(2, 64, 32, (32, 32, 32), 1, 1, 0), Problem(2, 64, 32, (32, 32, 32), 3, 2, 1),
              Problem(2, 64, 32, (32, 32, 32), 4, 2, 1), Problem(2, 64, 32, (32, 32, 32), 3, 1, 1),
              Problem(2, 64, 32, (32, 32, 32), 1, 2, 0), Problem(2, 64, 32, (32, 32, 32), 3, 4, 0)]:
        assert selector.select_config(p, "fprop", "fp32").family == "direct", p
    monkeypatch.setattr(selector, "SIMT_ONE_TAP_STOCK", False)
    assert selector.select_config(k2, "fprop", "fp32").family == "direct"
    assert selector.select_config(k3, "fprop", "fp32").family == "direct"


def test_ffma_fprop_row_takes_narrow_strided_grad_input(monkeypatch):
    """Exact-fp32 grad_input of at most 64 input channels goes to the FFMA Fprop row (csrc/ffma_fprop.cuh) where the
    stock SIMT Fprop would run it, and on the narrow strided layers (stride < k < 3 * stride since v0.86, C_in 64) over
    the FFMA tap-reuse rows at any wave count, in either output layout. Wider layers keep the stock 128x128 tile; k7 s2,
    48 channels, unit stride and k == stride keep the tap-reuse and patch rows. Channel counts that are not
    multiples of 4, a build without it and CONVT3D_FFMA_FPROP=0 keep the stock kernel (the tap-reuse row where
    the rule took it from one); family="ffma" forces it; tf32 and 3xtf32 never take it."""
    row = "ffma_fprop_fp32_128x64x32_s3"
    taken = [Problem(2, 64, 32, (64, 64, 64), 3, 2, 1), Problem(4, 64, 32, (48, 48, 48), 3, 2, 1),
             Problem(2, 64, 32, (32, 32, 32), 3, 2, 1, 1), Problem(1, 64, 32, (8, 8, 8), 3, 2, 1),
             Problem(16, 64, 32, (32, 32, 32), 5, 2, 2)]
    for p in taken:
        for ncdhw in (False, True):
            assert selector.select_config(p, "fprop", "fp32", out_ncdhw=ncdhw).name == row, p
        assert selector.fprop_slices(p, BY_NAME[row], 132) == 1
        for prec in ("tf32", "3xtf32"):
            assert selector.select_config(p, "fprop", prec).family != "ffma", (p, prec)
    kept = [Problem(2, 256, 128, (16, 16, 16), 3, 2, 1), Problem(2, 128, 64, (32, 32, 32), 3, 2, 1),
            Problem(1, 128, 64, (24, 24, 24), 5, 2, 2), Problem(2, 64, 32, (24, 24, 24), 7, 2, 3),
            Problem(4, 48, 32, (48, 48, 48), 3, 2, 1), Problem(4, 64, 32, (16, 64, 64), 3, 1, 1),
            Problem(2, 128, 64, (32, 32, 32), 3, 1, 1), Problem(2, 64, 32, (32, 32, 32), 2, 2, 0), HEADLINE]
    for p in kept:
        assert selector.select_config(p, "fprop", "fp32").family != "ffma", p
    assert selector.select_config(kept[0], "fprop", "fp32", family="ffma").name == row
    odd = Problem(2, 62, 32, (16, 16, 16), 3, 2, 1)  # C_in 62: not in 16-byte chunks
    assert selector.select_config(odd, "fprop", "fp32").family != "ffma"
    dec3 = taken[0]
    assert selector.select_config(dec3, "fprop", "fp32", compiled={"fprop_fp32_128x64x8_64x32x8_s4"}).name == \
        "fprop_fp32_128x64x8_64x32x8_s4"
    monkeypatch.setenv("CONVT3D_FFMA_FPROP", "0")
    assert selector.select_config(dec3, "fprop", "fp32").name == "fprop_fp32_128x64x8_64x32x8_s4"
    assert selector.select_config(taken[2], "fprop", "fp32").family == "direct"


def test_ncdhw_pair_rule_puts_both_ffma_rows_in_their_nc_modes(monkeypatch):
    """The pair rule (direct.nc_pair, on by default): on an NCDHW exact-fp32 layer of 32 < C_in <= 128 whose forward
    writes NCDHW itself (unit stride, or a reduction of at most FFMA_NC_PAIR_MAX_REDUCTION: U-Net 128->64's 1024),
    grad_input takes the FFMA row where the stock SIMT GEMM would run it (a tap-reuse row that reads grad_y in place
    stays: medium), grad_weight the FFMA 64-row tile instead of the 128-row one, both in their NC modes, and the
    strided forward writes NCDHW; channels_last_3d layers, wider ones, longer strided reductions (V-Net up k5: 3456)
    and any of the knobs off keep the rows as they were."""
    dec2, vnet_up, medium = (Problem(2, 128, 64, (32, 32, 32), 3, 2, 1), Problem(1, 128, 64, (24, 24, 24), 5, 2, 2),
                             Problem(2, 128, 64, (32, 32, 32), 3, 1, 1))
    assert direct.nc_pair(dec2) and not direct.nc_pair(vnet_up) and direct.nc_pair(medium)
    gi = selector.select_config(dec2, "fprop", "fp32", out_ncdhw=True)
    gw = selector.select_config(dec2, "wgrad", "fp32", out_ncdhw=True)
    fwd = selector.select_config(dec2, "dgrad", "fp32", out_ncdhw=True)
    assert gi.name == "ffma_fprop_fp32_128x64x32_s3" and direct.ffma_fprop_reads_ncdhw(gi, dec2)
    assert gw.family == "ffma" and gw.tile[0] == 64 and direct.ffma_wgrad_reads_ncdhw(gw, dec2)
    assert fwd.simt and direct.reduction_length(dec2, "dgrad") > direct.SIMT_STRIDED_NCDHW_MAX_REDUCTION
    assert direct.writes_ncdhw(fwd, dec2, "dgrad")
    assert selector.select_config(dec2, "fprop", "fp32").family == "cutlass2x"  # channels_last_3d
    assert selector.select_config(dec2, "wgrad", "fp32").tile[0] == 128
    assert selector.select_config(medium, "fprop", "fp32", out_ncdhw=True).family == "direct"  # reads in place
    m_gw = selector.select_config(medium, "wgrad", "fp32", out_ncdhw=True)
    assert m_gw.tile[0] == 64 and direct.ffma_wgrad_reads_ncdhw(m_gw, medium)
    assert selector.select_config(medium, "wgrad", "fp32").tile[0] == 128
    assert selector.select_config(vnet_up, "fprop", "fp32", out_ncdhw=True).family != "ffma"
    assert selector.select_config(vnet_up, "wgrad", "fp32", out_ncdhw=True).tile[0] == 128
    v_fwd = selector.select_config(vnet_up, "dgrad", "fp32", out_ncdhw=True)
    assert v_fwd.simt and not direct.writes_ncdhw(v_fwd, vnet_up, "dgrad")
    wide = Problem(2, 256, 128, (16, 16, 16), 3, 2, 1)
    assert selector.select_config(wide, "fprop", "fp32", out_ncdhw=True).family == "cutlass2x"
    assert selector.select_config(wide, "wgrad", "fp32", out_ncdhw=True).tile[0] == 128
    for knob, off in (("FFMA_FPROP_NCDHW", False), ("FFMA_WGRAD_NCDHW", False), ("FFMA_WGRAD_NCDHW_ROWS", (128,)),
                      ("FFMA_NC_PAIR_MAX_CIN", 64), ("FFMA_NC_PAIR_MAX_REDUCTION", 768)):
        with monkeypatch.context() as m:
            m.setattr(direct, knob, off)
            assert selector.select_config(dec2, "fprop", "fp32", out_ncdhw=True).family == "cutlass2x", knob
            assert selector.select_config(dec2, "wgrad", "fp32", out_ncdhw=True).tile[0] == 128, knob
            assert not direct.writes_ncdhw(fwd, dec2, "dgrad"), knob
            if knob != "FFMA_NC_PAIR_MAX_REDUCTION":  # unit stride: no reduction bound
                assert selector.select_config(medium, "wgrad", "fp32", out_ncdhw=True).tile[0] == 128, knob


def test_ncdhw_pair_takes_the_ffma_row_over_a_parity_summing_row(monkeypatch):
    """The pair rule's 64-channel reach (v0.86): 3D-GAN k5 64->32 in NCDHW, whose tap-reuse grad_input sums grad_y's
    parities from a copy, takes the FFMA row in its NC mode and its forward (reduction 1728) writes NCDHW; a
    unit-stride layer's tap-reuse row, which reads grad_y in place, stays. With v0.85's narrow FFMA rule
    (FFMA_FPROP_NARROW_K_STRIDES 2) channels_last_3d keeps the parity row, and so does NCDHW with any of the pair's
    three knobs back at its v0.85 value (FFMA_NC_PAIR_PARITY off, MIN_CIN 64, MAX_REDUCTION 1024)."""
    g3, video = Problem(16, 64, 32, (32, 32, 32), 5, 2, 2), Problem(4, 64, 32, (16, 64, 64), 3, 1, 1)
    assert direct.nc_pair(g3) and direct.reduction_length(g3, "dgrad") == 1728
    gi = selector.select_config(g3, "fprop", "fp32", out_ncdhw=True)
    assert gi.family == "ffma" and direct.ffma_fprop_reads_ncdhw(gi, g3)
    fwd = selector.select_config(g3, "dgrad", "fp32", out_ncdhw=True)
    assert fwd.simt and direct.writes_ncdhw(fwd, g3, "dgrad")
    with monkeypatch.context() as m:  # v0.85's narrow rule: channels_last_3d keeps the parity row
        m.setattr(selector, "FFMA_FPROP_NARROW_K_STRIDES", 2)
        cl = selector.select_config(g3, "fprop", "fp32")
        assert cl.family == "direct" and direct.sums_parities(cl, g3)
        m.setattr(direct, "FFMA_NC_PAIR_PARITY", False)
        assert selector.select_config(g3, "fprop", "fp32", out_ncdhw=True) == cl
    v_gi = selector.select_config(video, "fprop", "fp32", out_ncdhw=True)
    assert v_gi.family == "direct" and not direct.sums_parities(v_gi, video)
    for knob, old in (("FFMA_NC_PAIR_PARITY", False), ("FFMA_NC_PAIR_MIN_CIN", 64), ("FFMA_NC_PAIR_MAX_REDUCTION", 1024)):
        with monkeypatch.context() as m:
            m.setattr(selector, "FFMA_FPROP_NARROW_K_STRIDES", 2)
            m.setattr(direct, knob, old)
            assert selector.select_config(g3, "fprop", "fp32", out_ncdhw=True) == cl, knob
            assert direct.writes_ncdhw(fwd, g3, "dgrad") == (knob == "FFMA_NC_PAIR_PARITY"), knob
            assert selector.select_config(video, "fprop", "fp32", out_ncdhw=True) == v_gi, knob


def test_ffma_grad_input_takes_k_below_three_strides(monkeypatch):
    """The FFMA grad_input's narrow rule (FFMA_FPROP_NARROW_K_STRIDES, 3 since v0.86): 64-channel strided layers with
    stride < k < 3 * stride (k3 s2, k5 s2, k5 s3, k7 s3) take the FFMA row over the tap-reuse row in channels_last_3d;
    k7 s2 (four taps per parity along an axis), unit stride and 48 channels keep the tap-reuse rows; at 2 the k5 s2
    and k7 s3 layers go back to them."""
    taken = [Problem(16, 64, 32, (32, 32, 32), 5, 2, 2), Problem(2, 64, 32, (24, 24, 24), 7, 3, 3),
             Problem(4, 64, 32, (24, 24, 24), 5, 3, 2), Problem(2, 64, 32, (64, 64, 64), 3, 2, 1)]
    kept = [Problem(2, 64, 32, (24, 24, 24), 7, 2, 3), Problem(4, 64, 32, (16, 64, 64), 3, 1, 1),
            Problem(4, 48, 32, (24, 24, 24), 5, 2, 2)]
    for p in taken:
        assert selector.select_config(p, "fprop", "fp32").family == "ffma", p
    for p in kept:
        assert selector.select_config(p, "fprop", "fp32").family == "direct", p
    monkeypatch.setattr(selector, "FFMA_FPROP_NARROW_K_STRIDES", 2)
    assert [selector.select_config(p, "fprop", "fp32").family for p in taken] == ["direct", "direct", "ffma", "ffma"]


def test_patch_rows_fit_k_equal_stride_only():
    """patch_fits mirrors PatchKernel::geometry and PatchWgradKernel::geometry: k == stride in 2..4, no padding or
    output padding, every tensor under 2^31 elements; grad_weight in exact fp32 takes its row."""
    k2 = Problem(2, 64, 32, (32, 32, 32), 2, 2, 0)
    assert selector.select_config(k2, "wgrad", "fp32", out_ncdhw=True).name == "patch_wgrad_fp32_64x128"
    # a channels_last_3d grad_y: the FFMA GEMM
    assert selector.select_config(k2, "wgrad", "fp32").family == "ffma"
    # not in tf32 or 3xtf32 (v0.75: their step lost with it, selector.PATCH_TENSOR_CORE_PASSES)
    assert selector.select_config(k2, "wgrad", "tf32", out_ncdhw=True).family != "patch"
    assert selector.select_config(k2, "wgrad", "3xtf32", out_ncdhw=True).family != "patch"
    assert selector.select_config(Problem(2, 64, 32, (32, 32, 32), 3, 2, 1), "wgrad", "fp32",
                                  out_ncdhw=True).family != "patch"
    assert selector.patch_fits(Problem(2, 64, 32, (32, 32, 32), 2, 2, 0), "dgrad")
    assert selector.patch_fits(Problem(1, 3, 5, (7, 6, 5), 4, 4, 0), "fprop")
    assert selector.patch_fits(Problem(2, 64, 32, (32, 32, 32), 2, 2, 0), "wgrad")
    assert not selector.patch_fits(Problem(2, 64, 32, (32, 32, 32), 5, 5, 0), "dgrad")
    assert not selector.patch_fits(Problem(2, 64, 32, (32, 32, 32), 1, 1, 0), "dgrad")
    # 2 x 256 x 8 x 128^3 elements in grad_y: past 2^31
    assert not selector.patch_fits(Problem(2, 128, 256, (128, 128, 128), 2, 2, 0), "fprop")
    assert selector.patch_fits(Problem(1, 64, 64, (128, 128, 128), 2, 2, 0), "fprop")


def test_narrow_strided_grad_input_leaves_the_ffma_rows_past_one_wave(monkeypatch):
    """Exact-fp32 strided grad_input of 64 input channels with stride < k < 2 * stride runs on
    the stock 128x64 SIMT tile once the FFMA row's CTAs need more than SIMT_NARROW_FFMA_MAX_WAVES waves; within
    one wave, with k >= 2 * stride (k5 s2: more taps per parity to reuse), with 48 channels, at unit stride and in
    the forward, the FFMA rows stay. NCDHW output follows the rule unless SIMT_NARROW_FFMA_NCDHW is off. (The
    stock tile with the FFMA Fprop row off, which takes its place where on.)"""
    monkeypatch.setenv("CONVT3D_FFMA_FPROP", "0")
    stock = "fprop_fp32_128x64x8_64x32x8_s4"
    dec3 = Problem(2, 64, 32, (64, 64, 64), 3, 2, 1)  # 1024 CTAs of the 8x8x16 row
    for p in (dec3, Problem(4, 64, 32, (48, 48, 48), 3, 2, 1), Problem(1, 64, 32, (40, 40, 40), 3, 2, 1),
              Problem(4, 64, 32, (32, 32, 32), 3, 2, 1)):
        assert selector.select_config(p, "fprop", "fp32", num_sms=132).name == stock, p
    for p in (Problem(2, 64, 32, (32, 32, 32), 3, 2, 1, 1),  # 128 CTAs: one wave
              Problem(16, 64, 32, (32, 32, 32), 5, 2, 2),  # k5 s2
              Problem(4, 48, 32, (48, 48, 48), 3, 2, 1),  # 48 channels
              Problem(8, 64, 32, (32, 32, 32), 3, 1, 1)):  # unit stride
        assert selector.select_config(p, "fprop", "fp32", num_sms=132).family == "direct", p
    assert selector.select_config(dec3, "fprop", "fp32", num_sms=132, out_ncdhw=True).name == stock
    assert selector.select_config(dec3, "dgrad", "fp32", num_sms=132).family == "direct"
    # the edge: 1024 CTAs are one wave of 1024 SMs, not of 1023
    assert selector.select_config(dec3, "fprop", "fp32", num_sms=1024).family == "direct"
    assert selector.select_config(dec3, "fprop", "fp32", num_sms=1023).name == stock
    monkeypatch.setattr(selector, "SIMT_NARROW_FFMA_NCDHW", False)
    assert selector.select_config(dec3, "fprop", "fp32", num_sms=132, out_ncdhw=True).family == "direct"
    assert selector.select_config(dec3, "fprop", "fp32", num_sms=132).name == stock
    monkeypatch.setattr(selector, "SIMT_NARROW_FFMA_MAX_WAVES", float("inf"))
    assert selector.select_config(dec3, "fprop", "fp32", num_sms=132).family == "direct"


def test_simt_k5_rows_stage_four_channels_only_where_eight_do_not_fit():
    """k = 5 at unit stride: no 8-channel FFMA tap-reuse row fits two stages, so the forward and grad_input
    take the 4-channel (_c4) rows; wherever an 8-channel row fits, the _c4 rows are never chosen (but where the
    pass reduces over at most 4 channels: test_output_heads_padded_to_4_channels)."""
    narrow = Problem(1, 32, 16, (64, 64, 64), 5, 1, 2)  # V-Net k5 refinement
    assert [selector.select_config(narrow, op, "fp32").name for op in ("dgrad", "fprop", "wgrad")] == \
        ["direct_fp32_8x8x16_n16_m8_c4", "direct_fp32_8x8x16_n32_m8_c4", "ffma_wgrad_fp32_32x256x16_s4"]
    for c_in, c_out, k, s, p in [(32, 16, 3, 1, 1), (48, 24, 3, 1, 0), (64, 32, 5, 2, 2), (64, 32, 3, 2, 1),
                                 (16, 8, 5, 1, 2), (128, 64, 5, 1, 2), (24, 16, 7, 1, 3)]:
        prob = Problem(2, c_in, c_out, (32, 32, 32), k, s, p)
        for op in ("dgrad", "fprop"):
            cfg = selector.select_config(prob, op, "fp32")
            if cfg.family != "direct" or cfg.kc == 8:
                continue
            assert k == 5 and s == 1, (prob, op, cfg.name)
            others = [o for o in selector.kernels_for(op, "fp32", "direct") if o.kc == 8]
            assert not any(selector.direct_fits(prob, op, o) for o in others), (prob, op, cfg.name)


def test_output_heads_padded_to_4_channels(monkeypatch):
    """Layers padded to 4 channels (channel_pad): the exact-fp32 rows stage 4 reduction channels (_c4), the tf32
    grad_input takes the thin rows where strided (v0.79), the exact-fp32 grad_weight takes the FFMA GEMM's 64 x 128 tile
    (v0.78 `--configs`); SR head's 8 output channels keep their rows."""
    strided, unit = Problem(2, 32, 4, (64, 64, 64), 3, 2, 1, 1), Problem(4, 64, 4, (16, 64, 64), 3, 1, 1)
    for prob in (strided, unit):
        assert selector.select_config(prob, "fprop", "fp32").name == "direct_fp32_8x8x16_n32_m8_c4"
        assert selector.select_config(prob, "wgrad", "fp32").name == "ffma_wgrad_fp32_64x128x16_s4"
    # tf32 strided grad_input: the thin rows, BN by C_in; not at unit stride (the tap-reuse rows), where the filter is
    # not compiled, past 4 channels or in the other precisions; a filtered build without them falls back as before
    # (the stock 256x32 tile); CONVT3D_THIN=0 turns the rule off.
    assert selector.select_config(strided, "fprop", "tf32").name == "thin_fprop_tf32_k3_n32"
    assert selector.select_config(unit, "fprop", "tf32").name == "wgmma_ws_tf32_2x8x14_kx3_n64_wg2_s8"
    assert selector.select_config(Problem(2, 128, 4, (8, 8, 8), 3, 3, 1), "fprop", "tf32").name == \
        "thin_fprop_tf32_k3_n64"
    for other in (Problem(2, 32, 4, (16, 16, 16), 5, 2, 2), Problem(2, 32, 8, (16, 16, 16), 3, 2, 1)):
        assert selector.select_config(other, "fprop", "tf32").family != "thin", other
    monkeypatch.setenv("CONVT3D_THIN", "0")
    assert selector.select_config(strided, "fprop", "tf32").name == "fprop_tf32_256x32x32_64x32x32_s3"
    monkeypatch.delenv("CONVT3D_THIN")
    for prec in ("fp32", "3xtf32"):
        assert selector.select_config(strided, "fprop", prec).family != "thin"
    assert selector.select_config(strided, "fprop", "tf32", compiled=["fprop_tf32_256x32x32_64x32x32_s3"]).name == \
        "fprop_tf32_256x32x32_64x32x32_s3"
    assert selector.select_config(strided, "fprop", "tf32", family="thin").name == "thin_fprop_tf32_k3_n32"
    with pytest.raises(LookupError):
        selector.select_config(Problem(2, 32, 8, (16, 16, 16), 3, 2, 1), "fprop", "tf32", family="thin")
    assert selector.select_config(Problem(2, 4, 32, (32, 32, 32), 3, 2, 1, 1), "dgrad", "fp32").kc == 4
    sr_head = Problem(1, 32, 8, (128, 128, 128), 3, 1, 1)
    assert [selector.select_config(sr_head, op, "fp32").name for op in ("dgrad", "fprop", "wgrad")] == \
        ["direct_fp32_8x8x16_n8_m8", "direct_fp32_8x8x16_n32_m8", "direct_wgrad_fp32_4x16_m32n8_o3"]
    assert selector.select_config(sr_head, "fprop", "tf32").family != "cutlass2x"


@pytest.mark.parametrize("op", ["dgrad", "fprop", "wgrad"])
@pytest.mark.parametrize("prec", PRECISIONS)
@pytest.mark.parametrize("c_in, c_out", [(1, 1), (3, 8), (8, 3), (5, 7), (24, 48), (48, 24), (64, 256)])
def test_every_choice_matches_op_and_alignment(op, prec, c_in, c_out):
    p = Problem(2, c_in, c_out, (9, 10, 11), 3, 2, 1)
    k = selector.select_config(p, op, prec)
    assert k.serves(op)
    assert c_in % k.align == 0 and c_out % k.align == 0
    if c_in % 4 == 0 and c_out % 4 == 0:
        assert k.precision == prec
    else:  # unaligned channels run exact fp32 (SIMT): never less accurate than asked
        assert k.precision == "fp32"


def test_forced_config_and_errors(monkeypatch):
    name = "dgrad_tf32_128x128x16_64x64x16_s4"
    assert selector.select_config(HEADLINE, "dgrad", "tf32", config=name).name == name
    # a forced config for another op does not affect this op
    other = selector.select_config(HEADLINE, "fprop", "tf32", config=name)
    assert other.serves("fprop") and other.name != name
    monkeypatch.setenv("CONVT3D_CONFIG", name)
    assert selector.select_config(HEADLINE, "dgrad", "fp32").name == name
    with pytest.raises(ValueError, match="not a kernel"):
        selector.select_config(HEADLINE, "dgrad", "tf32", config="nope")
    with pytest.raises(ValueError, match="multiples of 4"):
        selector.select_config(Problem(1, 3, 3, (4, 4, 4), 3), "dgrad", "tf32", config=name)


def test_filtered_build_falls_back_to_a_compiled_kernel():
    only = {"dgrad_tf32_128x64x32_64x32x32_s3"}
    assert selector.select_config(HEADLINE, "dgrad", "tf32", compiled=only).name in only
    assert selector.select_config(HEADLINE, "dgrad", "tf32", compiled={"direct_tf32_1x8x16_n32"}).name == \
        "direct_tf32_1x8x16_n32"
    with pytest.raises(LookupError):
        selector.select_config(HEADLINE, "fprop", "tf32", compiled=only)


def test_split_k_fills_machine_and_is_bounded():
    k = selector.select_config(HEADLINE, "wgrad", "tf32", **STOCK)
    s = selector.split_k_slices(HEADLINE, k, 132)
    m, n, kk = HEADLINE.gemm("wgrad")
    assert 1 < s <= kk // k.tile[2] // 8
    tiles = -(-m // k.tile[0]) * -(-n // k.tile[1])
    assert tiles * s >= 2 * 132
    tiny = Problem(1, 4, 4, (2, 2, 2), 1)
    assert selector.split_k_slices(tiny, selector.select_config(tiny, "wgrad", "fp32")) == 1


def test_ffma_wgrad_128_rows_take_the_fewest_slices_at_the_same_busiest_sm_share():
    """The FFMA grad_weight's 128-row tile: the fewest slices whose busiest SM carries no more of the reduction
    than the 4-wave count's (selector.FFMA_ONE_CTA_PER_SM_ROWS); the narrower tiles one whole wave of their
    resident CTAs (selector.FFMA_WGRAD_WAVES), no more slices than that count."""
    from fractions import Fraction

    from bench.shapes import SWEEP
    cases = {c.name: c for c in SWEEP}
    expect = {"unet3d-dec1": 2, "gan3d-g1": 2, "vnet-up": 2, "unet3d-dec2": 8, "gan3d-g2": 8, "medium": 8}
    ffma = {k.name: k for k in KERNELS if k.family == "ffma" and not k.streamk}
    for name, c in cases.items():
        p = Problem(c.n, c.c_in, c.c_out, tuple(c.spatial), c.k, c.stride, c.padding, c.output_padding)
        assert all(selector.split_k_slices(p, k, 132) == 1 for k in KERNELS if k.streamk)
        for k in ffma.values():
            s = selector.split_k_slices(p, k, 132)
            m, n, kk = p.gemm("wgrad")
            tiles = -(-m // k.tile[0]) * -(-n // k.tile[1])
            four_waves = max(1, min(-(-4 * 132 // tiles), -(-kk // k.tile[2]) // 8, (256 << 20) // (4 * m * n)))
            share = lambda x: Fraction(-(-tiles * x // 132), x)
            if k.tile[0] == 128:
                assert s <= four_waves and share(s) <= share(four_waves), (name, k.name)
                assert all(share(x) > share(four_waves) for x in range(1, s)), (name, k.name)
            else:  # FFMA_WGRAD_WAVES whole waves of the tile's resident CTAs, within the same caps
                slots = 132 * selector.FFMA_STREAMK_PER_SM[k.tile[0]]
                waves = max(1, min(slots // tiles, -(-kk // k.tile[2]) // 8, (256 << 20) // (4 * m * n)))
                assert s == waves and (tiles * s <= slots or s == 1), (name, k.name)
                assert s <= four_waves, (name, k.name)  # no more partial sums than the old count's
        k = selector.select_config(p, "wgrad", "fp32", compiled={k.name for k in KERNELS if not k.streamk})
        if name in expect:
            assert k.family == "ffma" and selector.split_k_slices(p, k, 132) == expect[name], (name, k.name)


def test_stock_wgrad_grid_by_the_busiest_sm_share_of_its_resident_ctas(monkeypatch):
    """The stock grad_weight kernels' split-K count where the runtime says how many CTAs an SM holds: at most the
    4-wave count, with a busiest-SM share of the reduction no larger than that count's and than any smaller
    count's; the 4-wave count where it does not say, or with STOCK_WGRAD_BY_SHARE off. The sweep's stock 3xtf32
    rows at three per SM take the slices measured in v0.81."""
    from fractions import Fraction
    from bench.shapes import SWEEP
    stock = [k for k in KERNELS if k.family == "cutlass2x" and k.op == "wgrad"]
    for c in SWEEP:
        p = c.problem()
        m, n, kk = p.gemm("wgrad")
        for k in stock:
            tiles = -(-m // k.tile[0]) * -(-n // k.tile[1])
            caps = min(-(-kk // k.tile[2]) // 8, (256 << 20) // (4 * m * n))
            old = max(1, min(-(-4 * 132 // tiles), caps))
            assert selector.split_k_slices(p, k, 132) == old
            for r in (1, 2, 3, 4):
                s = selector.split_k_slices(p, k, 132, resident=r)
                share = [None] + [Fraction(-(-tiles * i // (132 * r)), i) for i in range(1, old + 1)]
                assert 1 <= s <= old and share[s] == min(share[1:]), (c.name, k.name, r)
                assert all(share[i] > share[s] for i in range(1, s)), (c.name, k.name, r)
            monkeypatch.setattr(selector, "STOCK_WGRAD_BY_SHARE", False)
            assert selector.split_k_slices(p, k, 132, resident=3) == old
            monkeypatch.setattr(selector, "STOCK_WGRAD_BY_SHARE", True)
        # The FFMA narrow tiles: the runtime's count where given (two on an A100 for the 32-row tile), else the mirror.
        for k in KERNELS:
            if k.family == "ffma" and not k.streamk and k.tile[0] != 128:
                tiles = -(-m // k.tile[0]) * -(-n // k.tile[1])
                caps = min(-(-kk // k.tile[2]) // 8, (256 << 20) // (4 * m * n))
                assert selector.split_k_slices(p, k, 108, resident=2) == max(1, min(108 * 2 // tiles, caps))
                assert selector.split_k_slices(p, k, 132) == selector.split_k_slices(
                    p, k, 132, resident=selector.FFMA_STREAMK_PER_SM[k.tile[0]])
    k3 = next(k for k in stock if k.name == "wgrad_3xtf32_64x64x32_32x32x32_s3")
    measured = {"vnet-refine": (17, 12), "gan3d-g3": (9, 6), "gan3d-g1": (3, 3), "vnet-up": (3, 3),
                "unet3d-k2": (132, 99)}
    for c in SWEEP:
        if c.name in measured:
            assert (selector.split_k_slices(c.problem(), k3, 132),
                    selector.split_k_slices(c.problem(), k3, 132, resident=3)) == measured[c.name], c.name


def test_ffma_wgrad_stream_k_where_a_tile_has_few_pieces(monkeypatch):
    """The stream-K twin of the FFMA grad_weight's tile where its grid cuts a tile into at most
    FFMA_STREAMK_MAX_PIECES pieces (their sums add one after another); split-K elsewhere, unless only the
    twin is built. (The U-Net k2 up is the patch row's with that on: CONVT3D_PATCH=0 keeps it here.)"""
    monkeypatch.setenv("CONVT3D_PATCH", "0")
    from bench.shapes import SWEEP
    streamk = {"unet3d-dec1", "gan3d-g1", "vnet-up", "unet3d-dec2", "gan3d-g2", "medium", "gan3d-g3"}
    split = {"unet3d-dec3", "sr-up2", "unet3d-k2", "vnet-refine", "unet-outpad"}
    everything = {k.name for k in KERNELS}
    for c in SWEEP:
        p = Problem(c.n, c.c_in, c.c_out, tuple(c.spatial), c.k, c.stride, c.padding, c.output_padding)
        k = selector.select_config(p, "wgrad", "fp32", num_sms=132, compiled=everything)
        if c.name in streamk:
            assert k.streamk and selector.streamk_pieces(p, k, 132) <= selector.FFMA_STREAMK_MAX_PIECES, c.name
            assert selector.split_k_slices(p, k, 132) == 1
        elif c.name in split:
            assert k.family == "ffma" and not k.streamk, c.name
            twin = BY_NAME[k.name + "_sk"]
            assert selector.streamk_pieces(p, twin, 132) > selector.FFMA_STREAMK_MAX_PIECES, c.name
            only = everything - {k.name}
            assert selector.select_config(p, "wgrad", "fp32", num_sms=132, compiled=only).name == twin.name
        else:
            assert k.family != "ffma", c.name


def test_table_names_unique_and_generated_files_current():
    assert len(BY_NAME) == len(KERNELS)
    import subprocess, sys, pathlib
    root = pathlib.Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, str(root / "csrc" / "generate_kernels.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def _phase_emulation(x, w, p: Problem):
    """Run the phase decomposition with torch ops (float64) to check its index math."""
    y = torch.zeros((p.n, p.c_out) + p.out_spatial, dtype=x.dtype)
    s = p.stride
    for ph in phases(p):
        if ph.empty or ph.no_taps:
            continue
        r = ph.r
        ws = w[:, :, r[0]::s, r[1]::s, r[2]::s]
        full = F.conv_transpose3d(x, ws)  # out[o'] = sum_j x[o' - j] w[j]
        # phase out[m] = full[m + pad], zero where m + pad falls outside full
        sub = torch.zeros((p.n, p.c_out) + ph.count, dtype=x.dtype)
        src = [slice(pd, min(pd + c, fs)) for pd, c, fs in zip(ph.pad, ph.count, full.shape[2:])]
        ext = [sl.stop - sl.start for sl in src]
        sub[:, :, :ext[0], :ext[1], :ext[2]] = full[:, :, src[0], src[1], src[2]]
        f = ph.first
        y[:, :, f[0]::s, f[1]::s, f[2]::s] = sub
    return y


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("s", [1, 2, 3, 4])
@pytest.mark.parametrize("pad_kind", ["zero", "half", "max"])
@pytest.mark.parametrize("op_kind", ["zero", "max"])
def test_phase_decomposition_reproduces_strided_transposed_conv(k, s, pad_kind, op_kind):
    pad = {"zero": 0, "half": k // 2, "max": k - 1}[pad_kind]
    op = {"zero": 0, "max": s - 1}[op_kind]
    spatial = (3, 4, 5)
    if min(out_size(d, k, s, pad, op) for d in spatial) <= 0:
        pytest.skip("empty output")
    p = Problem(2, 3, 2, spatial, k, s, pad, op)
    x = torch.randn(2, 3, *spatial, dtype=torch.float64)
    w = torch.randn(3, 2, k, k, k, dtype=torch.float64)
    ref = F.conv_transpose3d(x, w, stride=s, padding=pad, output_padding=op)
    got = _phase_emulation(x, w, p)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref)
    # every output position belongs to exactly one phase
    cover = torch.zeros(p.out_spatial, dtype=torch.int32)
    for ph in phases(p):
        f = ph.first
        cover[f[0]::s, f[1]::s, f[2]::s] += 1
    assert bool((cover == 1).all())


@pytest.mark.skipif(not ops.HAS_CUSTOM_OP, reason="torch.library.custom_op needs torch >= 2.4")
@pytest.mark.parametrize("channels_last", [False, True])
def test_fake_shapes_and_formats(channels_last):
    x = torch.empty(2, 8, 5, 6, 7, device="meta")
    if channels_last:
        x = x.to(memory_format=torch.channels_last_3d)
    w = torch.empty(8, 4, 3, 3, 3, device="meta")
    for op in (0, 1):
        y = torch.ops.convt3d_cutlass.conv_transpose3d(x, w, None, 2, 1, op, "tf32", "")
        assert y.shape == (2, 4, 9 + op, 11 + op, 13 + op)
        assert y.is_contiguous(memory_format=torch.channels_last_3d) == channels_last
        gx = torch.ops.convt3d_cutlass.conv_transpose3d_grad_input(y, w, 2, 1, op, channels_last, "tf32", "")
        assert gx.shape == x.shape
        gw = torch.ops.convt3d_cutlass.conv_transpose3d_grad_weight(y, x, 3, 2, 1, op, "tf32", "")
        assert gw.shape == w.shape


def test_stock_phases_split_their_reduction_in_fp32():
    """Serial split-K of the stock forward's stride phases: slices of two taps, at most four, exact fp32 only."""
    assert [selector.phase_split_k(t, "fp32") for t in (1, 2, 3, 4, 8, 27)] == [1, 1, 1, 2, 4, 4]
    assert {selector.phase_split_k(t, p) for t in (1, 8, 27) for p in ("tf32", "3xtf32")} == {1}
    g1 = Problem(16, 256, 128, (8, 8, 8), 3, 2, 1)
    taps = [ph.taps[0] * ph.taps[1] * ph.taps[2] for ph in phases(g1)]
    assert sorted(selector.phase_split_k(t, "fp32") for t in taps) == [1, 1, 1, 1, 2, 2, 2, 4]


def test_ffma_stream_k_ctas_per_sm_mirror_the_kernel():
    """selector.FFMA_STREAMK_PER_SM is csrc/ffma_wgrad.cuh's WgradShape::kStreamKPerSM for each tile."""
    import pathlib
    import re
    src = (pathlib.Path(__file__).resolve().parent.parent / "csrc" / "ffma_wgrad.cuh").read_text()
    blocks = re.search(r"kMinBlocks = .*BM == 128 \? (\d+) : (\d+);", src)
    per_sm = re.search(r"kStreamKPerSM = BM == 128 \? (\d+) : kMinBlocks;", src)
    assert blocks and per_sm, "the two constants changed form: update this test and the selector's mirror"
    kernel = {128: int(per_sm.group(1)), 64: int(blocks.group(2)), 32: int(blocks.group(2))}
    assert selector.FFMA_STREAMK_PER_SM == kernel
