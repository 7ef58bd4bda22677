"""Which compiled kernel runs a problem: a readable heuristic over the kernel table.

``select_config(problem, op, precision)`` returns a :class:`~convt3d_cutlass.kernel_table.KernelConfig`.
Forcing: the ``config=`` keyword of the public API, or ``CONVT3D_CONFIG`` (comma-separated kernel
names; each applies to the op it names).
"""
from __future__ import annotations

import math
import os
from fractions import Fraction
from typing import Iterable, Optional, Sequence, Tuple

from . import direct
from .kernel_table import BY_NAME, KERNELS, PRECISIONS, KernelConfig, kernels_for, supports_arch
from .problem import Problem

DEFAULT_SMS = 132  # H100 SXM; only used when no device is visible (CPU tests)
DEFAULT_SMEM = direct.SM90_SMEM_OPTIN  # H100 opt-in shared memory per block (A100: 166912)
DEFAULT_CAPABILITY = (9, 0)


def _aligned(p: Problem, op: str, k: KernelConfig) -> bool:
    # Tensor-op Conv3d iterators load 128 bits (4 floats) per access along channels on both
    # operands and in the epilogue, so both channel counts must be multiples of 4.
    return p.c_in % k.align == 0 and p.c_out % k.align == 0


def _pick(cands: Sequence[KernelConfig], tile_m: int, tile_n: int) -> KernelConfig:
    for k in cands:
        if k.tile[0] == tile_m and k.tile[1] == tile_n:
            return k
    raise LookupError(f"no {tile_m}x{tile_n} tile among {[k.name for k in cands]}")


def _heuristic(m: int, n: int, op: str, precision: str, num_sms: int, stride: int = 1) -> KernelConfig:
    cands = kernels_for(op, precision)
    if op == "wgrad":
        # GEMM M = C_in is small and K (all positions) long; parallelism comes from split-K.
        if precision == "tf32" and m > 64:
            return _pick(cands, 128, 128)
        if precision == "fp32" and m >= 128:
            # SIMT: the tile as tall as C_in fills, up to 256 (H100, v0.18: 256->128 layers 0.63 ms against
            # 0.68 with 128 rows and 0.87 with 64; 128-channel layers 1.13-1.33 against 1.61-2.01).
            return _pick(cands, 256 if m >= 256 else 128, 64)
        return cands[0]
    if precision == "fp32":
        # SIMT past 64 channels: 128x128 tiles (8x8 per thread in v0.18, half the operand loads per FFMA
        # of 128x64; 16x8 since v0.21, below), 1.2-1.7x faster on every C_in >= 128 grad_input measured
        # (v0.18). The forward's
        # stride phases run concurrently (launch.forward), so there the whole layer's tiles must fill
        # two waves (gan3d-g1: 0.59 ms against 0.70 with 128x64).
        whole = _tiles_128(m * (stride ** 3 if op == "dgrad" else 1), n)
        if n > 64 and (op == "fprop" or (stride > 1 and whole >= 2 * num_sms)):
            return _pick(cands, 128, 128)
        return _pick(cands, 128, 32 if n <= 32 else 64)
    if precision == "3xtf32":
        return _pick(cands, 128, 32 if n <= 32 else 64)
    # tf32: tall and narrow tiles when N (a channel count) is narrow; the wide tile past 64, except
    # for strided grad_input, where 128x64x32 measured 1.05-1.27x faster on every sweep shape.
    if n > 64:
        return _pick(cands, 128, 64) if op == "fprop" and stride > 1 else _pick(cands, 128, 128)
    if n > 32:
        return _pick(cands, 128, 64)
    if op == "fprop":
        return _pick(cands, 256, 32)
    # dgrad, N <= 32: 256-row tiles need enough rows to fill the machine twice over.
    return _pick(cands, 256, 32) if math.ceil(m / 256) >= 2 * num_sms else _pick(cands, 128, 32)


# The stock SIMT 128x128 tile runs 4 warps of 64x64 (16x8 outputs per thread: 24 operand loads per 128
# FFMA, against 16 per 64 for the 8x8 of 8 warps of 32x64; 254 registers, two CTAs per SM where the
# 8-warp form fit one). With two waves of tiles it runs 8 warps per SM; below that, serial split-K in two
# slices (fprop_slices) gives grad_input the second CTA. Against the 8-warp form and the FFMA rows (H100,
# fp32, v0.21, `bench/tools/cfgab.py`, ms):
# - grad_input, 512 tiles: U-Net 128->64 s2 0.79 against 0.95 (and 0.94 on the FFMA rows), 3D-GAN
#   128->64 s2 0.79 against 0.95 (0.93);
# - grad_input, one wave or less, with two slices: U-Net 256->128 s2 (128 tiles) 0.404 against 0.483,
#   3D-GAN 256->128 (128) 0.400 against 0.473, V-Net up k5 (108) 0.913 against 1.065 (unsplit it lost:
#   1.089);
# - forward, stride phases side by side (512 tiles or more): U-Net 256->128 0.452 against 0.590 with the
#   8-warp 64x32 form (and 0.562 on the FFMA rows), 3D-GAN 256->128 0.424 against 0.431.
# Strided layers with more than 64 output channels (the forward's C_out, grad_input's C_in) leave the FFMA
# tap-reuse rows for it at two waves of tiles (the tap reuse re-stages a stride-times wider halo per
# 32-channel block).
SIMT_WIDE_WARP_MIN_WAVES = 2


def _tiles_128(m: int, n: int) -> int:
    """128x128 tiles of an m x n GEMM (the forward: all stride phases together)."""
    return math.ceil(m / 128) * math.ceil(n / 128)


def _stock_wide_simt(problem: Problem, op: str, num_sms: int) -> bool:
    """Whether the stock 128x128 SIMT tile takes pass op (forward or grad_input) from the FFMA
    tap-reuse rows: strided, more than 64 output channels, SIMT_WIDE_WARP_MIN_WAVES waves of tiles."""
    m, n = problem.gemm(op)[:2]
    return problem.stride > 1 and n > 64 and _tiles_128(m, n) >= SIMT_WIDE_WARP_MIN_WAVES * num_sms


