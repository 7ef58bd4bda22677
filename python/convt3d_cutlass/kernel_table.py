"""The table of compiled kernels: one row per CUTLASS instantiation in ``csrc/kernels``.

This file is the single source of truth. ``csrc/generate_kernels.py`` reads it to write one
``.cu`` per row; the selector reads it to choose. It imports nothing but the standard library so
the build can load it before torch or the package exist.

Three families, all NDHWC fp32:

* ``cutlass2x``: CUTLASS 2.x implicit-GEMM Conv3d (``ImplicitGemmMultistage``, Sm80 tensor-op or SIMT),
  the general path for every pass and precision (sm_80 and newer).
* ``direct``: our tap-reuse kernel (``csrc/direct_conv.cuh``, CuTe SM80 copy and MMA atoms). A CTA
  stages an output tile's input halo and the filter taps in shared memory once per 8 channels and
  runs every tap from there, so the input is not re-read per tap through L2. One launch covers all
  stride phases. It serves the forward (op ``dgrad``) and grad_input (op ``fprop``) in tf32; its
  ``tile`` is (rows, BN, 8) for an output block of ``block`` = (TD, TH, TW) positions. (A 3xtf32
  form, commit 579cd9f, measured 5e-6 to 2e-5 relative error against the stock kernels' 4e-7 and was
  dropped: docs/performance.md.) Its ``wgrad`` rows (``csrc/direct_wgrad.cuh``) serve grad_weight:
  ``tile`` is (BM, BN, 8) = (C_in, C_out) block per warp, ``block`` = (1, TH, TW) the x tile.
* ``wgmma``: the same tap reuse on Hopper (``csrc/direct_sm90.cuh``, sm_90a only): TMA box loads
  and SS-wgmma with the kw taps folded into GEMM N = ``kx`` * BN; forward and grad_input at unit input
  stride. ``block`` = (TD, TH, TW) with TW = 16 - kx + 1, on ``warpgroups`` consumer warpgroups.
  ``ws`` rows are its warp-specialized, persistent form (a producer warpgroup besides the consumers;
  the selector's first choice); ``rs`` rows are ws rows with A from registers, each fragment shared by
  the kd taps (unit stride with k = kx; the selector takes them in their ws twin's place). Its ``wgrad``
  rows (``csrc/direct_wgrad_sm90.cuh``) serve grad_weight for filter size ``ksize``: ``tile`` =
  (64 * warpgroups, BN, 8) = (rows of (kh, kw, C_out), C_in block, k8), ``block`` = (1, TH, TW) the
  x tile. Its ``3xtf32`` rows (``split``) run both operands
  as rounded hi + lo tf32 parts, three wgmmas each (the mma.sync form's truncating split is the one
  that was dropped above).
* ``igemm``: implicit GEMM per filter tap on Hopper (``csrc/igemm_sm90.cuh``, sm_90a only), on the same
  contract as the tap-reuse kernels (phase table, filter blocks): GEMM M = 128 output positions of one
  phase (``block`` = (TD, TH, TW)), N = a BN block of output channels, K = taps x reduction channels in
  chunks of 32; TMA boxes of the input per tap (with a traversal stride for strided grad_input), RS-wgmma
  with tf32 rounding in registers, warp-specialized and persistent. For strided layers with wide
  channels, where the kw fold of the tap-reuse kernels idles and their halo is stride-times wider. Its
  ``wgrad`` rows (``csrc/igemm_wgrad_sm90.cuh``) serve grad_weight the same way: one tap per unit, GEMM
  M = 128 C_in, N = BN C_out, K = positions (``block`` = the 32-position box), grad_y transposed into
  K-major by producer warps; the ``kx`` = 3 rows (k = 3) fold the kw taps into N = 3 x BN, a unit being
  one (kd, kh); their ``swap`` twins swap the GEMM's roles (M = 3 x 64 rows of (kw, C_out) on three consumer
  warpgroups, N = 128 C_in, x transposed instead of grad_y, two producer warpgroups), and the k = 5 swap rows
  (``kx5_sw``) put M = 5 x 32 rows on the same three warpgroups (two taps each, the last half idle).

* ``ffma``: exact-fp32 implicit GEMMs of our own on the stock kernels' ConvLaunch contract (16-byte cp.async of
  whole channel rows, 8 x 8 outputs per thread): grad_weight per tap (``csrc/ffma_wgrad.cuh``; ``_sk`` rows
  stream-K) and grad_input (``csrc/ffma_fprop.cuh``, op ``fprop``), run through the stock ops.
* ``thin``: tf32 grad_input of a layer with 4 output channels (``csrc/thin_fprop.cuh``, op ``fprop``, the stock
  ops' ConvLaunch contract): an implicit GEMM whose k8 step is two taps x 4 channels, A loaded straight from
  global memory, the filter resident in shared memory; ``tile`` = (128 positions, BN = C_in block, 8), ``ksize``
  the filter size it is compiled for.
* ``patch``: exact fp32 at k == stride, padding 0 (``csrc/patch_simt.cuh``): with one tap per output position
  each pass is one FFMA GEMM over positions whose activation operand is pixel-shuffled, read and written in
  either layout in place; ``tile`` = (positions, columns, 8). Forward and grad_input on the tap-reuse contract
  (the same phase tables; the filter is the weight as it is); the ``wgrad`` row (``tile`` = (C_in, columns, 16))
  on the direct_wgrad op's, its partial sums per slice summed in a fixed order.

The stock GEMM views (``docs/design.md``):

=====  ===========================  ==================  ==================
op     used for                     GEMM M              GEMM N / K
=====  ===========================  ==================  ==================
dgrad  ConvTranspose3d forward      N*Do*Ho*Wo          C_out / C_in*k^3
fprop  grad_input                   N*D*H*W             C_in / C_out*k^3
wgrad  grad_weight                  C_in                C_out*k^3 / N*D*H*W
=====  ===========================  ==================  ==================
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

OPS = ("dgrad", "fprop", "wgrad")
PRECISIONS = ("fp32", "tf32", "3xtf32")


@dataclass(frozen=True)
class KernelConfig:
    """One compiled kernel.

    ``align`` is the channel multiple the kernel needs (elements per 128-bit access for
    tensor-op kernels, 1 for SIMT). ``why`` says which problems the tile exists for.
    """

    op: str
    precision: str
    tile: Tuple[int, int, int]
    warp: Tuple[int, int, int]
    stages: int
    why: str = ""
    family: str = "cutlass2x"
    block: Tuple[int, int, int] = (0, 0, 0)
    kx: int = 0          # wgmma family: kw taps folded into GEMM N (N = kx * bn)
    warpgroups: int = 0  # wgmma family: consumer warpgroups per CTA
    ksize: int = 0       # wgmma grad_weight and thin rows: the filter size k it is compiled for
    ws: bool = False     # wgmma forward/grad_input: warp-specialized, persistent form
    rs: bool = False     # ws rows: A from registers, each fragment shared by the kd taps (needs k = kx taps)
    swap: bool = False   # igemm kw-fold grad_weight: GEMM M = (kw, C_out), N = C_in (x transposed, not grad_y)
    streamk: bool = False  # ffma grad_weight: stream-K (one CTA per slot of the SMs, tiles' pieces added in order)
    wf: int = 0          # ws rows: the w fold, forward at this stride only (phases along d and h, every kw tap in N)
    rs_ncdhw: bool = False  # RS rows: the twin only where its input is read in NCDHW storage (selector._rs_twin)
    ctas_per_sm: int = 1  # exact-fp32 tap-reuse grad_weight: CTAs per SM its registers are capped for

    def serves(self, op: str) -> bool:
        """Whether this kernel can run pass ``op`` ("dgrad", "fprop" or "wgrad")."""
        if self.wf:
            return op == "dgrad"
        if self.family in ("direct", "wgmma", "igemm", "patch") and self.op != "wgrad":
            return op in ("dgrad", "fprop")
        return op == self.op

    @property
    def tap_reuse(self) -> bool:
        """Our kernels on the tap-reuse contract (``direct`` mma.sync, ``wgmma`` and ``igemm`` Hopper, ``patch``
        FFMA): one launch per pass over a phase table, run through the ``direct`` op; not the stock CUTLASS ones."""
        return self.family in ("direct", "wgmma", "igemm", "patch")

    @property
    def split(self) -> bool:
        """3xtf32 on a Hopper kernel: hi/lo tf32 parts of both operands, three wgmmas each."""
        return self.family in ("wgmma", "igemm") and self.precision == "3xtf32"

    @property
    def bn(self) -> int:
        """Output channels per block (the GEMM N of a unit is kx * bn where kw taps fold into N)."""
        return self.warp[1] if self.family == "igemm" and self.kx > 1 else self.tile[1]

    @property
    def simt(self) -> bool:
        """Our exact-fp32 FFMA rows (direct family): csrc/direct_simt.cuh, csrc/direct_wgrad_simt.cuh."""
        return self.family == "direct" and self.precision == "fp32"

    @property
    def rows_per_thread(self) -> int:
        """The FFMA tap-reuse rows (direct, fp32): output rows of 16 positions per thread (TM); else 0."""
        return self.warp[0] // 16 if self.simt and self.op != "wgrad" else 0

    @property
    def kc(self) -> int:
        """Tap-reuse forward/grad_input rows (direct): reduction channels per shared-memory stage (8; the
        ``_c4`` FFMA rows 4, for filters whose taps of 8 channels and halo do not fit two stages)."""
        return self.tile[2] if self.family == "direct" and self.op != "wgrad" else 8

    @property
    def math(self) -> str:
        return "simt" if self.precision == "fp32" else "tensorop"

    @property
    def instruction(self) -> Tuple[int, int, int]:
        return (1, 1, 1) if self.math == "simt" else (16, 8, 8)

    @property
    def align(self) -> int:
        # Our kernels copy 16 bytes of channels at a time, the FFMA one too; the patch rows load 4 bytes at a time,
        # their tensor-core forms too (the same loader).
        return 1 if self.family == "patch" or self.math == "simt" and self.family == "cutlass2x" else 4

    @property
    def arch(self) -> str:
        """sm80: runs on compute capability 8.0 and newer; sm90a: exactly 9.0 (wgmma, TMA)."""
        return "sm90a" if self.family in ("wgmma", "igemm") else "sm80"

    @property
    def threads(self) -> int:
        if self.family == "igemm":
            # grad_weight: two producer warpgroups (seven transposing warps) on the swapped and per-tap rows.
            if self.op == "wgrad":
                return 640 if self.swap else 384 if self.kx > 1 else 512
            return 384
        if self.family == "wgmma":
            return 128 * (self.warpgroups + self.ws)
        if self.simt and self.op == "wgrad":  # warp[2] warps per (kd, kh) of k = 3
            return 32 * 9 * self.warp[2]
        return 32 * (self.tile[0] // self.warp[0]) * (self.tile[1] // self.warp[1]) * (
            self.tile[2] // self.warp[2])

    @property
    def name(self) -> str:
        if self.family == "patch":
            form = "patch_wgrad" if self.op == "wgrad" else "patch"
            return f"{form}_{self.precision}_{self.tile[0]}x{self.tile[1]}"
        if self.family == "thin":
            return f"thin_{self.op}_{self.precision}_k{self.ksize}_n{self.tile[1]}"
        if self.family == "ffma":
            return (f"ffma_{self.op}_{self.precision}_{'x'.join(map(str, self.tile))}_s{self.stages}"
                    f"{'_sk' if self.streamk else ''}")
        if self.family == "igemm":
            form = "igemm_wgrad" if self.op == "wgrad" else "igemm"
            fold = f"_kx{self.kx}" if self.kx > 1 else ""
            fold += "_sw" if self.swap else ""
            return f"{form}_{self.precision}_{'x'.join(map(str, self.block))}_n{self.bn}{fold}_s{self.stages}"
        if self.family == "wgmma" and self.op == "wgrad":
            return (f"wgmma_wgrad_{self.precision}_{self.block[1]}x{self.block[2]}_k{self.ksize}_n{self.tile[1]}"
                    f"_wg{self.warpgroups}_s{self.stages}")
        if self.family == "wgmma":
            form = "wgmma_rs" if self.rs else f"wgmma_wf{self.wf}" if self.wf else "wgmma_ws" if self.ws else "wgmma"
            return (f"{form}_{self.precision}_{'x'.join(map(str, self.block))}_kx{self.kx}_n{self.tile[1]}"
                    f"_wg{self.warpgroups}_s{self.stages}")
        if self.family == "direct" and self.op == "wgrad":
            split = f"_w{9 * self.warp[2]}" if self.simt and self.warp[2] > 1 else ""
            split += f"_o{self.ctas_per_sm}" if self.ctas_per_sm > 1 else ""
            return (f"direct_wgrad_{self.precision}_{self.block[1]}x{self.block[2]}"
                    f"_m{self.tile[0]}n{self.tile[1]}{split}")
        if self.family == "direct":
            rows = f"_m{self.rows_per_thread}" if self.rows_per_thread else ""
            chunk = f"_c{self.kc}" if self.kc != 8 else ""
            return f"direct_{self.precision}_{'x'.join(map(str, self.block))}_n{self.tile[1]}{rows}{chunk}"
        t = "x".join(map(str, self.tile))
        w = "x".join(map(str, self.warp))
        return f"{self.op}_{self.precision}_{t}_{w}_s{self.stages}"


def _k(op, precision, tile, warp, stages, why):
    return KernelConfig(op, precision, tuple(tile), tuple(warp), stages, why)


# Why each tile exists (measured on an H100 with stock Sm80 kernels, see docs/design.md):
KERNELS = (
    # --- ConvTranspose3d forward (Conv3d dgrad) -------------------------------------------
    _k("dgrad", "tf32", (256, 32, 32), (64, 32, 32), 3,
       "narrow GEMM N (C_out <= 32), huge M: best on the 48->24 headline (8.5 ms)"),
    _k("dgrad", "tf32", (128, 32, 32), (32, 32, 32), 4,
       "narrow N with fewer CTAs' worth of M (small volumes)"),
    _k("dgrad", "tf32", (128, 64, 32), (64, 32, 32), 3,
       "C_out in (32, 64]: best on 128->64 at 32^3 (0.25 ms)"),
    _k("dgrad", "tf32", (128, 128, 16), (64, 64, 16), 4,
       "wide C_out (> 64)"),
    _k("dgrad", "3xtf32", (128, 32, 32), (64, 32, 32), 3,
       "narrow N at fp32 accuracy (26.3 ms headline)"),
    _k("dgrad", "3xtf32", (128, 64, 32), (64, 32, 32), 3,
       "C_out > 32 at fp32 accuracy"),
    _k("dgrad", "fp32", (128, 32, 8), (32, 32, 8), 4,
       "exact fp32, narrow N; also any channel count (1-element access)"),
    _k("dgrad", "fp32", (128, 64, 8), (64, 32, 8), 4,
       "exact fp32, C_out > 32"),
    _k("dgrad", "fp32", (128, 128, 8), (64, 64, 8), 3,
       "exact fp32, C_out > 64, strided: the stride phases run concurrently, filling the GPU together; "
       "4 warps of 16x8 per thread, two CTAs per SM"),
    # --- grad_input (Conv3d fprop over grad_output) ---------------------------------------
    _k("fprop", "tf32", (128, 64, 32), (64, 32, 32), 3,
       "C_in in (32, 64] (GEMM N = C_in)"),
    _k("fprop", "tf32", (256, 32, 32), (64, 32, 32), 3,
       "narrow C_in <= 32, large volumes"),
    _k("fprop", "tf32", (128, 128, 16), (64, 64, 16), 4,
       "wide C_in (> 64)"),
    _k("fprop", "3xtf32", (128, 64, 32), (64, 32, 32), 3,
       "fp32 accuracy, C_in > 32"),
    _k("fprop", "3xtf32", (128, 32, 32), (64, 32, 32), 3,
       "fp32 accuracy, narrow C_in"),
    _k("fprop", "fp32", (128, 64, 8), (64, 32, 8), 4,
       "exact fp32, C_in > 32; any channel count"),
    _k("fprop", "fp32", (128, 32, 8), (32, 32, 8), 4,
       "exact fp32, narrow C_in"),
    _k("fprop", "fp32", (128, 128, 8), (64, 64, 8), 3,
       "exact fp32, C_in > 64: 4 warps of 16x8 per thread, two CTAs per SM (split-K below two waves)"),
    # --- grad_weight (Conv3d wgrad); long K, split across CTAs ----------------------------
    _k("wgrad", "tf32", (64, 64, 32), (32, 32, 32), 4,
       "C_in <= 64: small GEMM M, long K split into parallel slices"),
    _k("wgrad", "tf32", (128, 128, 16), (64, 64, 16), 4,
       "C_in > 64"),
    _k("wgrad", "3xtf32", (64, 64, 32), (32, 32, 32), 3,
       "fp32 accuracy"),
    _k("wgrad", "fp32", (64, 64, 8), (32, 32, 8), 4,
       "exact fp32; any channel count"),
    _k("wgrad", "fp32", (128, 64, 8), (64, 32, 8), 4,
       "exact fp32, C_in >= 128"),
    _k("wgrad", "fp32", (256, 64, 8), (64, 32, 8), 4,
       "exact fp32, C_in >= 256"),
)



def _direct(precision, block, bn, why):
    rows = block[0] * block[1] * block[2]
    return KernelConfig("direct", precision, (rows, bn, 8), (32, bn, 8), 2, why, "direct", tuple(block))


# Tap-reuse kernels. BN is the output-channel tile (C_out for the forward, C_in for grad_input);
# 2x8x16 (8 warps) is the main block, 4x8x16 (16 warps) for large unit-stride layers (the filter
# stage and the halo rim shared by twice the rows: headline forward 5.95 vs 6.28 ms, grad_input
# 4.76 vs 4.98 ms), 1x8x16 (4 warps) for small layers and strided grad_input, whose halo is
# stride-times wider. (A 2x8x16 n48 row, one N tile for C_in = 48, measured 5.30 ms against two
# n24 tiles' 4.98 ms on the headline grad_input: its 48 accumulators per m-tile hit the register cap.)
DIRECT_KERNELS = tuple(
    _direct(prec, block, bn, why)
    for prec in ("tf32",)
    for block, bn, why in (
        ((2, 8, 16), 16, "output channels <= 16"),
        ((2, 8, 16), 24, "output channels 24 or 48 (multiples of 24 without padding)"),
        ((2, 8, 16), 32, "output channels 32"),
        ((2, 8, 16), 64, "wide output channels, in tiles of 64"),
        ((4, 8, 16), 24, "deeper tile: the filter stage and halo rim amortised over twice the rows"),
        ((1, 8, 16), 32, "small layers (more CTAs) and strided grad_input (wider halo)"),
        ((1, 8, 16), 64, "small or strided, wide channels"),
    ))



def _direct_simt(block, bn, tm, why, kc=8):
    rows = block[0] * block[1] * block[2]
    return KernelConfig("direct", "fp32", (rows, bn, kc), (16 * tm, bn, kc), 2, why, "direct", tuple(block))


# Exact fp32 on tap reuse (csrc/direct_simt.cuh, FFMA): the same staging as the rows above, lanes l and
# l + 16 on the same 16 positions along w for two halves of BN, TM output rows of 16 per thread (the
# ``_m`` suffix), 8 warps. The 8x8x16 blocks (TM = 8) for layers with CTAs to spare: headline forward
# 14.9 ms vs 16.0 on 4x8x16, grad_input 11.3 vs 11.5 (H100).
DIRECT_SIMT_KERNELS = tuple(
    _direct_simt(block, bn, tm, why)
    for block, bn, tm, why in (
        ((4, 8, 16), 24, 4, "exact fp32, output channels 24 (or 48 in two blocks)"),
        ((8, 8, 16), 24, 8, "exact fp32, output channels 24: twice the rows per thread"),
        ((4, 8, 16), 48, 4, "exact fp32, output channels 48 in one block"),
        ((4, 8, 16), 32, 4, "exact fp32, output channels 32 and wider in blocks of 32"),
        ((4, 8, 16), 16, 4, "exact fp32, output channels <= 16"),
        ((8, 8, 16), 32, 8, "exact fp32, output channels 32 and wider, large layers"),
        ((8, 8, 16), 16, 8, "exact fp32, output channels <= 16, large layers"),
        # Each half-warp holds BN / 2 channels, so C_out <= 8 on the n16 rows spent half the FFMAs on padding:
        # SR head's forward (32 -> 8) 1.008 ms against 1.623 on 8x8x16 n16 (H200, --configs, v0.77).
        ((8, 8, 16), 8, 8, "exact fp32, output channels <= 8, large layers"),
    )) + tuple(
    # k = 5 at unit stride: 125 taps of 8 channels and the halo exceed two stages of shared memory on
    # every row above, so these stage 4 channels at a time (the stock SIMT kernel ran V-Net's k5 refine
    # layer at 12 TFLOP/s, v0.19).
    _direct_simt(block, bn, tm, why, kc=4)
    for block, bn, tm, why in (
        ((8, 8, 16), 16, 8, "exact fp32, k5 taps, output channels <= 16: 4 channels per stage"),
        ((8, 8, 16), 32, 8, "exact fp32, k5 taps, output channels 32 and wider: 4 channels per stage"),
    ))


def _direct_wgrad(precision, block, bm, bn, why):
    return KernelConfig("wgrad", precision, (bm, bn, 8), (bm, bn, 8), 2, why, "direct", (1,) + tuple(block))


# Weight gradient on tap reuse (csrc/direct_wgrad.cuh): one warp per (kh, kw) tap holds a
# BM (C_in) x BN (C_out) block; a CTA walks 1 x TH x TW tiles of x. 8x16 is the main tile; 4x16
# halves the grad_y halo, which is stride-times wider, for strided layers.
DIRECT_WGRAD_KERNELS = tuple(
    _direct_wgrad(prec, block, bm, bn, why)
    for prec in ("tf32",)
    for block, bm, bn, why in (
        ((8, 16), 48, 24, "C_in 48 / C_out 24 and their multiples without padding"),
        ((8, 16), 64, 32, "wide channels, in 64 x 32 blocks"),
        ((8, 16), 32, 16, "narrow channels"),
        ((8, 16), 32, 8, "C_out <= 8"),
        ((4, 16), 64, 32, "strided, wide channels (stride-times wider halo)"),
        ((4, 16), 32, 16, "strided, narrow channels"),
    ))



def _wgmma(precision, depth, height, kx, bn, warpgroups, stages, why, ws=False, rs=False, wf=0, rs_ncdhw=False):
    # A 16-position halo row holds TW + kx - 1 inputs; with the w fold at stride wf, TW inputs whose outputs
    # are complete, (kx - 1) // wf of them overlapping the previous tile.
    block = (depth, height, 16 - (kx - 1) // wf if wf else 16 - kx + 1)
    return KernelConfig("direct", precision, (depth * height * 16, bn, 8), (64, kx * bn, 8), stages, why,
                        "wgmma", block, kx, warpgroups, ws=ws or rs or bool(wf), rs=rs, wf=wf, rs_ncdhw=rs_ncdhw)


# Hopper tap reuse (csrc/direct_sm90.cuh): TMA-staged halo and filter, SS-wgmma with kw folded into
# N = kx * BN, for unit input stride (the forward at any stride, grad_input at stride 1) and phases
# with at most kx taps along w. sm_90a only; built when TORCH_CUDA_ARCH_LIST names 9.0a. 4x8 output
# rows per CTA (the filter stage shared by twice the rows of 2x8) won wherever the accumulators fit:
# four warpgroups for N <= 96; N = 144 and 192 need 2x8 tiles. (Measured and dropped: 2x8 for N <= 96,
# slower on every case; 1x8 on one warpgroup; 4x8 N = 72 on two warpgroups, equal or slower; one more
# pipeline stage, 0-7% slower; kx = 2 for stride-2 forwards, 2-29% slower than mma.sync there.)
# The warp-specialized, persistent form (csrc/direct_sm90.cuh wgmma_ws_kernel): a producer warpgroup
# (TMA issue, tf32 rounding) and two consumer warpgroups (wgmma, epilogue in registers), one CTA per
# SM walking work units; no scratch, and as many stages as fit in shared memory, up to the row's
# stage count (8; the headline forward takes 4, its grad_input 3, strided phases 5-6). First in the table:
# on ties the selector takes the earlier row, and a layer whose halo and filter stages do not fit
# falls through to the rows below.
WGMMA_WS_KERNELS = tuple(
    _wgmma(prec, depth, height, kx, bn, 2, 8, why, ws=True)
    for prec, depth, height, kx, bn, why in (
        ("tf32", 4, 8, 3, 8, "C_out <= 8 (N = 24): sr-head forward 0.228 ms vs 0.272 on n16 (H200, v0.77)"),
        ("tf32", 4, 8, 3, 16, "C_out <= 16 (N = 48): sr-head forward 0.34 ms vs 0.58 on the first form"),
        ("tf32", 4, 8, 3, 24, "C_out 17-24 (N = 72): headline forward 2.03-2.14 ms vs 2.84 on the first form"),
        ("tf32", 4, 8, 3, 32, "C_out 25-32 (N = 96): video-gen forward 0.138 ms vs 0.218 on the first form"),
        ("tf32", 2, 8, 3, 48, "C_out 48 (N = 144): headline grad_input 1.83-1.87 ms vs 3.30 on the first form"),
        ("tf32", 2, 8, 3, 64, "wide channels in tiles of 64 (N = 192): medium forward 0.133 ms vs 0.155"),
        # Behind the 4x8 n32 row, so only selector._sector_twin picks it: grad_input written NCDHW, where the
        # 4x8 row's 192 accumulators leave no registers for the sector it would carry and it goes through
        # channels_last_3d plus our transpose.
        ("tf32", 2, 8, 3, 32, "C_out 25-32, grad_input NCDHW by whole sectors (the 4x8 n32 row's twin): "
                              "SR head 0.324 ms vs 0.423 with the transpose"),
        # k5 at unit stride (v0.26): the five kw taps folded into N = 80, 12 outputs per 16-wide halo row;
        # a 16-channel block keeps V-Net refine's grad_input filter (16 -> 32 channels) resident. Against
        # mma.sync tap reuse on V-Net refine (H100, cfgab.py): forward 0.192 vs 0.526 ms, grad_input 0.177
        # vs 0.519 (channels_last_3d); a 2x8 tile of the same row ran 0.242 / 0.197 (dropped).
        ("tf32", 4, 8, 5, 16, "k5, output channels in blocks of 16 (N = 80): V-Net refine forward 0.19 ms "
                              "vs 0.53 mma.sync, grad_input 0.18 vs 0.52"),
        # 3xtf32 on the same kernel (fp32 accuracy): hi and lo tf32 parts of the halo (split by the
        # producer warpgroup, both rounded) and of the filter (split on the host), a_lo b_hi + a_hi b_lo
        # + a_hi b_hi per tap. Twice the stage bytes, so rows up to N = 96 only (a wider one would hold
        # one stage).
        ("3xtf32", 4, 8, 3, 8, "3xtf32, C_out <= 8 (N = 24): sr-head forward 0.680 ms vs 0.840 on n16 (H200, v0.77)"),
        ("3xtf32", 4, 8, 3, 16, "3xtf32, C_out <= 16"),
        ("3xtf32", 4, 8, 3, 24, "3xtf32, C_out 17-24: headline forward 6.0 ms, grad_input (two blocks) 5.1, "
                                "vs 23.2 / 13.1 stock"),
        ("3xtf32", 2, 8, 3, 32, "3xtf32, C_out > 24 in blocks of 32"),
    ))

# The same kernel with A from registers (wgmma_ws_kernel's RS form): each consumer warpgroup owns one 4-row
# h block through every plane of the tile, so an A fragment loaded (and rounded) once serves the kd taps of
# up to kx output planes, and the halo needs no rounding pass. Unit stride only (every phase with kx taps
# per axis), tf32; selector._rs_twin puts it in its ws twin's place. Same process against the twins (H100,
# bench/tools/rsab.py, 5 rounds, v0.28): V-Net refine (k5) forward 0.214 -> 0.168 ms channels_last_3d,
# 0.238 -> 0.193 NCDHW, step 1.04x / 1.23x. The k3 twins were built and measured too and dropped in v0.28:
# headline forward 2.269 -> 2.283 ms (grad_input 2.075 -> 2.003, step 6.594 -> 6.640), SR head forward
# 0.430 -> 0.457 (0.94x): sharing a fragment among three taps instead of five did not pay for the serialised
# groups. (192 accumulators, N = 96 on 4 planes or 192 on 2, would not fit beside the fragments: C7512.)
# Since v0.48 they are back for NCDHW x only (rs_ncdhw, below): there the RS form reads TMA's raw boxes and
# the ws form's transposing pass goes (cfgab.py, NCDHW: headline forward 2.317 against 2.785 ms, SR head
# 0.469 against 0.548).
WGMMA_RS_KERNELS = (
    _wgmma("tf32", 4, 8, 5, 16, 2, 8, "RS twin of the k5 ws row: V-Net refine forward 0.168 vs 0.214 ms",
           rs=True),
    # On an NCDHW input the RS form has no transposing pass: its consumers load the A fragments straight
    # from the [channel][positions] boxes TMA lands (csrc/direct_sm90.cuh, IN with RS), where the ws form
    # lands them in a ring of their own and its rounders write K-major stages from it.
    _wgmma("tf32", 4, 8, 3, 8, 2, 8, "RS twin of the k3 n8 ws row, NCDHW input only: sr-head forward 0.272 ms vs "
                                     "0.295 on the n16 twin (H200, v0.77)", rs=True, rs_ncdhw=True),
    _wgmma("tf32", 4, 8, 3, 16, 2, 8, "RS twin of the k3 n16 ws row, NCDHW input only", rs=True, rs_ncdhw=True),
    _wgmma("tf32", 4, 8, 3, 24, 2, 8, "RS twin of the k3 n24 ws row, NCDHW input only", rs=True, rs_ncdhw=True),
)

# The w fold (wgmma_ws_kernel's WF form): the stride-2 forward as phases along d and h only, every kw tap in
# N = k * BN, each halo position's kw partial sums added into the outputs 2 m - pad + kw by the epilogue. The
# per-w-phase rows above fold at most kx taps of one phase (1-2 of k3's, 2-3 of k5's: a third to a half of N
# idle), and the implicit GEMM re-reads the input per tap from L2 (its busiest unit on these forwards,
# v0.27/v0.32). A tile stores 2 (16 - R) contiguous outputs along w, R = (k - 1) // 2: whole 32-byte sectors in
# channels_last_3d; plain NCDHW stores lost to our transpose (v0.47), so channels_last_3d only. (A 2x8 n64 row,
# N = 192, lost to the implicit GEMM's n64 and n128 rows on every 64-128-channel layer: 0.50-0.83x; dropped.)
WGMMA_WF_KERNELS = tuple(
    _wgmma("tf32", depth, height, kx, bn, 2, 8, why, wf=2)
    for depth, height, kx, bn, why in (
        (4, 8, 3, 32, "k3 stride 2, C_out 17-32 (N = 96): U-Net 64->32 forward 0.587 ms vs 0.882 on the "
                      "implicit GEMM"),
        (2, 8, 5, 32, "k5 stride 2, C_out in blocks of 32 (N = 160): 3D-GAN 64->32 forward 1.568 ms vs 1.796 on "
                      "the kx3 ws row"),
    ))

WGMMA_KERNELS = WGMMA_WS_KERNELS + WGMMA_RS_KERNELS + WGMMA_WF_KERNELS + tuple(
    _wgmma(prec, depth, height, kx, bn, wg, stages, why)
    for prec in ("tf32",)
    for depth, height, kx, bn, wg, stages, why in (
        (4, 8, 3, 16, 2, 4, "C_out <= 16 (N = 48): sr-head forward 0.60 ms vs 0.83 mma.sync"),
        (4, 8, 3, 24, 4, 3, "C_out 17-24 (N = 72): headline forward 2.7-3.2 ms vs 5.8-6.1 mma.sync"),
        (4, 8, 3, 32, 4, 3, "C_out 25-32 (N = 96): video-gen forward 0.22 ms vs 0.34 mma.sync"),
        (2, 8, 3, 48, 2, 2, "C_out 48 (N = 144): headline grad_input 3.05-3.4 ms vs 4.65-4.9 mma.sync"),
        (2, 8, 3, 64, 2, 2, "wide channels in tiles of 64 (N = 192): 128->64 forward 0.29 ms vs stock 0.37"),
    ))



def _wgmma_wgrad(precision, height, width, k, bn, warpgroups, why, stages=2):
    return KernelConfig("wgrad", precision, (64 * warpgroups, bn, 8), (64, bn, 8), stages, why, "wgmma",
                        (1, height, width), 0, warpgroups, k)


# Hopper weight gradient (csrc/direct_wgrad_sm90.cuh, sm_90a only): RS-wgmma with GEMM M = (kh, kw,
# C_out block) gathered from a ring of grad_y halo planes, N = a BN block of C_in from the x plane
# tile transposed in shared memory, K = positions; a CTA walks a column of 1 x TH x TW x tiles along
# depth. One row per filter size k (the accumulators hold every kd). tf32 rows on four warpgroups run
# warp-specialized for k3, and for k5 at unit stride: one warpgroup stages (halo rounding, x^T) while
# three run the MMAs, with the M tiles of four (v0.33). (An N = 64 row on two
# warpgroups, for the registers, fit almost no layer: five 32 KiB x tiles plus the padded-pitch
# halo ring exceed 227 KiB once C_out > 8.)
_WGRAD_ROWS = (
    (8, 16, 3, 48, 4, "k3, C_in 48 (one N block): the headline"),
    (8, 16, 3, 32, 4, "k3, C_in <= 32 or in blocks of 32"),
    (8, 16, 5, 32, 4, "k5, C_in in blocks of 32"),
    (4, 16, 3, 32, 4, "k3, strided: half the x tile, so the stride-times wider halo ring fits"),
    (4, 16, 5, 32, 4, "k5, strided (the 8x16 k5 ring exceeds shared memory): 3D-GAN 64->32 2.49 ms vs "
                      "4.47 mma.sync"),
)
# Three stages (TMA two steps ahead, two x^T buffers; tf32, always the warp-specialized form), stride > 1
# (selector): H100, bench/tools/wgrad_stages.py, ABBA rounds: U-Net 64->32 0.593 -> 0.554 ms, SR x2 0.510 ->
# 0.476, U-Net x2 with output_padding 0.092 -> 0.090; 3D-GAN 64->32 (k5, whose two-stage row runs the plain form
# in 256 depth segments) 1.998 -> 1.782-1.813 in 33 ranges. At unit stride the 8x16 rows lost 18-37% (headline
# 1.70 -> 2.02 ms), V-Net refine's k5 2%. Where its ring (stride 2: k + 4 planes) does not fit, the two-stage row
# takes the layer.
_WGRAD_ROWS_S3 = (
    (4, 16, 3, 32, 4, "k3, strided, three stages: U-Net 64->32 grad_weight 0.554 ms vs 0.593 at two"),
    (4, 16, 5, 32, 4, "k5, strided, three stages: 3D-GAN 64->32 grad_weight 1.78-1.81 ms vs 2.00 at two"),
)
# 3xtf32 on the same kernel (the split: hi and lo x^T tiles, A split into hi and lo as it loads, three
# wgmmas per kd, and the accumulators promoted into fp32 registers after every plane): two
# warpgroups, for the registers of the second accumulator set; k3 rows only (k5's would not fit).
WGMMA_WGRAD_KERNELS = tuple(
    _wgmma_wgrad("tf32", th, tw, k, bn, wg, why, stages=3) for th, tw, k, bn, wg, why in _WGRAD_ROWS_S3
) + tuple(
    _wgmma_wgrad("tf32", th, tw, k, bn, wg, why) for th, tw, k, bn, wg, why in _WGRAD_ROWS
) + tuple(
    _wgmma_wgrad("3xtf32", th, tw, k, bn, 2, why) for th, tw, k, bn, wg, why in _WGRAD_ROWS if k == 3
)


def _igemm(precision, block, bn, stages, why, op="direct", kx=0, swap=False):
    if swap:  # M = (kw, C_out) on 64-row consumer warpgroups (k3: one per kw tap), N = 128 C_in
        return KernelConfig(op, precision, (kx * bn, 128, 32), (64, bn, 8), stages, why, "igemm",
                            tuple(block), kx, -(-kx * bn // 64), swap=True)
    return KernelConfig(op, precision, (128, kx * bn if kx else bn, 32), (64, bn, 8), stages, why, "igemm",
                        tuple(block), kx, 2)


# Hopper implicit GEMM per tap (csrc/igemm_sm90.cuh): 128 output positions x BN channels per unit, two
# consumer warpgroups, as many 32-channel stages as fit (A 16 KiB + B BN x 128 bytes each). 1x8x16 for
# phases 16 or more wide along w; 2x8x8 for 8-wide phases (3D-GAN at 8^3), which would idle half of a
# 16-wide tile.
# 3xtf32 (split: A into hi + lo in registers, the filter's lo part a second B box, three wgmmas per k8
# step, accumulators promoted into fp32 registers per tap): N blocks of 64, and of 32 for 32 output
# channels, where a 64-wide block's MMAs are half padding; a 128-wide one's accumulators and their fp32
# totals exceed the 168 registers of 384 threads (ptxas spilled).
IGEMM_KERNELS = tuple(
    _igemm(prec, block, bn, stages, why)
    for prec, block, bn, stages, why in (
        ("tf32", (1, 8, 16), 128, 6, "strided, wide output channels (> 64) in blocks of 128"),
        ("tf32", (1, 8, 16), 64, 8, "strided, output channels <= 64"),
        ("tf32", (2, 8, 8), 128, 6, "strided, narrow volumes (8-wide phases), wide channels"),
        ("tf32", (2, 8, 8), 64, 8, "strided, narrow volumes, output channels <= 64"),
        ("tf32", (1, 8, 16), 32, 10, "strided, output channels <= 32"),
        ("tf32", (2, 8, 8), 32, 10, "strided, narrow volumes, output channels <= 32"),
        ("3xtf32", (1, 8, 16), 64, 6, "3xtf32, strided or wide, in blocks of 64 output channels"),
        ("3xtf32", (1, 8, 16), 32, 9, "3xtf32, strided, output channels <= 32"),
        ("3xtf32", (2, 8, 8), 64, 6, "3xtf32, narrow volumes (8-wide phases)"),
    ))


# Hopper grad_weight as an implicit GEMM per tap (csrc/igemm_wgrad_sm90.cuh): one tap x 128 C_in x BN
# C_out per unit, K = positions in boxes of 32 (1x4x8 for volumes 8 wide, 1x2x16 for 16 and wider), the
# reduction split into slices summed in a fixed order. For strided layers with wide channels, where the
# tap-reuse grad_weight re-stages the stride-times wider grad_y halo per 32-channel block. Seven producer
# warps transpose grad_y (v0.39: V-Net up 0.364 -> 0.256 ms against three, H100, tf32).
# kx = 3 rows (k = 3 only): the kw taps fold into N = 3 x 64, so each x box feeds three taps' MMAs and a
# unit is one (kd, kh); grad_y comes as one box spanning the three taps' positions along w.
# swap rows: the same units with the GEMM's roles swapped (M = 3 x 64 rows of (kw, C_out), one consumer
# warpgroup per kw tap; N = 128 C_in): seven producer warps transpose x (128 x 32 per k-block) where three
# transposed the three taps' grad_y (192 x 32), which bound the kx = 3 rows; four stages fit (v0.38:
# 256->128 layers 0.143 -> 0.096 ms, 128->64 0.225 -> 0.157, H100, tf32). The k5 swap rows (M = 5 x 32 on
# three warpgroups) replace the per-tap rows on strided k5 layers: 25 units per 32 C_out where the per-tap rows
# ran 125, each transposing its own grad_y block.
IGEMM_WGRAD_KERNELS = tuple(
    _igemm("tf32", block, bn, stages, why, op="wgrad", kx=kx, swap=swap)
    for block, bn, stages, kx, swap, why in (
        ((1, 4, 8), 128, 4, 0, False, "grad_weight, C_out > 64 in blocks of 128, 8-wide volumes"),
        ((1, 4, 8), 64, 6, 0, False, "grad_weight, C_out <= 64, 8-wide volumes"),
        ((1, 2, 16), 128, 4, 0, False, "grad_weight, C_out > 64 in blocks of 128, volumes 16 and wider"),
        ((1, 2, 16), 64, 6, 0, False, "grad_weight, C_out <= 64, volumes 16 and wider"),
        ((1, 4, 8), 64, 3, 3, False, "grad_weight k3, kw folded into N = 3 x 64, 8-wide volumes"),
        ((1, 2, 16), 64, 3, 3, False, "grad_weight k3, kw folded into N = 3 x 64, volumes 16 and wider"),
        ((1, 4, 8), 64, 4, 3, True, "grad_weight k3, kw fold with x transposed: M = 3 x 64, 8-wide volumes"),
        ((1, 2, 16), 64, 4, 3, True, "grad_weight k3, kw fold with x transposed: M = 3 x 64, volumes 16 and wider"),
        ((1, 4, 8), 32, 4, 5, True, "grad_weight k5, kw fold with x transposed: M = 5 x 32, 8-wide volumes"),
        ((1, 2, 16), 32, 4, 5, True, "grad_weight k5, kw fold with x transposed: M = 5 x 32, volumes 16 and wider"),
    ))




def _direct_wgrad_simt(block, bm, bn, split, why, ctas=1):
    return KernelConfig("wgrad", "fp32", (bm, bn, 8), (bm // (8 * split), bn // 4, split), 2, why, "direct",
                        (1,) + tuple(block), ctas_per_sm=ctas)


# Exact-fp32 weight gradient on tap reuse (csrc/direct_wgrad_simt.cuh, FFMA, k = 3): ``warp`` = (A, B, S):
# S warps per (kd, kh), each on its share of the block's C_in, lanes on 8 x 4 blocks of (C_in, C_out) = A x B
# channels, each lane holding all three kw taps; a CTA walks 1 x TH x TW tiles of x with the grad_y halo of
# all three kd planes. S = 2 (18 warps: five or four per scheduler instead of three or two) won 2-10% for
# the 32 x 32 and 32 x 16 blocks on every k3 sweep layer and lost 5-14% for 48 x 24 on the strided ones
# (docs/performance.md v0.17). The 32 x 8 block holds 24 sums per lane: ptxas gave it 138 registers, one CTA of
# nine warps per SM (two or three per scheduler, its shared loads' latency exposed). Capped for three CTAs per SM
# (``ctas_per_sm``, 72 registers) SR head's grad_weight ran 1.24 -> 0.99 ms channels_last_3d and 1.41 -> 1.06
# NCDHW (H200, v0.78; two CTAs: 1.01 / 1.09-1.16). Two CTAs of the 32 x 16 block (A = 4, 48 sums) lost to the
# 18-warp rows on video-gen (0.99 against 0.96 ms).
DIRECT_WGRAD_SIMT_KERNELS = tuple(
    _direct_wgrad_simt(block, bm, bn, split, why, *ctas)
    for block, bm, bn, split, why, *ctas in (
        ((4, 16), 48, 24, 1, "exact fp32, k3, C_in 48 / C_out 24 and multiples (18 warps lost when strided)"),
        ((4, 16), 32, 32, 2, "exact fp32, k3, wide channels in 32 x 32 blocks, 18 warps"),
        ((4, 16), 32, 16, 2, "exact fp32, k3, narrow channels, 18 warps"),
        ((4, 16), 32, 8, 1, "exact fp32, k3, C_out <= 8, three CTAs per SM (at most 72 registers)", 3),
    ))


def _ffma_wgrad(bm, bk, stages, why, streamk=False):
    bn = 256 if bm == 32 else 128  # BM * BN / 64 threads: 128 at 32 rows
    return KernelConfig("wgrad", "fp32", (bm, bn, bk), (32, 64, bk), stages, why, "ffma", streamk=streamk)


# Exact-fp32 grad_weight as an implicit GEMM per tap of our own (csrc/ffma_wgrad.cuh): the stock SIMT
# tiles' structure (8 x 8 outputs per thread) with 16-byte cp.async of whole channel rows instead of one
# 4-byte copy per element. Runs through the stock wgrad op (partials per slice). Positions per stage (H100):
# 16 won over 8 on all nine layers measured (U-Net 256->128 0.480 vs 0.503 ms, cuDNN 0.530); on the 128-row
# tile 32 in 3 stages won over 16 in 4 by 1.5-3% on all five layers with C_in >= 128 (the main loop is 80%
# FFMA at 16: fewer copy and barrier instructions per FFMA), and tied or lost on the 64-row tile (V-Net
# refine 2.30-2.37 vs 1.93 ms).
FFMA_WGRAD_KERNELS = tuple(
    _ffma_wgrad(bm, bk, stages, why)
    for bm, bk, stages, why in (
        (128, 32, 3, "exact fp32, C_in >= 128: 16-byte copies of whole channel rows"),
        (64, 16, 4, "exact fp32, C_in <= 64: half the rows, so a 64-wide C_in fills the tile"),
        (32, 16, 4, "exact fp32, C_in <= 32: 32 rows x 256 columns, positions decoded once per stage"),
    )) + tuple(
    # Stream-K twins (csrc/ffma_wgrad.cuh, SK): the same tiles, CTAs = the slots of the SMs, each an equal share
    # of tiles x positions, one slot of partial sums.
    _ffma_wgrad(bm, bk, stages, why, streamk=True)
    for bm, bk, stages, why in (
        (128, 32, 3, "exact fp32, C_in >= 128, stream-K: every SM busy, one slot of partial sums"),
        (64, 16, 4, "exact fp32, C_in <= 64, stream-K: every SM busy, one slot of partial sums"),
        (32, 16, 4, "exact fp32, C_in <= 32, stream-K: every SM busy, one slot of partial sums"),
    ))


# Exact-fp32 grad_input (a stride-s Fprop over grad_y) as an implicit GEMM of our own (csrc/ffma_fprop.cuh) on the
# stock kernels' ConvLaunch contract: both operands K-major (channels contiguous), so 16-byte cp.async straight
# into stages the FFMAs read K-major, where CUTLASS's SIMT Fprop copies A 4 bytes at a time and transposes it.
# Standalone on the H200 (v0.76, call545, bench/tools/ffmafprop.cu, channels_last_3d, us, this row / the stock
# SIMT tile the selector took): U-Net 64->32 s2 1406 / 1668 (41.2 TFLOP/s, 82% of the FP32 matmul rate), SR x2
# 1198 / 1410, U-Net 256->128 360 / 418 (128 x 128, unsplit), outpad-like 32^3 188 / 273, 3D-GAN 128->64 706 /
# 704. 128 x 64 x 32 in three stages was the fastest of seven tiles on every layer (128-wide N idles half at 64
# channels; 16 positions per stage lost 5-10%; capping registers at 128 for two CTAs per SM lost 10-40%).
FFMA_FPROP_KERNELS = (
    KernelConfig("fprop", "fp32", (128, 64, 32), (64, 32, 32), 3,
                 "exact fp32 grad_input: 16-byte copies of whole channel rows, both operands K-major", "ffma"),
)


def _patch(bn, why, precision="fp32"):
    return KernelConfig("direct", precision, (128, bn, 8), (64, 32, 8), 2, why, "patch")


# Exact fp32 at k == stride, padding 0 (csrc/patch_simt.cuh): one FFMA GEMM per pass, 8 x 8 outputs per thread,
# two register-prefetched stages of 8. Standalone on the H200 (bench/tools/patchsimt.cu, v0.74), U-Net k2 up
# (2 x 64->32, 32^3): forward 95 us on 128 x 128 (NCDHW; the tap-reuse FFMA row's pass 161-178, cuDNN 223),
# grad_input 102 us NCDHW / 82 channels_last_3d on 128 x 64 (the stock tile's pass 143-200 with grad_y's
# conversion, cuDNN 63).
PATCH_KERNELS = tuple(
    _patch(bn, why)
    for bn, why in (
        (128, "exact fp32, k == stride, padding 0: forwards (columns = s^3 C_out) and grad_input with C_in >= 128"),
        (64, "exact fp32, k == stride, padding 0: grad_input with C_in <= 64"),
    )) + (
    # grad_weight: M = C_in (64 rows), N = (a, C_out), K = x's positions in slices of 16 per stage, partial
    # sums per slice summed in a fixed order; both operands read in place in either layout.
    KernelConfig("wgrad", "fp32", (64, 128, 16), (64, 32, 16), 2,
                 "exact fp32, k == stride, padding 0: grad_weight reading an NCDHW grad_y in place", "patch"),
) + tuple(
    # The same loader and epilogue on the tensor cores (PatchKernel's Math: mma.sync m16n8k8, a warp's 64 x 32 as
    # 4 x 4 MMAs, 3xtf32 as three on hi/lo parts). Standalone on the H200 (v0.75, call540), U-Net k2 up NCDHW:
    # tf32 forward 78 us (FFMA 96), grad_input 86 (FFMA 103); 3xtf32 86 and 95. The selector takes them for the
    # forward of NCDHW layers only (selector.PATCH_TENSOR_CORE_PASSES: the implicit GEMM's grad_input is faster).
    _patch(bn, f"{precision}, k == stride, padding 0: NCDHW forwards, {what}", precision)
    for precision in ("tf32", "3xtf32")
    for bn, what in ((128, "columns = s^3 C_out >= 128"), (64, "s^3 C_out < 128"))
)


# tf32 grad_input of a layer whose reduction is 4 channels (output heads padded to 4 by channel_pad.py): memory-bound,
# so its kernel loads A (two taps x 4 channels per k8 step) straight from global memory and keeps the filter resident
# (csrc/thin_fprop.cuh). Before it (H200, v0.78 `--configs`) 32 -> 4 s2 at 64^3 ran 0.293 ms on the best compiled row
# (0.322 on the stock tile the selector took); cuDNN's grad_input of the unpadded 32 -> 1 head takes 0.08-0.11. BN 32
# for C_in <= 32, 64 past it.
THIN_KERNELS = tuple(
    KernelConfig("fprop", "tf32", (128, bn, 8), (16, bn, 8), 1, why, "thin", ksize=3)
    for bn, why in (
        (32, "tf32 grad_input reducing over 4 channels (padded heads), k3, C_in <= 32"),
        (64, "tf32 grad_input reducing over 4 channels (padded heads), k3, C_in > 32"),
    ))


KERNELS = (KERNELS + DIRECT_KERNELS + DIRECT_SIMT_KERNELS + DIRECT_WGRAD_KERNELS + DIRECT_WGRAD_SIMT_KERNELS
           + WGMMA_KERNELS + WGMMA_WGRAD_KERNELS + IGEMM_KERNELS + IGEMM_WGRAD_KERNELS + FFMA_WGRAD_KERNELS
           + FFMA_FPROP_KERNELS + PATCH_KERNELS + THIN_KERNELS)
BY_NAME = {k.name: k for k in KERNELS}


def kernels_for(op: str, precision: str, family: str = "cutlass2x"):
    """Table rows of one family that serve pass ``op`` in ``precision``, in table order."""
    return [k for k in KERNELS if k.family == family and k.serves(op) and k.precision == precision]


def supports_arch(k: KernelConfig, capability: Tuple[int, int]) -> bool:
    """Whether kernel k runs on a GPU of compute capability (major, minor)."""
    return capability == (9, 0) if k.arch == "sm90a" else capability >= (8, 0)