def direct_plan(problem: Problem, op: str):
    """(phase table, s_in, output channels) of the direct kernel for pass op, or None when the
    direct family cannot take the problem (alignment, phase count, grid size)."""
    if op not in ("dgrad", "fprop") or problem.c_in % 4 or problem.c_out % 4:
        return None
    if problem.stride ** 3 > direct.MAX_PHASES:
        return None
    if op == "dgrad":
        table, s_in, co = direct.forward_plan(problem)[0], 1, problem.c_out
    else:
        table, s_in, co = direct.grad_input_plan(problem), problem.stride, problem.c_in
    if problem.n * (len(table) // 13) > 65535:
        return None
    return table, s_in, co


def direct_fits(problem: Problem, op: str, k: KernelConfig, smem_limit: int = DEFAULT_SMEM,
                capability: Tuple[int, int] = DEFAULT_CAPABILITY) -> bool:
    """Whether tap-reuse kernel k can run pass op of problem on a GPU of this compute capability
    with smem_limit bytes of shared memory per block."""
    if not supports_arch(k, capability):
        return False
    if k.family == "patch":
        return patch_fits(problem, op)
    if op == "wgrad":
        if k.family == "igemm":
            return igemm_wgrad_fits(problem, k, smem_limit)
        if k.family == "wgmma":
            return wgmma_wgrad_fits(problem, k, smem_limit)
        return direct_wgrad_fits(problem, k, smem_limit)
    plan = direct_plan(problem, op)
    if plan is None:
        return False
    if k.family == "igemm":
        # TMA traversal strides reach 8 (s_in is the stride of grad_input); the stages are fixed.
        return plan[1] <= 8 and direct.igemm_smem_bytes(k.bn, k.stages, k.split) <= smem_limit
    if k.family == "wgmma":
        # Dense halo rows need unit input stride: the forward at any stride, grad_input at stride 1.
        if k.rs and not direct.all_taps(plan[0], k.kx):
            return False
        # The w fold: forwards at its stride whose k taps along w fit its N, at least one per input.
        if k.wf and not (op == "dgrad" and problem.stride == k.wf and problem.stride <= problem.k <= k.kx):
            return False
        c_r = problem.c_in if op == "dgrad" else problem.c_out
        need = direct.wgmma_smem_bytes(k.block, k.kx, k.bn, k.warpgroups, k.stages, plan[0], c_r, k.ws, k.split)
        return plan[1] == 1 and need is not None and need <= smem_limit
    if k.simt:
        table, s_in, sums = direct.pass_plan(k, problem, op)
        return direct.smem_bytes(k.block, k.bn, s_in, table, sums, k.kc) <= smem_limit
    return direct.smem_bytes(k.block, k.bn, plan[1], plan[0]) <= smem_limit


def patch_fits(problem: Problem, op: str) -> bool:
    """Whether the patch rows (csrc/patch_simt.cuh) can run pass op of problem (any of the three) at k == stride
    (2 to 4), padding 0 and output_padding 0, every tensor under 2^31 elements (the kernels' 32-bit offsets;
    PatchKernel::geometry and PatchWgradKernel::geometry refuse the rest)."""
    s = problem.stride
    if problem.k != s or problem.padding or problem.output_padding:
        return False
    if not 2 <= s <= 4:
        return False
    small = problem.n * problem.spatial[0] * problem.spatial[1] * problem.spatial[2]
    return small * s ** 3 * max(problem.c_in, problem.c_out) < 2 ** 31


# The patch rows' tensor-core forms (tf32, 3xtf32) against the implicit GEMM they replace, same process on the
# H200 (v0.75, call541, bench/tools/envab.py CONVT3D_PATCH, U-Net k2 up NCDHW, ms, patch / before): tf32 forward
# 0.078 / 0.085, grad_input 0.086 / 0.066, grad_weight (the exact patch row) 0.109 / 0.100, step 0.312 / 0.220;
# 3xtf32 0.086 / 0.094, 0.095 / 0.074, 0.108 / 0.119, step 0.328 / 0.266. So the forward only, and only where
# the layer is NCDHW (on channels_last_3d the tf32 step is 0.17 ms in all, v0.73).
PATCH_TENSOR_CORE_PASSES = ("dgrad",)


def _patch_choice(problem: Problem, op: str, compiled, precision: str = "fp32") -> Optional[KernelConfig]:
    """The patch row for a pass at k == stride (patch_fits), or None: 128 columns where the GEMM has them (the
    forward's s^3 C_out; grad_input's C_in >= 128), else 64, in the precision asked (the FFMA form for exact
    fp32, mma.sync for tf32 and 3xtf32, PATCH_TENSOR_CORE_PASSES); grad_weight's one row (exact fp32) where the
    layer is NCDHW (select_config's out_ncdhw): same process on the H200 (v0.74,
    U-Net k2 up, exact fp32), grad_weight 0.123 ms against the FFMA GEMM's 0.149 with grad_y's conversion, 0.118
    against 0.096 on a channels_last_3d grad_y. Where it applies it runs the pass as one GEMM with no conversion
    of either layout, against the tap-reuse FFMA rows (one tap per phase: nothing to reuse) and the stock tiles
    (grad_y's channels_last_3d copy): U-Net k2 up (kernel_table.PATCH_KERNELS; the step in
    docs/performance.md v0.74, tf32 and 3xtf32 in v0.75)."""
    if not patch_fits(problem, op) or os.environ.get("CONVT3D_PATCH", "1") == "0":  # the A/B switch
        return None
    cols = problem.stride ** 3 * problem.c_out if op == "dgrad" else problem.c_in
    names = [f"patch_{precision}_128x128", f"patch_{precision}_128x64"]
    if cols < 128:
        names.reverse()
    if op == "wgrad":
        names = ["patch_wgrad_fp32_64x128"]
    for name in names:
        if compiled is None or name in compiled:
            return BY_NAME[name]
    return None


# Exact-fp32 grad_input on our FFMA implicit GEMM (csrc/ffma_fprop.cuh, kernel_table.FFMA_FPROP_KERNELS, a 64-wide
# N tile) for layers of at most FFMA_FPROP_MAX_CIN input channels: where the stock SIMT Fprop would run it (its
# 128x64 tile), and over the FFMA tap-reuse rows on the narrow strided layers SIMT_NARROW_FFMA_MAX_WAVES is about
# (stride < k < FFMA_FPROP_NARROW_K_STRIDES * stride, C_in == 64: few taps per grad_y parity to reuse), at any wave
# count. H200 (v0.76, fp32, ms, this row / before): `bench --configs` (call546, channels_last_3d) outpad 0.238 /
# 0.336 on the 8x8x16 row (1.41x), video-gen 0.710 / 0.725 and medium 0.700 / 0.701 (unit stride: level, the rows stay);
# envab.py CONVT3D_FFMA_FPROP (3 ABBA rounds), grad_input ms and the step's time ratio, channels_last_3d / NCDHW:
#   U-Net 64->32 s2 64^3   1.414 / 1.680   1.829 / 2.018   step time 0.955x / 0.961x
#   SR x2 64->32 s2 48^3   1.214 / 1.423   1.595 / 1.818   step time 0.949x / 0.956x
# Past 64 channels the stock 128x128 tile keeps them (two split-K slices below two waves): U-Net 256->128 0.379 /
# 0.368, V-Net up k5 0.838 / 0.858 and 0.863 / 0.842, 3D-GAN 128->64 0.838 / 0.764 and 0.793 / 0.849, step
# times 0.976-1.014x: level. CONVT3D_FFMA_FPROP=0 is the A/B switch (bench/tools/envab.py).
FFMA_FPROP_MAX_CIN = 64  # NCDHW layers past it where both FFMA rows read in place: direct.nc_pair (memory first)
# The narrow strided layers above: stride < k < FFMA_FPROP_NARROW_K_STRIDES * stride; since v0.86 with k < 3 strides
# (at most three taps per grad_y parity along an axis: k5 s2, k7 s3) too. H200 (v0.86, call599, bench/tools/selab.py
# FFMA_FPROP_NARROW_K_STRIDES 2,3, 3 ABBA rounds, channels_last_3d; the NCDHW layers take the row by direct.nc_pair),
# grad_input ms 2 / 3 and the step's gain: 3D-GAN k5 64->32 16 x 32^3 7.125 / 6.497 (step 1.027x), the same at
# 4 x 32^3 1.875 / 1.768 (1.026x), k7 s3 64->32 2 x 24^3 2.264 / 1.243 (1.272x). 2: v0.85's rule.
FFMA_FPROP_NARROW_K_STRIDES = 3


def _ffma_fprop_choice(problem: Problem, compiled, current: Optional[KernelConfig],
                       forced: bool = False, ncdhw: bool = False) -> Optional[KernelConfig]:
    """The FFMA grad_input row in place of ``current`` (the tap-reuse row, or None for the stock kernel) by the rules
    above (``forced``: wherever it can run; ``ncdhw``: grad_x wanted NCDHW, the pair rule direct.nc_pair), or None:
    not compiled, channel counts not multiples of 4, or the switch off."""
    if os.environ.get("CONVT3D_FFMA_FPROP", "1") == "0":
        return None
    if not forced:
        narrow = problem.stride < problem.k < FFMA_FPROP_NARROW_K_STRIDES * problem.stride and problem.c_in == 64
        replaces = current is None or direct.FFMA_NC_PAIR_PARITY and direct.sums_parities(current, problem)
        pair = ncdhw and replaces and direct.nc_pair(problem)
        if not pair and (problem.c_in > FFMA_FPROP_MAX_CIN or not (current is None or current.simt and narrow)):
            return None
    return next((k for _, k in _built("fprop", "fp32", "ffma", compiled) if _aligned(problem, "fprop", k)), None)


# Where the tap-reuse kernel beats the stock path (H100, tf32, bench --configs; docs/performance.md):
# - forward, stride > 1: one launch for all phases instead of stride^3 GEMMs (U-Net 256->128 s2:
#   0.26 ms vs 0.94 ms for the stock phases);
# - forward and grad_input with narrow output channels (<= 48), where the stock implicit GEMM is
#   bound by re-reading the input per tap (headline 48->24: forward 7.1 vs 9.1 ms, grad_input 5.6 vs
#   6.7 ms). With 64-128 output channels at stride 1 the stock GEMM reuses A across a wide N tile and
#   wins (128->64: 0.33 vs 0.42 ms), and strided grad_input reads a stride-times wider halo (3-7x slower).
DIRECT_MAX_NARROW = 48
DIRECT_WGRAD_MAX_STRIDED_CIN = 64
# Hopper (sm_90a) tap reuse at unit stride, against the stock kernels (H100, tf32, bench/tools/ig.py,
# docs/performance.md v0.5): grad_input won at every C_in measured (48: 3.4 vs 6.6 ms, 64: 0.28 vs
# 0.29, 128: 0.28 vs 0.32); the forward with C_out <= 64 (64: 0.29 vs 0.37 ms), and with the
# warp-specialized rows C_out = 128 as well (256->128 at 16^3: 0.084 vs 0.324 ms, v0.9). Strided forwards
# take it where _wgmma_strided_forward says (a phase with fewer than kx taps along w wastes N, and
# 14-wide tiles waste 16-wide phases). Beyond the widths measured (C_in > 128) the stock path keeps
# grad_input.
WGMMA_MAX_FWD_COUT = 128
WGMMA_MAX_GI_CIN = 128


# Hopper grad_weight (H100, tf32, bench/tools/wgw.py, docs/performance.md v0.6): at unit stride it won on
# every sweep shape (headline 2.24 vs 4.75 ms mma.sync; V-Net k5 0.24 vs 0.70). At stride 2 the 4x16
# row won where x rows fill its 16-wide tile (U-Net 64->32 at 64^3: 0.94 vs 1.11 ms; 128->64 at 32^3:
# 0.37 vs 0.45; 256->128 at 16^3: 0.22 vs 0.25) except 3D-GAN 128->64 at 16^3 (0.49 vs 0.46, stock);
# with 8-wide rows, half its tile idles (3D-GAN at 8^3: 0.42 vs 0.25 stock). k5 at stride 2 (v0.24, the 4x16
# k5 row): 3D-GAN 64->32 at 32^3 2.49 vs 4.47 ms mma.sync (cuDNN 3.62); V-Net up at 24^3 0.397, behind the
# per-tap implicit GEMM's 0.331, which igemm_wins picks first.
WGMMA_WGRAD_MIN_STRIDED_W = 16


def _wgmma_strided_forward(problem: Problem, table) -> bool:
    """Strided forwards where the Hopper kernel measured at least as fast as mma.sync (H200, tf32,
    bench/tools/ig.py, docs/performance.md v0.7, warp-specialized rows): phases with at least two taps per
    axis (k >= 2 * stride: V-Net k5 s2), and phases whose width along w its 14-wide tiles cover at
    least 3/4 used (U-Net 64->32 at 64^3: 0.88 vs 1.17 ms; 128->64 at 32^3: 0.41 vs 0.41) or at least
    as well as mma.sync's 16-wide tiles (3D-GAN 256->128 at 8^3: 0.25 vs 0.45). At 16-wide phases,
    where 14-wide tiles waste 43%, mma.sync won or tied (3D-GAN 128->64 at 16^3: 0.43 vs 0.49; U-Net
    256->128 at 16^3: 0.24 vs 0.24). Any C_out."""
    if problem.stride == 1:
        return False
    width = max(table[i + 5] for i in range(0, len(table), 13))
    tw = 16 - 3 + 1  # the kx = 3 rows

    def used(tile):
        return width / (-(-width // tile) * tile)

    return problem.k >= 2 * problem.stride or used(tw) >= 0.75 or used(tw) >= used(16)


# Hopper implicit GEMM per tap (csrc/igemm_sm90.cuh) against the best of the other kernels (H100, tf32,
# bench/tools/ig.py, docs/performance.md v0.9). Strided forwards with k < 2 * stride (1-2 taps per axis
# and phase): 3D-GAN 256->128 at 8^3 0.066 vs 0.244 ms, U-Net 256->128 at 16^3 0.067 vs 0.226, 128->64
# at 32^3 0.208 vs 0.435, 64->32 at 64^3 0.85-0.86 vs 0.886; with k >= 2 * stride the tap-reuse kernel
# keeps them (V-Net k5 s2 0.180 vs 0.202, 3D-GAN k5 s2 1.69 vs 3.28). Strided grad_input at every
# width measured (C_in 64-256: 1.2-2.4x faster than the stock fprop; C_in 32: 1.06x), and unit-stride grad_input with
# C_in >= 128 (128->64 at 32^3: 0.106 vs 0.146 ms; 256->128 at 16^3: 0.055 vs stock 0.152). At unit
# stride the forward stays on tap reuse up to C_out = 128 (64: 0.138 vs 0.180; 128: 0.084 vs 0.092, the
# stock kernel 0.324) and takes these rows beyond. Measured output channels start at 32.
# 3xtf32 (its 64-wide rows against the split tap-reuse rows and the stock kernels): faster on every
# layer measured with 64 or more output channels, at any stride and filter size (128->64 at 32^3
# forward 0.352 vs 0.645 ms stock, 0.728 split wgmma; V-Net k5 s2 0.359 vs 0.728; 256->128 at 16^3
# s1 0.197 vs 0.413), and on the strided one with 32 (64->32 s2: 1.136 vs 1.573). Its accumulators are
# promoted per tap: 2.6e-7 to 1.8e-6 error where the split wgmma rows reach 1.5e-5 over a 6912-long
# reduction.
IGEMM_MIN_CHANNELS = 32
IGEMM_MAX_THIN_REDUCTION = 4
IGEMM_MIN_S1_GI_CIN = 128
# The split (3xtf32) tap-reuse rows accumulate a whole reduction inside the tensor cores: 1.5-2.0e-6 error
# at 648-1296 products per output (the headline), 1.5e-5 at 6912 (256->128 s1 forward, H100, v0.9),
# against the 1e-5 that 3xtf32 promises. Past this length the selector takes the igemm rows (promoted
# per tap: 1.8e-6 there) or the stock kernel instead.
SPLIT_WS_MAX_REDUCTION = 2048
IGEMM_3X_MIN_CHANNELS = 64
# grad_weight (tf32, bench/tools/wgw.py, docs/performance.md v0.9): strided layers with C_in >= 128 and
# C_out >= 64, against the best other kernel: 3D-GAN 256->128 at 8^3 0.165 vs 0.249 ms (stock), U-Net
# 256->128 at 16^3 0.157 vs 0.234, 3D-GAN 128->64 at 16^3 0.350 vs 0.508, U-Net 128->64 at 32^3 0.349 vs
# 0.379, V-Net k5 0.334 vs 0.428 (stock). With 64 -> 32 channels it lost 3x (2.35 vs 0.84 ms: the
# transposed grad_y and its 64-wide N block for 32 channels), and at unit stride the tap-reuse kernel
# keeps it (128->64: 0.243 vs 0.348; 256->128: 0.163 vs 0.169).
IGEMM_WGRAD_MIN_CIN = 128
IGEMM_WGRAD_MIN_COUT = 64


def igemm_wins(problem: Problem, op: str, precision: str = "tf32") -> bool:
    """The measured policy above: whether the implicit-GEMM rows should run pass op of problem in
    precision ("tf32" or "3xtf32"; exact fp32 never)."""
    if precision == "3xtf32" and op in ("dgrad", "fprop"):
        co = problem.c_out if op == "dgrad" else problem.c_in
        return co >= IGEMM_3X_MIN_CHANNELS or (problem.stride > 1 and co >= IGEMM_MIN_CHANNELS)
    if precision != "tf32":
        return False
    if op == "dgrad":
        if problem.stride == 1:
            return problem.c_out > WGMMA_MAX_FWD_COUT
        return problem.k < 2 * problem.stride and problem.c_out >= IGEMM_MIN_CHANNELS
    if op == "fprop":
        # Not on a reduction of at most IGEMM_MAX_THIN_REDUCTION channels (an output head's grad_y, padded to
        # 4 by channel_pad): its k8 chunks run half zeros, once per tap. 32->4 s2 at 64^3 (v0.78): 0.576 ms here,
        # 0.322 on the stock 256x32 tile this leaves it to, 0.293 on direct_tf32_2x8x16_n16 (direct_wins does
        # not take strided grad_input). Since v0.79 the thin rows take such strided k3 layers first (_thin_choice);
        # this rule still holds where they do not (unit stride, k5, CONVT3D_THIN=0, a build without them).
        return (problem.c_in >= (IGEMM_MIN_CHANNELS if problem.stride > 1 else IGEMM_MIN_S1_GI_CIN)
                and problem.c_out > IGEMM_MAX_THIN_REDUCTION)
    # At unit stride the kw-fold rows (k = 3; _igemm_wgrad_choice): their swapped form first (select_config),
    # then the warp-specialized tap-reuse rows, then the plain kw fold where those do not fit. The swapped
    # rows beat the tap-reuse ones on medium (128->64 at 32^3: 0.160 against 0.175 ms on the n48 row) and
    # wide-s1 (256->128 at 16^3: 0.098 against 0.118), v0.38; the plain kw fold lost to both (v0.37: 0.227).
    return ((problem.stride > 1 or problem.k == 3) and problem.c_in >= IGEMM_WGRAD_MIN_CIN
            and problem.c_out >= IGEMM_WGRAD_MIN_COUT)


# tf32 grad_input of a strided layer reducing over THIN_REDUCTION channels (an output head's grad_y padded to 4 by
# channel_pad, or a 4-channel layer) with a filter a thin row is compiled for: the thin rows (csrc/thin_fprop.cuh),
# BN 32 up to 32 input channels, else 64. H200 (v0.79, `--configs`, call561, grad_input ms): 32->4 s2 at 64^3 0.109
# on thin n32 against 0.359 on the best other row (direct_tf32_2x8x16_n16; the stock 256x32 tile the rule of v0.78
# took, 0.383). At unit stride the tap-reuse rows keep it: 64->4 s1 at 16x64^2 0.107 on wgmma_ws n64 (their grad_y
# halo serves every tap) against 0.110 / 0.132 on thin n32 / n64. CONVT3D_THIN=0 is the A/B switch (envab.py).
THIN_REDUCTION = 4


def _thin_choice(problem: Problem, compiled) -> Optional[KernelConfig]:
    """The thin grad_input row (tf32) for problem, or None (policy above)."""
    if os.environ.get("CONVT3D_THIN", "1") == "0":
        return None
    if problem.c_out != THIN_REDUCTION or problem.c_in % 4 or problem.stride == 1:
        return None
    rows = [k for _, k in _built("fprop", "tf32", "thin", compiled) if k.ksize == problem.k]
    want = 32 if problem.c_in <= 32 else 64
    return min(rows, key=lambda k: (k.tile[1] != want, k.tile[1])) if rows else None


def _built(op: str, precision: str, family: str, compiled):
    """(position in the family's table order, row) for the rows of one family serving ``op`` in
    ``precision`` that this build compiled (``compiled`` None: all of them)."""
    return [(i, k) for i, k in enumerate(kernels_for(op, precision, family))
            if compiled is None or k.name in compiled]


# tf32 grad_input on the implicit GEMM: where igemm_cost ties a 1x8x16 and a 2x8x8 tile, the deeper tile goes
# first from a reduction per output element (k^3 x C_out) of this size on (0: never, the table's order). The
# tf32 --configs of v0.63 split that way: 2x8x8 faster at 3456 and 4000 (U-Net 256->128 1.19x, 3D-GAN 64->32
# 1.06x), 1x8x16 at 864 (U-Net 64->32 1.27x, outpad 2x), level at 1728. Same process on the H200 (v0.65,
# bench/tools/selab.py, 5 ABBA rounds, grad_input channels_last_3d / NCDHW): 2x8x8 at 3456 (U-Net 256->128)
# 1.056x / 1.013x, at 4000 (3D-GAN 64->32) 1.052x / 1.032x; at 1728 (U-Net 128->64) 0.937x / 0.764x, so the
# threshold lies above 1728. Not explained: both tiles hold 128 positions and the same taps per unit.
IGEMM_DEEP_TILE_MIN_REDUCTION = 3456


def _igemm_choice(problem: Problem, op: str, plan, precision: str, compiled, smem_limit: int,
                  capability: Tuple[int, int], num_sms: int):
    """The implicit-GEMM row with the least ``direct.igemm_cost`` (tile shape, N block, waves), ties to the
    deeper tile where IGEMM_DEEP_TILE_MIN_REDUCTION says, else to the earlier row; or None."""
    table, _, co = plan
    c_r = problem.c_in if op == "dgrad" else problem.c_out
    deep = (op == "fprop" and precision == "tf32" and IGEMM_DEEP_TILE_MIN_REDUCTION > 0
            and direct.reduction_length(problem, op) >= IGEMM_DEEP_TILE_MIN_REDUCTION)
    cands = []
    for i, k in _built(op, precision, "igemm", compiled):
        if direct_fits(problem, op, k, smem_limit, capability):
            cost = direct.igemm_cost(table, problem.n, c_r, co, k.block, k.bn, num_sms)
            cands.append((cost, -k.block[0] if deep else 0, i, k))
    return min(cands, key=lambda c: c[:3])[-1] if cands else None


def direct_wins(problem: Problem, op: str) -> bool:
    """The measured policy above: whether the direct family should run pass op of problem."""
    if op == "dgrad":
        return problem.stride > 1 or problem.c_out <= DIRECT_MAX_NARROW
    if op == "fprop":
        return problem.stride == 1 and problem.c_in <= DIRECT_MAX_NARROW
    # wgrad: the tap-reuse kernel won on every unit-stride sweep shape (headline 4.87 vs 9.60 ms) and
    # on strided ones with C_in <= 64; with C_in >= 128 at stride 2 the stock wgrad won (gan3d-g1
    # 0.35 vs 0.64 ms): each extra C_in block re-stages the stride-times wider grad_y halo. With k <=
    # stride each grad_y element meets one (x, tap) pair, so there is nothing to reuse: the stock wgrad
    # won (U-Net k2 s2 64->32 at 32^3: 0.070 vs 0.084 ms, H100, v0.11).
    if problem.k <= problem.stride:
        return False
    return problem.stride == 1 or problem.c_in <= DIRECT_WGRAD_MAX_STRIDED_CIN


def _padded(channels: int, tile: int) -> int:
    """Channel work of covering `channels` with tiles of `tile`, each extra tile (which re-stages its
    operands) counted as 8 more channels."""
    return -(-channels // tile) * (tile + 8)


def _wgmma_choice(problem: Problem, op: str, table, co: int, precision: str, compiled, smem_limit: int,
                  capability: Tuple[int, int]):
    """The Hopper tap-reuse kernel (sm_90a) for the forward or grad_input (phase table ``table``, co output
    channels), or None.

    BN by ``_padded`` output channels; ties go to the earlier row of the table. The kx = 5 rows only
    where a phase has five taps along w (measured there only: k5 at unit stride, v0.26).
    """
    cands = []
    for i, k in _built(op, precision, "wgmma", compiled):
        if k.kx > 3 and direct._wgmma_taps(table, k.kx - 1) is not None:  # a narrower fold holds every phase
            continue
        if k.wf:  # _wfold_choice's
            continue
        if direct_fits(problem, op, k, smem_limit, capability):
            cands.append((_padded(co, k.bn), i, k))
    return min(cands, key=lambda c: c[:2])[-1] if cands else None


# The w-fold rows (kernel_table.WGMMA_WF_KERNELS) against the selector's other pick for stride-2 forwards (H100,
# tf32, bench/tools/wfab.py, 3 rounds, docs/performance.md v0.47), forward ms (step ms), channels_last_3d:
# - 32 output channels, k3, against the implicit GEMM's n32 row: U-Net 64->32 0.882 -> 0.587 (step 1.915 ->
#   1.632), SR x2 0.743 -> 0.552 (1.631 -> 1.453), U-Net x2 with output_padding 0.119 -> 0.101 (step level);
# - k5 against the per-w-phase kx3 rows: 3D-GAN 64->32 1.796 -> 1.568 (5.315 -> 5.092), NCDHW 2.283 -> 1.998;
#   V-Net up (64 channels, two n32 blocks) 0.192 -> 0.170 (step level);
# - 64-128 output channels, k3, against the implicit GEMM's n64 and n128 rows: lost, 0.50-0.83x on U-Net and
#   3D-GAN 128->64 and 256->128 (a 64-wide N block of the implicit GEMM reads its A once per two kx3 blocks'
#   worth of N; the n64 w-fold row was dropped);
# - NCDHW output where the other pick writes it itself (the implicit GEMM's sibling-phase rows): lost, 0.80-0.96x
#   (the w fold writes channels_last_3d, and our transpose of y costs more than it saves).
# False: the other pick everywhere (A/B runs).
WGMMA_WFOLD = True
WFOLD_MAX_K3_COUT = 32
# The last item again on the H200 (v0.65, bench/tools/selab.py WFOLD_OVER_NCDHW_WRITERS, 7 ABBA rounds, NCDHW tf32;
# v0.65 named the constant that way): the w fold plus our transpose of y won where the output's rows do not
# start on 32-byte sectors, so that the implicit GEMM stages sibling rows to store whole sectors (a ring stage
# fewer): forward / step 1.099x / 1.038x on U-Net 64->32 (127 wide), 1.050x / 1.015x on SR x2 (95 wide); and lost
# where they do, its plain stores filling whole sectors: U-Net x2 with output_padding (64 wide) 0.940x / 0.977x.
# Peak memory the same (the backward's). False: the H100's rule everywhere.
WFOLD_NCDHW_OFF_SECTORS = True


def _wfold_wins(problem: Problem, other: KernelConfig, out_ncdhw: bool, num_sms: int) -> bool:
    """The measured rules above: whether the w-fold row should take the forward of problem from ``other``
    (the selector's pick without it): k >= 2 * stride (``other`` folds a third to a half of N idle), or
    at most WFOLD_MAX_K3_COUT output channels; and where the output is wanted NCDHW and ``other`` writes
    it so itself, only if the output's rows are off 32-byte sectors (WFOLD_NCDHW_OFF_SECTORS)."""
    if not (problem.k >= 2 * problem.stride or problem.c_out <= WFOLD_MAX_K3_COUT):
        return False
    if not out_ncdhw or (WFOLD_NCDHW_OFF_SECTORS and not direct.rows_on_sectors(problem.out_spatial)):
        return True
    return not direct.writes_ncdhw(other, problem, "dgrad", num_sms)


def _wfold_choice(problem: Problem, precision: str, compiled, smem_limit: int, capability: Tuple[int, int]):
    """The w-fold row for the forward of problem (its fold exactly k wide: no idle N), BN by ``_padded``
    output channels, ties to the earlier row; or None."""
    cands = []
    for i, k in _built("dgrad", precision, "wgmma", compiled):
        if k.wf and k.kx == problem.k and direct_fits(problem, "dgrad", k, smem_limit, capability):
            cands.append((_padded(problem.c_out, k.bn), i, k))
    return min(cands, key=lambda c: c[:2])[-1] if cands else None


# The warp-specialized rows' RS twins (A from registers, shared across kd; kernel_table.WGMMA_RS_KERNELS,
# which keeps the one that measured faster: k5) replace them wherever they fit: unit-stride passes with
# k = kx, tf32 (docs/performance.md v0.28). False: the ws rows everywhere (A/B runs, bench/tools/rsab.py).
WGMMA_RS_TWINS = True


def _rs_twin(problem: Problem, op: str, k, compiled, smem_limit: int, capability: Tuple[int, int],
             in_ncdhw: bool = False):
    """k's RS twin where WGMMA_RS_TWINS, it is compiled and it can run the pass; else k. The twins marked
    ``rs_ncdhw`` only where they read the input in place in NCDHW storage (``in_ncdhw``: the forward of an
    NCDHW x; W a multiple of 4 and the filter resident beside the raw stages, as direct.reads_ncdhw asks):
    on a channels_last_3d input, the input's copy included, the k3 twins lost (0.94x, v0.28)."""
    if not (WGMMA_RS_TWINS and k is not None and k.family == "wgmma" and k.ws and not k.rs):
        return k
    twin = BY_NAME.get(k.name.replace("wgmma_ws_", "wgmma_rs_", 1))
    if twin is None or (compiled is not None and twin.name not in compiled) or (twin.rs_ncdhw and not in_ncdhw):
        return k
    if twin.rs_ncdhw:  # in_ncdhw: the forward, whose reduction runs over C_in
        plan = direct_plan(problem, op)
        if plan is None or problem.spatial[2] % 4 or not direct._reads_ncdhw_fits(twin, tuple(plan[0]),
                                                                                  problem.c_in):
            return k
    return twin if direct_fits(problem, op, twin, smem_limit, capability) else k


# grad_input written NCDHW: a warp-specialized row that would go through channels_last_3d plus our transpose
# (no registers beside its accumulators for the carried sector, or a tile too deep for sectors) gives way to
# its twin of the same fold, channels and precision whose shallower tile stores NCDHW by whole sectors
# (direct.ncdhw_sectors). Same process (H100, v0.51, bench/tools/igemm_ncdhw_ab.py selector.SECTOR_TWINS=, GPU
# time, 5 ABBA rounds): SR head tf32 grad_input NCDHW 0.423 -> 0.324 ms on the 2x8 n32 twin against the 4x8 n32
# row plus our transpose (1.306x), step 1.102x, the step's peak 640 -> 384 MiB; the only sweep layer it moves.
# False: the selector's pick as before (A/B runs). Only where the pick would transpose: a twin of narrower N
# blocks (more of them, each staging the halo again) in place of plain NCDHW stores lost (v0.51, commit
# 40d714d: video-gen's grad_input on two n32 blocks with sectors against one n64 block with plain stores,
# 0.217 against 0.206 ms, step 0.975x, 7 ABBA rounds).
SECTOR_TWINS = True


def _sector_twin(problem: Problem, k, compiled, smem_limit: int, capability: Tuple[int, int], num_sms: int):
    """k, or where grad_input's output is wanted NCDHW and k would not write it so (direct.writes_ncdhw), the
    built row of the same kx, BN, warpgroups and precision that stores it by whole sectors (SECTOR_TWINS)."""
    if not (SECTOR_TWINS and k is not None and k.family == "wgmma" and k.ws and not k.rs and not k.wf):
        return k
    if direct.writes_ncdhw(k, problem, "fprop", num_sms):
        return k
    for _, t in _built("fprop", k.precision, "wgmma", compiled):
        if (t is not k and t.ws and not t.rs and not t.wf and (t.kx, t.bn, t.warpgroups) == (k.kx, k.bn, k.warpgroups)
                and direct.ncdhw_sectors(t, problem, "fprop", num_sms)
                and direct_fits(problem, "fprop", t, smem_limit, capability)):
            return t
    return k


def _direct_choice(problem: Problem, op: str, precision: str, num_sms: int, compiled, smem_limit: int,
                   capability: Tuple[int, int] = DEFAULT_CAPABILITY, out_ncdhw: bool = False):
    """The tap-reuse kernel for the forward or grad_input, or None to use the stock path.

    On Hopper the implicit-GEMM rows where ``igemm_wins`` (``_igemm_choice``), then at unit stride the
    wgmma family (``_wgmma_choice``, policy above); else the mma.sync one, where ``direct_wins``:

    BN: fewest padded output channels, counting each extra N tile (which re-stages the halo) as 8
    more channels. Block: 4x8x16 (16 warps) for unit-stride layers that give it four waves of
    CTAs; 2x8x16 (8 warps) for unit-stride layers that still give two waves; else 1x8x16, whose halo
    is half as deep (strided grad_input, small layers) and which measured 1-7% faster than 2x8x16 on
    every strided forward timed (6 layers, docs/performance.md v0.6).
    """
    plan = direct_plan(problem, op)
    if plan is not None and precision == "fp32":
        return _simt_choice(problem, op, plan, compiled, smem_limit, capability, num_sms, out_ncdhw)
    if plan is None or precision not in ("tf32", "3xtf32"):
        return None
    table, s_in, co = plan
    if igemm_wins(problem, op, precision):
        k = _igemm_choice(problem, op, plan, precision, compiled, smem_limit, capability, num_sms)
        if k is not None:
            return k
    wide = problem.c_out > WGMMA_MAX_FWD_COUT if op == "dgrad" else problem.c_in > WGMMA_MAX_GI_CIN
    if (problem.stride == 1 and not wide) or (op == "dgrad" and _wgmma_strided_forward(problem, table)):
        k = _wgmma_choice(problem, op, table, co, precision, compiled, smem_limit, capability)
        if k is not None and k.split and direct.reduction_length(problem, op) > SPLIT_WS_MAX_REDUCTION:
            # fp32 accuracy first: the per-tap promoting igemm rows, else the stock kernel.
            return _igemm_choice(problem, op, plan, precision, compiled, smem_limit, capability, num_sms)
        if k is not None:
            return k
    if precision != "tf32" or not direct_wins(problem, op):  # mma.sync tap reuse: tf32 only
        return None
    big, deep = (2, 8, 16), (4, 8, 16)
    if problem.stride == 1 and direct.ctas(deep, 32, problem.n, co, table) >= 4 * num_sms:
        prefer = deep
    elif problem.stride == 1 and direct.ctas(big, 32, problem.n, co, table) >= 2 * num_sms:
        prefer = big
    else:
        prefer = (1, 8, 16)
    cands = []
    for _, k in _built(op, precision, "direct", compiled):
        if direct.smem_bytes(k.block, k.bn, s_in, table) > smem_limit:
            continue
        work = _padded(co, k.bn)
        rank = 0 if k.block == prefer else 1 if k.block == big else 2
        cands.append((work, rank, k.name, k))
    return min(cands)[-1] if cands else None


# The stock forward's stride phases run concurrently (launch.forward), each phase's CTAs doing work in
# proportion to its taps, so the phase with the most taps sets the time. In exact fp32 its reduction is
# split serially (conv_kernel.cuh: slices added in order, deterministic) into slices of two taps, at most
# four: 3D-GAN 256->128 at 8^3 (taps 8, 4, 4, 2, 4, 2, 2, 1) 0.480 ms against 0.536 unsplit, 0.505 with two
# slices each and 0.526 with one per tap (H100, v0.19). Not measured for tf32 and 3xtf32: one slice there.
PHASE_TAPS_PER_SLICE = 2
PHASE_MAX_SLICES = 4


def phase_split_k(taps: int, precision: str) -> int:
    """Serial split-K slices of a stock forward phase with ``taps`` filter taps (policy above)."""
    if precision != "fp32":
        return 1
    return max(1, min(PHASE_MAX_SLICES, taps // PHASE_TAPS_PER_SLICE))


SIMT_MIN_W_FILL = 0.75
# Strided grad_weight with C_in this wide runs faster on the stock SIMT kernel's 128- or 256-row tiles:
# the FFMA rows re-stage a stride-times wider grad_y halo for every 32 x 16 channel block (v0.18, H100:
# 128->64 s2 1.33 against 1.51 ms, 256->128 s2 0.63 against 0.88; 64->32 s2 stays on FFMA, 2.55 against 3.58).
# Since v0.19 the FFMA implicit GEMM (_ffma_wgrad_choice) takes these first; this rule serves builds without it.
SIMT_WGRAD_MAX_STRIDED_CIN = 128
SIMT_DEEP_MIN_TAPS = 8


def simt_wins(problem: Problem, op: str) -> bool:
    """Whether the exact-fp32 tap-reuse kernels (FFMA) should run pass op: where their 16-wide tiles
    are at least SIMT_MIN_W_FILL full along w (the widest forward phase; x for the other passes).

    Measured on the H100 sweep (v0.16): they beat the stock SIMT kernels on every layer but gan3d-g1,
    whose 8-wide phases and x idle half of each tile (forward 1.11 vs 0.77 ms, grad_weight 1.63 vs
    0.88); 16 and wider won or tied (U-Net 256->128 grad_weight at x 16 wide: 0.870 vs 0.860). Strided
    grad_weight with C_in >= SIMT_WGRAD_MAX_STRIDED_CIN goes to the stock kernel's taller tiles (v0.18).
    """
    if op == "wgrad" and problem.stride > 1 and problem.c_in >= SIMT_WGRAD_MAX_STRIDED_CIN:
        return False
    if op == "dgrad":
        table = direct.forward_plan(problem)[0]
        width = max(table[i + 5] for i in range(0, len(table), 13))
    else:
        width = problem.spatial[2]
    return width > 0 and width / (16 * -(-width // 16)) >= SIMT_MIN_W_FILL


# 8 rows per thread against 4 on the same work (fewer filter reads per FFMA; v0.16 forwards 1.07-1.10x).
SIMT_DEEP_GAIN = 1.1
# Strided grad_input on tap reuse needs its tiles to fill this much of a wave of the GPU, and a whole
# wave where the stock kernel has its 128x128 tile (C_in > 64, 1.2-1.7x faster than its 128x64).
# H100: V-Net up, 72 CTAs: 1.74 vs 1.52 ms on 128x64 (v0.17), 1.37 vs 1.11 on 128x128 (v0.18); U-Net
# 256->128, 128 CTAs on 132 SMs: 0.553 vs 0.519 (128x128); U-Net output_padding, C_in 64, 128 CTAs:
# 0.294 vs 0.362 (128x64).
SIMT_MIN_FILL = 0.75
# Strided grad_input whose stride phases have one tap each (k == stride > 1) runs on the stock SIMT implicit
# GEMM: the tap-reuse rows stage each phase's grad_y for a single tap and sum the s^3 phases, with nothing
# reused across taps. H200 (v0.56, fp32): U-Net k2 s2 grad_input 0.152 against 0.095 ms (`--configs`); in
# bench/tools/selab.py's 5 ABBA rounds, stock against the rows, grad_input 1.627x channels_last_3d / 1.266x
# NCDHW, step 1.186x / 1.117x. Not at unit stride (one phase, no sums): pointwise k1 (2 x 64 -> 32 x 32^3)
# measured grad_input 0.957x / 0.435x, step 0.587x / 0.841x there. (k3 s3 on 2 x 16^3 already went to the
# stock kernel by SIMT_MIN_FILL: its A/B compared one kernel with itself, 0.88-0.99x, the noise of these
# sub-0.3 ms rows.) False: the tap-reuse rows there too (A/B runs).
SIMT_ONE_TAP_STOCK = True


# Strided grad_input with 64 input channels and stride < k < 2 * stride (fewer than 8 taps per grad_y parity on
# average: little for the FFMA rows to reuse across taps; k <= stride is the one-tap rule's or unmeasured) keeps
# the FFMA rows only while their CTAs (one per SM) fit this many waves; past that the stock
# SIMT 128x64 tile, which since v0.57's padding (csrc/conv_kernel.cuh, PaddedSimtMma) reaches 33-34 TFLOP/s there
# against the rows' 28-30 and has no tail of its own. inf: the rule off. H200, fp32, bench/tools/selab.py (3 ABBA
# rounds), 64->32 k3 s2 p1, grad_input ms FFMA row / stock (waves of the row's CTAs on 132 SMs), channels_last_3d;
# then NCDHW; step gain channels_last_3d / NCDHW:
#   2 x 32^3 op1 (0.97)   0.255 / 0.275   0.288 / 0.322   step 0.978x / 0.974x
#   4 x 32^3     (1.94)   0.493 / 0.431   0.568 / 0.524   step 1.040x / 1.029x
#   1 x 40^3     (2.27)   0.521 / 0.320   0.554 / 0.360   step 1.191x / 1.148x
#   3 x 32^3     (2.91)   0.505 / 0.407   0.560 / 0.455   step 1.063x / 1.047x
#   8 x 32^3     (3.88)   0.972 / 0.849   1.116 / 1.027   step 1.046x / 1.028x
#   2 x 48^3     (6.55)   0.941 / 0.738   1.067 / 0.894   step 1.081x / 1.061x
#   4 x 48^3     (6.55)   1.693 / 1.410   1.947 / 1.720   step 1.058x / 1.044x
#   2 x 64^3     (7.76)   1.942 / 1.668   2.239 / 2.034   step 1.048x / 1.031x
# The FFMA rows win k5 s2 p2 on 16 x 32^3 (7.76 waves; 27 taps on the widest parity), 6.809 / 7.469 ms and
# 7.131 / 7.822 (step 0.968x), and 48 channels (4 x 48^3, the n48 row against a 128x64 tile a quarter empty),
# 1.401 / 1.533 and 1.563 / 1.727 (step 0.974x / 0.969x).
SIMT_NARROW_FFMA_MAX_WAVES = 1.0
# The rule for NCDHW output too (False: channels_last_3d only). The stock tile writes channels_last_3d, so an NCDHW
# grad_x is converted after it; in v0.58 that conversion ran while grad_y's channels_last_3d copy was still held and
# raised the step's peak memory 11% (sweep-fp32-v58nc-stockgi: U-Net 64->32 1016 -> 1128 MiB, SR x2 853 -> 945).
# Since v0.59 the backward releases that copy before it converts grad_x (csrc/eager_node.cpp, ops._backward), so
# the peak is grad_weight's, as on the FFMA rows. H200 (v0.59, selab.py, 3 ABBA rounds, NCDHW): U-Net 64->32
# grad_input 2.321 -> 2.056 ms, step 1.035x; SR x2 2.105 -> 1.815, step 1.042x; peaks 1016 and 853 MiB, v0.58's.
SIMT_NARROW_FFMA_NCDHW = True


# The exact-fp32 forward whose phases have fewer than SIMT_DEEP_MIN_TAPS taps ranks the rows as grad_input does
# (whole waves of CTAs x work per CTA, 8 rows per thread SIMT_DEEP_GAIN times faster) instead of taking the fewest
# rows per thread (v0.16, H100: U-Net k2 s2 0.308 ms on 8 rows against 0.204 on 4). H200 (v0.58), forward ms off /
# on, channels_last_3d and NCDHW, bench/tools/selab.py SIMT_FEW_TAP_FORWARD_BY_WAVES (3 ABBA rounds), 64 -> 32:
#   k2 s2, 2 x 32^3 (4 rows 1024 CTAs -> 8 rows 512)   0.165 / 0.153   0.184 / 0.168
#   k2 s2, 1 x 32^3 (512 -> 256)                         0.088 / 0.081   0.096 / 0.088
#   k1 s1, 8 x 32^3 (512 -> 256)                         0.091 / 0.089   0.094 / 0.085
#   k3 s3, 8 x 32^3                                      2.117 / 1.938   2.417 / 2.197
# and k1 s1 on 2 x 32^3 keeps 4 rows (128 CTAs, one wave either way; 8 rows lost there, 0.030 against 0.042).
# The steps of the sub-0.5 ms layers moved 0.79-1.18x with the same kernels (noise of host-bound steps);
# k3 s3's step 1.037x / 1.032x. False: the fewest rows.
SIMT_FEW_TAP_FORWARD_BY_WAVES = True


# The exact-fp32 rows' reduction channels per stage: 4 (the `_c4` rows) where the pass reduces over at most 4
# channels (an output head padded to 4 by channel_pad, or an input of 1-4 channels), else 8 (direct.KC), whose
# chunks would be half zeros. grad_input of 32->4 s2 at 64^3 0.281 -> 0.191 ms, 64->4 s1 at 16x64x64 0.220 ->
# 0.137 (`_c4` twins of the 8x8x16 n32 row, H200, v0.78); the forward by the same count.
SIMT_THIN_REDUCTION = 4


def _simt_kc(problem: Problem, op: str) -> int:
    return 4 if (problem.c_in if op == "dgrad" else problem.c_out) <= SIMT_THIN_REDUCTION else direct.KC


def _simt_choice(problem: Problem, op: str, plan, compiled, smem_limit: int,
                 capability: Tuple[int, int] = DEFAULT_CAPABILITY, num_sms: int = DEFAULT_SMS,
                 out_ncdhw: bool = False):
    """The exact-fp32 tap-reuse row for the forward or grad_input, or None for the stock SIMT kernel.

    Fewest padded output channels (``_padded``); then, where a phase has SIMT_DEEP_MIN_TAPS taps or
    more, more rows per thread (the 8x8x16 block: fewer filter reads per FFMA) for the forward; for
    grad_input, whose CTAs all do the same work, the least whole waves of CTAs (one per SM) x work per
    CTA with 8 rows per thread SIMT_DEEP_GAIN times faster, and (strided, where measured) the stock
    kernel where even that row fills less than SIMT_MIN_FILL of a wave (a whole wave past 64 channels).
    With fewer taps, grad_input takes fewer rows per thread (the larger halo is staged for few taps) and the
    forward ranks by waves as grad_input does (SIMT_FEW_TAP_FORWARD_BY_WAVES); then table order. Past one wave
    of CTAs, k3 s2-like grad_input of 64 channels goes to the stock kernel (SIMT_NARROW_FFMA_MAX_WAVES).
    Measured (H100): 8 rows per thread won on 9 of 13 unit-
    and stride-2 k3/k5 forwards (v0.16: headline 14.6 vs 15.7 ms, medium 0.727 vs 0.801) and lost on
    U-Net k2 s2 (one tap: 0.308 vs 0.204); on the parity grad_input of U-Net 256->128 (64 CTAs of
    8x8x16 on 132 SMs, 128 of 4x8x16) 0.95 vs 0.55 ms (v0.17).
    """
    if not simt_wins(problem, op) or _stock_wide_simt(problem, op, num_sms):
        return None
    if op == "fprop" and SIMT_ONE_TAP_STOCK and problem.k == problem.stride > 1:
        return None
    co = plan[2]
    cands = []
    for i, k in _built(op, "fp32", "direct", compiled):
        table, s_in, sums = direct.pass_plan(k, problem, op)
        fits = direct.smem_bytes(k.block, k.bn, s_in, table, sums, k.kc) <= smem_limit
        if not (supports_arch(k, capability) and fits):
            continue
        taps = max(table[j + 9] * table[j + 10] * table[j + 11] for j in range(0, len(table), 13))
        ctas = direct.ctas(k.block, k.bn, problem.n, co, table, sums)
        if taps < SIMT_DEEP_MIN_TAPS and (op == "fprop" or not SIMT_FEW_TAP_FORWARD_BY_WAVES):
            rank = k.rows_per_thread
        elif op == "fprop" or taps < SIMT_DEEP_MIN_TAPS:
            gain = SIMT_DEEP_GAIN if k.rows_per_thread == 8 else 1.0
            rank = -(-ctas // num_sms) * k.block[0] * k.block[1] * k.block[2] * k.bn / gain
        else:
            rank = -k.rows_per_thread
        cands.append((k.kc != _simt_kc(problem, op), _padded(co, k.bn), rank, i, ctas, k))
    if not cands:
        return None
    best = min(cands, key=lambda c: c[:4])
    if op == "fprop" and problem.stride > 1 and best[4] < (1.0 if co > 64 else SIMT_MIN_FILL) * num_sms:
        return None
    if (op == "fprop" and (SIMT_NARROW_FFMA_NCDHW or not out_ncdhw) and problem.stride < problem.k < 2 * problem.stride
            and co == 64 and best[4] > SIMT_NARROW_FFMA_MAX_WAVES * num_sms):
        return None
    return best[-1]


def direct_wgrad_fits(problem: Problem, k: KernelConfig, smem_limit: int = DEFAULT_SMEM) -> bool:
    if not _aligned(problem, "wgrad", k):
        return False
    if k.simt:  # the kw taps live in registers: k = 3 only
        return problem.k == 3 and direct.simt_wgrad_smem_bytes(k.block, k.tile[0], k.tile[1],
                                                                 problem.stride) <= smem_limit
    return direct.wgrad_smem_bytes(k.block, k.tile[0], k.tile[1], problem.k, problem.stride) <= smem_limit


def wgmma_wgrad_fits(problem: Problem, k: KernelConfig, smem_limit: int = DEFAULT_SMEM) -> bool:
    """Whether the Hopper grad_weight row k takes the problem (filter size, stride <= k, shared memory)."""
    if k.ksize != problem.k or not _aligned(problem, "wgrad", k):
        return False
    need = direct.wgmma_wgrad_smem_bytes(problem, k.block, k.bn, k.warpgroups, k.stages, k.split)
    return (need is not None and need <= smem_limit
            and direct.wgmma_wgrad_tiles(problem, k.block, k.warpgroups, k.stages) is not None)


def igemm_wgrad_fits(problem: Problem, k: KernelConfig, smem_limit: int = DEFAULT_SMEM) -> bool:
    """Whether the implicit-GEMM grad_weight row k takes the problem: channel alignment, TMA's traversal
    stride (<= 8) and box size (stride x box <= 256), shared memory; the kw-fold rows (kx > 1) only
    the filter size they fold."""
    if k.kx > 1 and problem.k != k.kx:
        return False
    return (_aligned(problem, "wgrad", k) and problem.stride <= 8 and problem.stride * max(k.block) <= 256
            and direct.igemm_wgrad_smem_bytes(k.bn, k.stages, k.kx, k.block, problem.stride, k.swap) <= smem_limit)


# The kw-fold rows (kx = 3, N = 3 x 64) against the per-tap ones (H100, tf32, bench/tools/igw3.py, v0.11): U-Net
# and 3D-GAN 128->64 0.26 vs 0.37 ms, 256->128 0.15-0.17 vs 0.17-0.19 (with 128-wide per-tap blocks); a
# 16-wide box on an 8-wide volume idles half its positions (3D-GAN 256->128: 0.59 ms).
def _igemm_wgrad_choice(problem: Problem, precision: str, compiled, smem_limit: int,
                        capability: Tuple[int, int], swapped_only: bool = False):
    """The implicit-GEMM grad_weight row, or None: a kw-fold row where one takes the filter size, then
    the position box that wastes least of the volume's width, then the swapped form (v0.38: 1.3-1.5x the
    plain kw fold on every layer measured), then the least padded C_out work (``_padded``), then the
    table's earlier row. ``swapped_only``: the swapped rows or None."""
    w = problem.spatial[2]
    cands = []
    for i, k in _built("wgrad", precision, "igemm", compiled):
        if not supports_arch(k, capability) or not igemm_wgrad_fits(problem, k, smem_limit):
            continue
        if problem.stride == 1 and k.kx <= 1:  # per tap, unit stride: the tap-reuse kernel won (v0.9)
            continue
        if swapped_only and not k.swap:
            continue
        waste = -(-w // k.block[2]) * k.block[2] - w
        cands.append((k.kx <= 1, waste, not k.swap, _padded(problem.c_out, k.bn), i, k))
    return min(cands, key=lambda c: c[:5])[-1] if cands else None


# Each C_in block of the Hopper grad_weight re-stages the whole grad_y halo ring and re-reads its A
# operands, so an extra block costs more than the other families' 8 channels (``_padded``): on medium
# (C_in 128) the n48 row's three blocks (one a third idle) ran 0.174 ms against 0.192 for the n32 row's
# four (H100, tf32, bench/tools/wgw.py, v0.37). Counted as 24 channels, 48-wide blocks take C_in 128.
WGMMA_WGRAD_BLOCK_CHANNELS = 24


def _wgmma_wgrad_choice(problem: Problem, precision: str, compiled, smem_limit: int,
                        capability: Tuple[int, int]):
    """The Hopper grad_weight kernel, or None: fewest padded MMA rows x columns; on ties 8x16 x tiles
    at unit stride and 4x16 (half the stride-times wider halo ring) at stride > 1, then the table's
    earlier row. Rows: the 64-row M tiles of (kd, kh, kw, C_out block) per C_out block
    (``direct.wgmma_wgrad_tiles``); columns: C_in padded to whole blocks, each block counted
    WGMMA_WGRAD_BLOCK_CHANNELS wider. tf32, and 3xtf32 on the split rows. Rows of three stages at stride > 1
    only, first in the table, so they take the ties with their two-stage twins."""
    if precision not in ("tf32", "3xtf32"):
        return None
    cands = []
    for i, k in _built("wgrad", precision, "wgmma", compiled):
        if not supports_arch(k, capability) or not wgmma_wgrad_fits(problem, k, smem_limit):
            continue
        if k.stages > 2 and problem.stride == 1:  # three stages lost at unit stride (kernel_table)
            continue
        cb = direct.wgmma_wgrad_layout(problem, k.block, k.warpgroups, k.stages)[0]
        rows = -(-problem.c_out // cb) * 64 * direct.wgmma_wgrad_tiles(problem, k.block, k.warpgroups, k.stages)[1]
        prefer = 0 if (k.block[1] == 8) == (problem.stride == 1) else 1
        cols = -(-problem.c_in // k.bn) * (k.bn + WGMMA_WGRAD_BLOCK_CHANNELS)
        cands.append((rows * cols, prefer, i, k))
    return min(cands, key=lambda c: c[:3])[-1] if cands else None


def _direct_wgrad_choice(problem: Problem, precision: str, compiled, smem_limit: int):
    """The tap-reuse grad_weight kernel, or None for the stock wgrad.

    Block (C_in x C_out per warp): fewest padded MMAs, counting each extra block (which re-stages
    the tiles) as 8 more channels per side, and the tile's overhang past H and W. 8x16 tiles at
    unit stride, 4x16 (half the stride-times wider halo) at stride > 1 on ties.
    """
    if precision not in ("tf32", "fp32"):
        return None
    h, w = problem.spatial[1:]
    cands = []
    for _, k in _built("wgrad", precision, "direct", compiled):
        if not direct_wgrad_fits(problem, k, smem_limit):
            continue
        bm, bn = k.tile[:2]
        th, tw = k.block[1:]
        work = (_padded(problem.c_in, bm) * _padded(problem.c_out, bn) *
                (-(-h // th) * th * -(-w // tw) * tw) / (h * w))
        prefer = (th == 8) == (problem.stride == 1)
        cands.append((work, 0 if prefer else 1, k.name, k))
    return min(cands)[-1] if cands else None


# Exact-fp32 grad_weight on our FFMA implicit GEMM per tap (csrc/ffma_wgrad.cuh), H100 (v0.19), against the
# best of the stock SIMT tiles and the FFMA tap-reuse rows: every layer with C_in >= 128 (U-Net and 3D-GAN
# 256->128 s2 0.51 vs 0.63 ms stock, cuDNN 0.53; 128->64 s2 0.93 vs 1.31; 128->64 s1 0.93 vs 0.99 tap
# reuse; V-Net up k5 0.84 vs 1.12), and on the 64-row tile every strided or non-k3 layer below that (U-Net
# 64->32 s2 2.18 vs 3.05 tap reuse; SR x2 1.84 vs 2.53; 3D-GAN k5 9.5 vs 17.3 stock, cuDNN 15.7; V-Net k5
# 32->16 1.97 vs 4.63; U-Net k2 0.121 vs 0.186). At unit stride with k = 3 and C_in < 128 the tap-reuse
# rows keep it: their kw taps share each grad_y row in registers (video-gen 1.01 vs 1.13, SR head
# 32->8 1.27 vs 1.95).
FFMA_WGRAD_WIDE_CIN = 128
FFMA_WGRAD_NARROW_CIN = 32
# Output heads (C_out <= 4 after channel_pad): the FFMA GEMM at unit stride k3 too, and its 64 x 128 tile
# wherever N = k^3 C_out fits in 128 columns (the 32 x 256 tile's would be more than half padding). H200 (v0.78):
# 64->4 s1 at 16x64x64 0.135 ms against 0.260 on direct_wgrad_fp32_4x16_m32n8_o3; 32->4 s2 at 64^3 0.248 against
# 0.313 on the 32 x 256 tile.
FFMA_WGRAD_THIN_COUT = 4


# The stream-K twins (`_sk`, csrc/ffma_wgrad.cuh SK): one grid of CTAs per slot of the SMs (FFMA_STREAMK_PER_SM,
# the kernel's kStreamKPerSM) takes all tiles x k blocks in equal shares, and a tile's pieces add into one slot of
# partial sums one after another. H100 (v0.45, bench/tools/ffmastreamk.py, kernel and finish against split-K at
# the selector's slices): U-Net and 3D-GAN 256->128 0.433 -> 0.377 ms (2.4 pieces per tile, 7.1 -> 3.5 MB),
# the 128->64 layers 0.853 -> 0.786 (9.4 pieces, 7.1 -> 0.9 MB), 3D-GAN 64->32 k5 8.86 -> 7.08 (16.5 pieces; its
# 17 slices x 32 tiles were a wave and a sliver), V-Net up level (2.1); with 50-75 pieces level to 3% faster
# (U-Net 64->32, SR x2, V-Net refine), and with 264 (U-Net k2 up: 2 tiles) 19.6x slower: the adds of a tile's
# pieces wait for one another at the end, some microseconds each. So up to FFMA_STREAMK_MAX_PIECES.
FFMA_STREAMK_PER_SM = {128: 1, 64: 3, 32: 3}
# The same in the rows' NC mode (NCDHW x and grad_y, direct.ffma_wgrad_reads_ncdhw): its K-major roles hold 254
# registers, two CTAs of 4 warps per SM or one of 8 (csrc/ffma_wgrad.cuh, WgradNcShape::kStreamKPerSM).
FFMA_NC_STREAMK_PER_SM = {128: 1, 64: 2}
FFMA_STREAMK_MAX_PIECES = 20


def _wgrad_tiles(problem: Problem, k: KernelConfig) -> Tuple[int, int]:
    """(output tiles, main-loop iterations over the whole reduction) of grad_weight kernel k on problem."""
    m, n, kk = problem.gemm("wgrad")
    return math.ceil(m / k.tile[0]) * math.ceil(n / k.tile[1]), math.ceil(kk / k.tile[2])


def streamk_pieces(problem: Problem, k: KernelConfig, num_sms: int = DEFAULT_SMS, ncdhw: bool = False) -> float:
    """Pieces per tile of stream-K row k's grid on problem (its CTAs over its tiles); ncdhw: in the NC mode."""
    tiles, k_iters = _wgrad_tiles(problem, k)
    per_sm = (FFMA_NC_STREAMK_PER_SM if ncdhw and direct.ffma_wgrad_reads_ncdhw(k, problem) else FFMA_STREAMK_PER_SM)
    return min(num_sms * per_sm[k.tile[0]], tiles * k_iters) / tiles


def _ffma_wgrad_choice(problem: Problem, compiled, num_sms: int = DEFAULT_SMS, ncdhw: bool = False):
    """The FFMA implicit-GEMM grad_weight row (exact fp32), or None (policy above): the 128-row tile for
    C_in >= FFMA_WGRAD_WIDE_CIN (the 64-row one on the NCDHW layers of the pair rule, direct.nc_pair), the 32-row
    one for C_in <= FFMA_WGRAD_NARROW_CIN where built and N = k^3 C_out exceeds 128, else the 64-row one; none for
    unit-stride k = 3 below the wide tile unless C_out <= FFMA_WGRAD_THIN_COUT; channel counts multiples of 4
    (16-byte copies) and compiled in this build. Of a tile's two rows, the stream-K one where its pieces per tile are
    at most FFMA_STREAMK_MAX_PIECES (or where it alone is built), else split-K; ncdhw: counted for the NC mode
    where it runs (an NCDHW layer's x and grad_y)."""
    wide = problem.c_in >= FFMA_WGRAD_WIDE_CIN
    if not wide and problem.stride == 1 and problem.k == 3 and problem.c_out > FFMA_WGRAD_THIN_COUT:
        return None
    if problem.n * math.prod(problem.spatial) > 2 ** 31 - 1:  # 32-bit positions of x (its can_implement)
        return None
    # The 32-row tile's position table: 32-bit grad_y indices with room for the padding's negative
    # corners, and one byte of tap bits per axis.
    table_ok = problem.n * math.prod(problem.out_spatial) < 2 ** 30 and problem.k <= 8
    narrow = problem.c_in <= FFMA_WGRAD_NARROW_CIN and problem.k ** 3 * problem.c_out > 128  # the 64-row tile's N
    pair = wide and ncdhw and direct.nc_pair(problem)
    rows = [64] if pair else [128] if wide else [32, 64] if narrow and table_ok else [64]
    built = [k for _, k in _built("wgrad", "fp32", "ffma", compiled) if _aligned(problem, "wgrad", k)]
    for bm in rows:
        twins = [k for k in built if k.tile[0] == bm]
        sk = next((k for k in twins if k.streamk), None)
        split = next((k for k in twins if not k.streamk), None)
        if sk is not None and (split is None or streamk_pieces(problem, sk, num_sms, ncdhw) <= FFMA_STREAMK_MAX_PIECES):
            return sk
        if split is not None:
            return split
    return None


def forced_configs(config: Optional[str] = None) -> list:
    """Kernel names forced by the ``config`` argument, else by ``CONVT3D_CONFIG``."""
    text = config if config else os.environ.get("CONVT3D_CONFIG", "")
    names = [s.strip() for s in text.split(",") if s.strip()]
    for name in names:
        if name not in BY_NAME:
            raise ValueError(f"config {name!r} is not a kernel of the table; choose from "
                             f"convt3d_cutlass.configs() (e.g. {KERNELS[0].name!r})")
    return names


def select_config(problem: Problem, op: str, precision: str, *, config: Optional[str] = None,
                  num_sms: int = DEFAULT_SMS, compiled: Optional[Iterable[str]] = None,
                  gemm_mn: Optional[Tuple[int, int]] = None, smem_limit: int = DEFAULT_SMEM,
                  family: Optional[str] = None,
                  capability: Tuple[int, int] = DEFAULT_CAPABILITY, out_ncdhw: bool = False) -> KernelConfig:
    """Choose the kernel for one pass.

    Args:
        problem: the layer (shapes of x [N, C_in, D, H, W] and the cubic kernel).
        op: "dgrad" (forward), "fprop" (grad_input) or "wgrad" (grad_weight).
        precision: "fp32", "tf32" or "3xtf32" (already resolved, not "auto").
        config: forced kernel names (comma-separated); overrides ``CONVT3D_CONFIG``.
        num_sms: multiprocessor count of the target GPU.
        compiled: names present in the built extension; None means all.
        gemm_mn: the GEMM's (M, N) when it is not the problem's own (a stride phase).
        smem_limit: opt-in shared memory per block of the target GPU (bytes).
        out_ncdhw: the pass's output is wanted in NCDHW storage (the forward: ``_wfold_wins``; grad_input:
            ``_sector_twin``, and exact fp32 keeps the FFMA rows past SIMT_NARROW_FFMA_MAX_WAVES unless
            SIMT_NARROW_FFMA_NCDHW); for grad_weight, that the layer's tensors are NCDHW (x's layout, which grad_y
            shares in a step: the patch row reads grad_y in place; on channels_last_3d the FFMA GEMM's 16-byte
            copies win, v0.74).
        family: "direct" (the tap-reuse kernels, mma.sync or wgmma), "ffma", "thin" or "cutlass2x" to restrict the
            choice; None picks a tap-reuse kernel where it measured faster (``direct_wins``).
        capability: compute capability of the target GPU; sm_90a rows need exactly (9, 0).
    Returns:
        the KernelConfig to run. Channel counts that are not multiples of 4 run on the SIMT
        kernels (exact fp32, at least as accurate as asked) whatever the precision.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    for name in forced_configs(config):
        k = BY_NAME[name]
        if not k.serves(op):
            continue
        if not _aligned(problem, op, k):
            raise ValueError(f"config {name!r} needs channel counts that are multiples of {k.align}; "
                             f"got C_in={problem.c_in}, C_out={problem.c_out}")
        if compiled is not None and name not in set(compiled):
            raise ValueError(f"config {name!r} is not compiled into this build")
        if k.tap_reuse and not direct_fits(problem, op, k, smem_limit, capability):
            raise ValueError(f"config {name!r} cannot run this problem on this GPU (arch {k.arch}, shared "
                             f"memory, stride, taps or grid size); choose another from convt3d_cutlass.configs()")
        return k
    prec = precision
    if not all(_aligned(problem, op, k) for k in kernels_for(op, prec)):
        prec = "fp32"
    comp = None if compiled is None else set(compiled)
    if op == "wgrad" and prec == precision == "fp32" and family in (None, "direct") and out_ncdhw:
        k = _patch_choice(problem, op, comp)
        if k is not None:
            return k
    if op == "wgrad" and prec == "fp32" and family in (None, "ffma"):
        k = _ffma_wgrad_choice(problem, comp, num_sms, out_ncdhw)
        if k is not None:
            return k
    if op == "fprop" and prec == precision == "tf32" and family in (None, "thin"):
        k = _thin_choice(problem, comp)
        if k is not None or family == "thin":
            if k is None:
                raise LookupError("no thin kernel can run grad_input of this problem")
            return k
    if family in (None, "direct") and prec == precision:
        if op == "wgrad":
            k = None
            if problem.stride == 1 and igemm_wins(problem, op, prec):
                k = _igemm_wgrad_choice(problem, prec, comp, smem_limit, capability, swapped_only=True)
            if k is None and problem.stride == 1:
                k = _wgmma_wgrad_choice(problem, prec, comp, smem_limit, capability)
            if k is None and igemm_wins(problem, op, prec):
                k = _igemm_wgrad_choice(problem, prec, comp, smem_limit, capability)
            if k is None and problem.stride > 1 and problem.spatial[2] >= WGMMA_WGRAD_MIN_STRIDED_W:
                k = _wgmma_wgrad_choice(problem, prec, comp, smem_limit, capability)
            if k is None and (direct_wins(problem, op) if prec == "tf32" else simt_wins(problem, op)):
                k = _direct_wgrad_choice(problem, prec, comp, smem_limit)
        else:
            # tf32 and 3xtf32: the forward of an NCDHW layer only (PATCH_TENSOR_CORE_PASSES).
            k = _patch_choice(problem, op, comp, prec) if prec == "fp32" or (
                out_ncdhw and op in PATCH_TENSOR_CORE_PASSES) else None
            if k is not None:
                return k
            # The forward's output layout is its input's (functional: y in x's memory format).
            k = _direct_choice(problem, op, prec, num_sms, comp, smem_limit, capability, out_ncdhw)
            if op == "fprop" and prec == "fp32" and family is None:
                ff = _ffma_fprop_choice(problem, comp, k, ncdhw=out_ncdhw)
                if ff is not None:
                    return ff
            if op == "fprop" and out_ncdhw:
                k = _sector_twin(problem, k, comp, smem_limit, capability, num_sms)
            k = _rs_twin(problem, op, k, comp, smem_limit, capability, in_ncdhw=op == "dgrad" and out_ncdhw)
            if op == "dgrad" and WGMMA_WFOLD and k is not None and prec == "tf32":
                wf = _wfold_choice(problem, prec, comp, smem_limit, capability)
                if wf is not None and _wfold_wins(problem, k, out_ncdhw, num_sms):
                    k = wf
        if k is not None or family == "direct":
            if k is None:
                raise LookupError(f"no direct kernel can run {op} of this problem")
            return k
    if op == "fprop" and prec == "fp32" and family == "ffma":
        k = _ffma_fprop_choice(problem, comp, None, forced=True)
        if k is not None:
            return k
    m, n = gemm_mn if gemm_mn is not None else problem.gemm(op)[:2]
    choice = _heuristic(m, n, op, prec, num_sms, problem.stride)
    if compiled is not None:
        compiled = set(compiled)
        if choice.name not in compiled:
            # A filtered build (CONVT3D_KERNELS): any compiled kernel of the same op/precision.
            for k in kernels_for(op, prec):
                if k.name in compiled and _aligned(problem, op, k):
                    return k
            raise LookupError(f"no compiled {op} kernel for precision {prec!r} in this build")
    return choice


# Serial split-K of the stock SIMT grad_input's 4-warp 128x128 tile below SIMT_WIDE_WARP_MIN_WAVES waves of
# tiles: two slices give it its two CTAs per SM (H100, fp32, v0.21, ms, one slice / two / three / four):
# U-Net 256->128 s2 (128 tiles) 0.479 / 0.404 / 0.591 / 0.417, 3D-GAN 256->128 (128) 0.478 / 0.400 / 0.590
# / 0.416, V-Net up k5 (108) 1.089 / 0.913 / 1.317 / 0.927; with 512 tiles two slices lose (U-Net 128->64:
# 0.793 / 0.825). The 8-warp 32x64 form gained nothing from slices (one CTA per SM by its registers).
SIMT_FPROP_SLICES = 2


def fprop_slices(problem: Problem, k: KernelConfig, num_sms: int = DEFAULT_SMS) -> int:
    """Serial split-K slices of the stock grad_input kernel k (policy above); 1 for every other kernel."""
    if k.family != "cutlass2x" or k.math != "simt" or k.warp[:2] != (64, 64):
        return 1
    m, n, kk = problem.gemm("fprop")
    if math.ceil(kk / k.tile[2]) < 8 * SIMT_FPROP_SLICES:  # keep >= 8 main-loop iterations per slice
        return 1
    return SIMT_FPROP_SLICES if _tiles_128(m, n) < SIMT_WIDE_WARP_MIN_WAVES * num_sms else 1


# The FFMA grad_weight's 128-row tile (8 warps, csrc/ffma_wgrad.cuh) runs as fast with one CTA per SM as with
# two (H100, v0.43, bench/tools/ffmaslices.py: U-Net 256->128 at 2 slices, 108 CTAs, 0.4505 ms; at 4, 216
# CTAs, 0.4408), so its time goes by the busiest SM's CTAs: ceil(tiles x slices / SMs) of 1/slices of the
# reduction each. The 4-wave count below took 9-38 slices where 2-8 cost the same or less by that count, and
# measured so: U-Net and 3D-GAN 256->128 10 -> 2 slices 0.4536 -> 0.4505 ms, V-Net up 9 -> 2 0.797 -> 0.734,
# the 128->64 layers 38 -> 8 0.884 -> 0.861, at a fifth of the partial sums' bytes: on the 256->128 layers'
# NCDHW steps those were the largest block at the peak (33.75 of 88.8 MiB against cuDNN's 70.5 in all).
# The 64- and 32-row tiles (4 warps) need several CTAs per SM (U-Net 64->32 at 16 slices, one CTA per SM:
# 1.10x slower than 76); they keep three CTAs per SM resident (csrc/ffma_wgrad.cuh, kMinBlocks, on the H200;
# FFMA_STREAMK_PER_SM mirrors it), and their grid goes in whole waves of those slots: the 4-wave count of CTAs
# (4 x SMs) spilled past a wave by a few CTAs, which then ran alone. H200 (v0.80, bench/tools/ffmatile.py, GPU ms at 76 slices / one wave / two):
# U-Net 64->32 on the 64-row tile 1.845 (532 CTAs on 396 slots) / 1.521 (56 slices) / 1.498 (113), SR x2 1.557
# / 1.284 / 1.272, V-Net refine on the 32-row tile 1.202 (66 slices, 528 CTAs) / 0.936 (49) / 0.933 (99); three
# and four waves as fast as two. One wave: 0.3-1.5% slower than two at half their partial sums, and fewer than
# the old count's. FFMA_WGRAD_WAVES = 0 keeps the old count (A/B).
FFMA_ONE_CTA_PER_SM_ROWS = 128
FFMA_WGRAD_WAVES = 1
# The stock grad_weight kernels keep several CTAs per SM (sm_90a, ptxas: wgrad_3xtf32_64x64x32 168 registers, three
# per SM; wgrad_tf32_64x64x32 at four stages three by shared memory), which the 4-wave count (one CTA per SM) does
# not know: the sweep's 3xtf32 grids (V-Net refine 544 CTAs, 3D-GAN 64->32 567) ended a third into a wave of 396.
# So where the CUDA runtime says how many are resident (KernelEntry::resident) they take, of 1 .. the old count,
# the slices with the smallest busiest-SM share of the reduction, ceil(tiles x s / slots) / s (the fewest on a
# tie). H200, v0.81 (selab.py, 3xtf32 grad_weight, channels_last_3d / NCDHW): V-Net refine 17 -> 12 slices
# 1.155x / 1.148x, 3D-GAN 64->32 9 -> 6 1.075x / 1.089x, U-Net k2 up 132 -> 99 0.86x / 1.04x in one call and
# 1.06x / 1.06x in the next (tf32 1.10x / 1.04x; 0.05-0.12 ms kernels). Plain whole waves (slots // tiles) lost
# where tiles fill more than half a wave: 3D-GAN 256->128 3 -> 1 slice 0.84x / 1.03x, V-Net up 0.99x / 0.98x;
# there the share keeps the old 3.
# False keeps the 4-wave count (A/B).
STOCK_WGRAD_BY_SHARE = True


def split_k_slices(problem: Problem, k: KernelConfig, num_sms: int = DEFAULT_SMS,
                   max_partial_bytes: int = 256 << 20, resident: int = 0) -> int:
    """Slices of the wgrad reduction (GEMM K = all positions) so about 4 waves of CTAs run; on the FFMA
    128-row tile the fewest slices that keep the busiest SM's share of the reduction at most that count's, on
    the 64- and 32-row tiles FFMA_WGRAD_WAVES whole waves of their resident CTAs (policy above); on the stock
    kernels, where ``resident`` (their CTAs per SM, asked of the CUDA runtime) is known, the count up to the
    old one with the smallest busiest-SM share over SMs x resident slots (STOCK_WGRAD_BY_SHARE). The FFMA
    tiles take ``resident`` too where given, else the H200's count.

    Partial sums go to a [slices, C_in*k^3*C_out] fp32 buffer that is summed in a fixed order,
    so the weight gradient is bitwise reproducible.
    """
    if k.streamk:  # its pieces add into one slot (csrc/ffma_wgrad.cuh, SK)
        return 1
    m, n, _ = problem.gemm("wgrad")
    tiles, k_iters = _wgrad_tiles(problem, k)
    want = math.ceil(4 * num_sms / tiles)
    cap_iters = max(1, k_iters // 8)  # keep >= 8 main-loop iterations per slice
    cap_mem = max(1, max_partial_bytes // (4 * m * n))
    if k.family == "ffma" and k.tile[0] != FFMA_ONE_CTA_PER_SM_ROWS and FFMA_WGRAD_WAVES:
        # The runtime's count where known: the 32-row tile's 74 KiB of stages fit twice, not three times, in an
        # A100's 164 KiB.
        want = FFMA_WGRAD_WAVES * num_sms * (resident or FFMA_STREAMK_PER_SM[k.tile[0]]) // tiles
    slices = max(1, min(want, cap_iters, cap_mem))

    def share(s, slots):  # the busiest SM's share of the reduction, in whole passes over it
        return Fraction(math.ceil(tiles * s / slots), s)
    if k.family == "ffma" and k.tile[0] == FFMA_ONE_CTA_PER_SM_ROWS:
        slices = next(s for s in range(1, slices + 1) if share(s, num_sms) <= share(slices, num_sms))
    elif k.family == "cutlass2x" and resident > 0 and STOCK_WGRAD_BY_SHARE:
        slices = min(range(1, slices + 1), key=lambda s: (share(s, num_sms * resident), s))
    return slices
