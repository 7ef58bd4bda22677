// Hopper weight gradient on tap reuse (same contract as direct_wgrad.cuh, DirectWgradLaunch in
// direct_launch.h): partials[slice][tap][ci][co] = sum over the slice's x positions of
//   x[n, i, ci] * grad_y[n, stride*i - pad + tap, co].
//
// Why not SS-wgmma on both operands: the reduction runs over positions, which are the outer axis of
// both NDHWC tensors, and tf32 wgmma reads shared-memory operands K-major only; every tap would
// also shift K by a non-multiple of 8. So:
//   * B = x^T. Per x plane tile (TY x TW positions, BN channels) TMA brings [pos][ci]; the CTA
//     writes it transposed, in the 32-byte swizzled K-major layout wgmma's SW32 descriptor reads: one
//     [ci][8 positions] tile per k8 step.
//   * A = grad_y from registers (RS-wgmma), gathered: GEMM M is (kd, kh, kw, co), every tap of a co
//     block, cut into m64 tiles that the warpgroups share out (up to K tiles each). Each thread loads
//     its four A elements from the grad_y halo in shared memory at (position + tap). The rows of one
//     kd are padded to a multiple of 16 only, not to a tile per kd: with C_out 32 (16-channel blocks) a
//     tile per kd ran 9 m64 MMAs per granule for 7 tiles' worth of rows, with C_out 8 six for four.
//   * The CTA walks one column of x tiles along depth (the warp-specialized form: a range of (column,
//     plane) pairs, across columns). grad_y halo planes (gh x gw positions) live in a ring: plane tz + kd
//     is shared by the k x planes that need it and loaded once, by TMA.
// Accumulators persist over the whole column segment or range (up to K tiles x BN/2 floats per thread);
// slices of the reduction are summed by the caller in a fixed order, so the result is bitwise reproducible.
// Rounding to tf32: in tf32 both tensor maps are TFLOAT32, so TMA lands x and grad_y rounded (f32_map_type)
// and nothing here converts them (v0.55; before, the halo planes were rounded in place as they arrived and
// x^T as it was transposed). 3xtf32 lands them unrounded and splits each element into hi + lo as it uses it.
//
// Built from CuTe/CUTLASS parts: SM90_TMA_LOAD_5D, the SM90 GMMA TF32 RS atoms, GmmaDescriptor and
// ClusterTransactionBarrier. sm_90a only.
#pragma once
#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <type_traits>
#include <utility>

#include "cute/arch/copy_sm90_desc.hpp"
#include "cute/arch/copy_sm90_tma.hpp"
#include "cute/arch/mma_sm90_desc.hpp"
#include "cute/arch/mma_sm90_gmma.hpp"
#include "cute/arch/mma_sm90_gmma_ext.hpp"
#include "cutlass/arch/barrier.h"
#include "cutlass/arch/reg_reconfig.h"
#include "direct_atoms.cuh"
#include "direct_launch.h"
#include "sm90_atoms.cuh"

namespace convt3d {
namespace direct90 {

// Per-launch sizes the host derives (the Python mirror is direct.wgmma_wgrad_geometry).
struct WgradGeometry {
  int tiles_h, tiles_w;  // x tiles per plane
  int segs, planes;      // depth segments per column of tiles, x planes per segment
  int cb;                // grad_y channels per CTA: GEMM M = k * kb rows
  int kb;                // rows of one kd: k * k * cb padded to 16 (a warp's two A rows share a plane)
  int tiles;             // m64 tiles of GEMM M, at most K per warpgroup
  int pitch;             // floats per grad_y position in shared memory: >= cb, A loads bank-conflict free
  int gh, gw;            // grad_y halo of one x plane tile
  int plane_bytes;       // one halo plane, 128-byte aligned
  int ring;              // halo planes resident: k + (S - 1) * stride
  int co_blocks, ci_blocks;  // CTAs per slice: C_out blocks of cb, C_in blocks of BN
};

template <int K, int TY, int TW, int BN, int WG, int S, bool SPLIT = false, bool PW = false>
struct WgradConfig {
  static constexpr int THREADS = 128 * WG;
  // PW: the last warpgroup stages (rounds the halo planes, transposes x) while the others run the MMAs
  // on the previous step, so the CW MMA warpgroups hold up to MT tiles each: every tile geometry() allows.
  static constexpr int CW = PW ? WG - 1 : WG;
  // geometry(): at most CB_MAX grad_y channels per CTA, so at most TILES_MAX m64 tiles (k3: 12, k5: 17).
  static constexpr int CB_MAX = WG * 64 / (K * K) / 4 * 4;
  static constexpr int TILES_MAX = (K * ((K * K * CB_MAX + 15) / 16 * 16) + 63) / 64;
  static constexpr int MT = PW ? (TILES_MAX + CW - 1) / CW : K;
  // setmaxnreg: the producer's share; the MMA warpgroups get the rest (152 at 512 threads).
  static constexpr int PRODUCER_REGS = 56;
  static constexpr int POS = TY * TW;       // x positions per plane tile: GEMM K per step
  static constexpr int GRANULES = POS / 8;  // k8 steps per plane
  static constexpr int BOX_BYTES = POS * BN * 4;
  static constexpr int X_BYTES = (BOX_BYTES + 1023) / 1024 * 1024;
  // Transposed x buffers: step t writes buffer t % 3 before its CTA barrier; the last wgmmas that
  // read it (step t - 3) were waited for before the barrier of step t - 1. 3xtf32 (SPLIT) keeps hi and
  // lo parts (X_BYTES apart) in two buffers: it waits for all of a step's wgmmas at its end (to promote
  // the accumulators), so by the barrier of step t those of step t - 2 are done.
  static constexpr int P = SPLIT ? 2 : 1;
  // A register sets (granules in flight). PW with four tiles of 24 accumulators keeps one: two sets need
  // 168 registers (ptxas, else C7512), more than the MMA warpgroups can get beside any producer.
  static constexpr int ABUF = (K >= 5 && !SPLIT) || (PW && MT * BN / 2 > 64) ? 1 : 2;
  // S = 3 (PW only): TMA runs two steps ahead, and two x^T buffers make room for its x box and ring plane
  // (the producer stages step u + 1 only once step u - 1's MMAs have retired); four done barriers, so that
  // a wait for step x's never meets step x + 2's phase.
  static constexpr int XT = SPLIT || S >= 3 ? 2 : 3;
  static constexpr int ND = S >= 3 ? 4 : 2;
  static_assert(TW % 8 == 0 && (TY * TW / 8) % 2 == 0 && BN % 8 == 0 && BN <= 256 && S >= 2 && S <= 3 && K >= 1,
                "tile");
};

// XN: x is NCDHW (p.x_ncdhw), a separate instantiation so that the NDHWC kernel's registers are untouched.
// PW: warp-specialized (WgradConfig::CW): the last warpgroup waits for the TMA loads and stages each step
// (x^T; tf32 only, so nothing to round) while the MMA warpgroups run the previous one; mbarriers replace the
// CTA barrier.
// XD (XN, PW, two stages): positions are an NCDHW x's inner axis, so x^T needs no staging at all: TMA lands
// the tile as [y][ci][TW positions], rows of 32 or 64 bytes swizzled over their own span (map axes w, C, h, d,
// n), in the x^T buffer itself, and the MMA warpgroups wait for TMA alone. (One box per 8-position column,
// 32-byte rows, measured 0.93x on SR head's grad_weight: twice the TMA requests of the 64-byte rows.) With two stages a step's x^T buffer (of
// three) was last read two steps before the one whose retirement its load already waits for.
template <int K, int TY, int TW, int BN, int WG, int S, bool SPLIT, bool XN, bool PW = false, bool XD = false>
__global__ void __launch_bounds__(128 * WG, 1)
    wgrad_kernel(const __grid_constant__ DirectWgradLaunch p, const __grid_constant__ CUtensorMap tmap_x,
                 const __grid_constant__ CUtensorMap tmap_gy, const WgradGeometry geo) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = WgradConfig<K, TY, TW, BN, WG, S, SPLIT, PW>;
  using Op = typename GmmaRS<BN>::Op;
  using Barrier = cutlass::arch::ClusterBarrier;
  static_assert(!PW || !SPLIT, "PW: tf32");
  static_assert(PW || S == 2, "three stages: the warp-specialized form only");
  static_assert(!XD || (XN && PW && S == 2 && C::XT == 3 && (TW == 8 || TW == 16)),
                "x^T by TMA: NCDHW x, warp-specialized, two stages, rows of one swizzle span");
  // tf32: both maps are TFLOAT32 (run()), so x and grad_y land rounded; 3xtf32 splits the raw values.
  constexpr bool MAP_ROUNDS = input_map_rounds(SPLIT, false);
  constexpr int NA = BN / 2;  // accumulator floats per thread per kd
  constexpr int MT = C::MT, CW = C::CW;
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = smem_1k(smem_raw);
  uint8_t* xt = smem;                        // XT x [granule][ci][8], SW32 K-major
  uint8_t* xraw = smem + C::XT * C::P * C::X_BYTES;  // S x TMA box [y][w][ci]
  uint8_t* ring = xraw + S * C::X_BYTES;      // geo.ring x [gh][gw][pitch]
  uint64_t* full = reinterpret_cast<uint64_t*>(ring + geo.ring * geo.plane_bytes);
  // PW only (smem_bytes counts them): ready[XT] (x^T and halo of a step staged), done[ND] (a step's MMAs retired).
  uint64_t* ready = full + S;
  uint64_t* done = ready + C::XT;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = tid >> 7;
  const int g = lane >> 2, tq = lane & 3;
  // The CTAs of one slice are consecutive (C_in block fastest, then C_out block), so that those reading
  // the same grad_y halo (or x tile) run together and all but one find it in L2: with the slice outermost
  // in the grid, the strided 4x16 rows read grad_y from DRAM once per C_in block (ncu, U-Net 64->32:
  // 2.7 TB/s, 81% of DRAM peak, 32% L2 hits).
  const int cib = blockIdx.x % geo.ci_blocks, cob = (blockIdx.x / geo.ci_blocks) % geo.co_blocks;
  const int slice = blockIdx.x / (geo.ci_blocks * geo.co_blocks);
  // Where the slice's x planes are. PW: an even share of all (column, plane) pairs in column-major order,
  // so one CTA per SM walks its share as one run of steps, across columns (a step that starts a column
  // reloads every halo plane), and writes one partial sum (direct.wgmma_wgrad_slices). Else one depth
  // segment of a column.
  int q0 = 0;  // PW: the first pair, column * Di + plane (geometry(): below 2^31)
  int steps;
  const int seg = slice % geo.segs, column = slice / geo.segs;
  const int w0 = (column % geo.tiles_w) * TW, y0 = ((column / geo.tiles_w) % geo.tiles_h) * TY;
  const int n = column / (geo.tiles_w * geo.tiles_h);
  const int z0 = seg * geo.planes;
  if constexpr (PW) {
    // 32-bit arithmetic: a 64-bit division is a subroutine call.
    const int total = p.N * geo.tiles_h * geo.tiles_w * p.Di, share = total / p.slices, extra = total % p.slices;
    q0 = slice * share + (slice < extra ? slice : extra);
    steps = share + (slice < extra ? 1 : 0);
  } else {
    steps = p.Di - z0 < geo.planes ? (p.Di - z0 > 0 ? p.Di - z0 : 0) : geo.planes;
  }
  // A step's x plane: its column (n, y0, w0) and plane z. PW walks a cursor along its range: dividing per
  // step instead (the plane's column and tile) put some 300 instructions of integer division before every
  // TMA load, 2-22% slower at the same slices (wgrad_ab, v0.34).
  struct Plane {
    int column, z, n, y0, w0;
  };
  auto locate = [&](int column, int z) {
    return Plane{column, z, column / (geo.tiles_w * geo.tiles_h), ((column / geo.tiles_w) % geo.tiles_h) * TY,
                 (column % geo.tiles_w) * TW};
  };
  auto advance = [&](Plane& at) {
    if (++at.z == p.Di) at = locate(at.column + 1, 0);
  };
  const int co0 = cob * geo.cb, ci0 = cib * BN;
  const int s = p.stride;
  const int fresh = s < K ? s : K;  // halo planes a step adds to the ring (the first adds K)
  const int taps_rows = K * K * geo.cb;

  // This warpgroup's m64 tiles: a contiguous share of geo.tiles, warpgroup-uniform (tiles that a
  // warpgroup does not have only cost it the transposes it shares).
  const int nt = geo.tiles / CW + (wg < geo.tiles % CW ? 1 : 0);
  const int tile0 = wg * (geo.tiles / CW) + (wg < geo.tiles % CW ? wg : geo.tiles % CW);
  const bool mma_on = nt > 0;

  // This thread's two A rows per tile (g and g + 8 of its warp's 16): kd plane, tap (kh, kw), channel co.
  // Rows past the taps (padding) read the plane's first element and are not stored.
  // PW packs the plane into roff's top byte (an offset within a plane stays below 2^18): the rows of up to
  // MT tiles live through the loop, and a separate plane index each cost registers that ptxas then took
  // from the wgmmas (C7512).
  int pl[PW ? 1 : MT];
  uint32_t roff[MT][2];  // bytes
#pragma unroll
  for (int j = 0; j < MT; ++j) {
    const int m0 = (tile0 + j) * 64 + (warp & 3) * 16;
    const int kd = m0 / geo.kb;
    if constexpr (!PW) pl[j] = kd < K ? kd : 0;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int rem = m0 + g + 8 * r - kd * geo.kb;
      const int kh = rem / (K * geo.cb), kw = (rem / geo.cb) % K, co = rem % geo.cb;
      roff[j][r] = kd < K && rem < taps_rows ? 4 * ((kh * geo.gw + kw) * geo.pitch + co) : 0;
      if constexpr (PW) roff[j][r] |= (uint32_t)(kd < K ? kd : 0) << 24;
    }
  }
  const uint32_t ring_addr = cute::cast_smem_ptr_to_uint(ring);

  if (tid == 0) {
    for (int i = 0; i < S; ++i) cutlass::arch::ClusterTransactionBarrier::init(&full[i], 1);
    if constexpr (PW) {
      for (int i = 0; i < C::XT; ++i) Barrier::init(&ready[i], 128);
      for (int i = 0; i < C::ND; ++i) Barrier::init(&done[i], 4 * CW);
    }
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();

  const int plane_floats = geo.gh * geo.gw * geo.pitch;
  const uint32_t plane_tx = plane_floats * 4;
  // Step t: its x plane and the halo planes it is the first to need (all K where it starts a run). Ring
  // slots follow t, the CTA's step count, whatever the column.
  // Ring slots without a division per use: b = (stride * t) % ring, kept by each loop as it steps. One
  // subtraction wraps, since ring = K + (S - 1) * stride exceeds every kd and stride added to b. v0.35: the
  // divisions it replaces (four MUFU-based ones per step in the producer's loop, one per tile in the
  // consumers') cost 0.4-14% of the kernel by row (3.8% on the headline), in every precision.
  auto wrap = [&](int x) { return x >= geo.ring ? x - geo.ring : x; };
  auto issue = [&](int t, int b, const Plane& at, bool starts) {
    const int st = t % S;
    const int first = starts ? 0 : K - fresh;
    cutlass::arch::ClusterTransactionBarrier::arrive_and_expect_tx(&full[st], C::BOX_BYTES + (K - first) * plane_tx);
    constexpr uint64_t hint = static_cast<uint64_t>(cute::TMA::CacheHintSm90::EVICT_NORMAL);
    if constexpr (XD)
      cute::SM90_TMA_LOAD_5D::copy(&tmap_x, &full[st], hint, xt + (t % C::XT) * C::X_BYTES, at.w0, ci0, at.y0, at.z,
                                   at.n);
    else if constexpr (XN)
      cute::SM90_TMA_LOAD_5D::copy(&tmap_x, &full[st], hint, xraw + st * C::X_BYTES, at.w0, at.y0, at.z, ci0, at.n);
    else
      cute::SM90_TMA_LOAD_5D::copy(&tmap_x, &full[st], hint, xraw + st * C::X_BYTES, ci0, at.w0, at.y0, at.z, at.n);
    for (int kd = first; kd < K; ++kd)
      cute::SM90_TMA_LOAD_5D::copy(&tmap_gy, &full[st], hint, ring + wrap(b + kd) * geo.plane_bytes,
                                   co0, s * at.w0 - p.pad, s * at.y0 - p.pad, s * at.z - p.pad + kd, at.n);
  };

  // Step t's staging by threads [0, nthr) of a group (stid: index in it), once its TMA loads have landed:
  // x^T (3xtf32: its hi and lo parts). The halo planes need none: tf32 lands them rounded, and 3xtf32 splits
  // them at the A loads (a lo plane would not fit beside the ring).
  auto stage = [&](int t, int stid, int nthr) {
    const int st = t % S;
    // x^T: one 32-byte row [ci][8 positions] per item, halves swapped by the SW32 pattern (address bit
    // 4 ^= bit 7; buffers are 1 KiB aligned).
    const float* raw = reinterpret_cast<const float*>(xraw + st * C::X_BYTES);
    uint8_t* xb = xt + (t % C::XT) * C::P * C::X_BYTES;
    if constexpr (XN) {
      // The box is [ci][positions]: every 32-byte row of x^T is contiguous already and moves as two
      // float4 halves. Lanes walk (ci, granule) pairs on diagonals, ci = 4 cb + m and granule = 4 gb +
      // (m + r) % 4, so that the eight lanes of each 128-bit phase hit distinct banks on both sides
      // (source row index ci * GRANULES + gr, destination gr * BN + ci; GRANULES and BN are multiples of 4).
      auto put = [&](int row, int half, const float (&x)[4]) {
        uint32_t v[4], lo[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          v[k] = MAP_ROUNDS ? __float_as_uint(x[k]) : direct::to_tf32(x[k]);
          if (SPLIT) lo[k] = direct::to_tf32(x[k] - __uint_as_float(v[k]));
        }
        const int sw = (row >> 2) & 1;
        reinterpret_cast<uint4*>(xb + row * 32)[sw ^ half] = make_uint4(v[0], v[1], v[2], v[3]);
        if (SPLIT)
          reinterpret_cast<uint4*>(xb + C::X_BYTES + row * 32)[sw ^ half] = make_uint4(lo[0], lo[1], lo[2], lo[3]);
      };
      for (int u = stid; u < 2 * C::GRANULES * BN; u += nthr) {
        const int m = (u >> 1) & 3, half = u & 1, r = (u >> 3) & 3, blk = u >> 5;
        const int ci = 4 * (blk % (BN / 4)) + m, gr = 4 * (blk / (BN / 4)) + ((m + r) & 3);
        const float4 q = *reinterpret_cast<const float4*>(raw + ci * C::POS + gr * 8 + 4 * half);
        put(gr * BN + ci, half, {q.x, q.y, q.z, q.w});
      }
    } else {
      // The box is [positions][ci]: lanes take consecutive ci, conflict-free column reads and
      // contiguous row writes.
      for (int item = stid; item < C::GRANULES * BN; item += nthr) {
        const int ci = item % BN, gr = item / BN;
        const float* src = raw + gr * 8 * BN + ci;
        uint32_t v[8], lo[8];
#pragma unroll
        for (int k = 0; k < 8; ++k) {
          const float x = src[k * BN];
          v[k] = MAP_ROUNDS ? __float_as_uint(x) : direct::to_tf32(x);
          if (SPLIT) lo[k] = direct::to_tf32(x - __uint_as_float(v[k]));
        }
        const int row = gr * BN + ci, sw = (row >> 2) & 1;
        uint4* dst = reinterpret_cast<uint4*>(xb + row * 32);
        dst[sw] = make_uint4(v[0], v[1], v[2], v[3]);
        dst[sw ^ 1] = make_uint4(v[4], v[5], v[6], v[7]);
        if (SPLIT) {
          uint4* dlo = reinterpret_cast<uint4*>(xb + C::X_BYTES + row * 32);
          dlo[sw] = make_uint4(lo[0], lo[1], lo[2], lo[3]);
          dlo[sw ^ 1] = make_uint4(lo[4], lo[5], lo[6], lo[7]);
        }
      }
    }
    cutlass::arch::fence_view_async_shared();  // generic-proxy writes, read by wgmma
  };

  if constexpr (PW) {
    if (wg == CW) {
      // Producer: stages step u while the MMA warpgroups run u - 1. Step v's TMA loads go to the x box and
      // ring slots that step v - S read last (v - 1 for a step that starts a run and loads all K planes,
      // fresh < K), so thread 0 issues them once those MMAs have retired: with S = 2 step u + 1's after
      // staging u, with S = 3 step u + 2's. Staging u + 1 rewrites the x^T buffer last read by u + 1 - XT:
      // S = 2 (XT = 3) has waited for it before issuing u + 1; S = 3 (XT = 2) waits for u - 1 first. A
      // done(x) wait implies that every producer thread has staged x (the consumers waited for all 128
      // arrivals on ready(x) first).
      cutlass::arch::warpgroup_reg_dealloc<C::PRODUCER_REGS>();
      const int ptid = tid - 128 * CW;
      auto wait_done = [&](int x) { Barrier::wait(&done[x % C::ND], (x / C::ND) & 1); };
      // Every producer thread walks the issue cursor (warp-uniform work, so that the coordinates can stay in
      // uniform registers); thread 0 waits and issues the loads with it (ia, ib: step iss).
      Plane ia = locate(q0 / p.Di, q0 % p.Di);
      int iss = 0, ib = 0;
      // Once step u is staged: every step up to u + AHEAD whose slots are free. AHEAD = S - 1; the A/B tool
      // (bench/tools/wgrad_stages.py) also builds S = 3 with AHEAD = 1 (measured: level with S = 2 at unit
      // stride, where two ahead lost 18-37%, and 4-12% slower than two ahead on the strided rows).
#ifdef CONVT3D_WGRAD_AHEAD
      constexpr int AHEAD = CONVT3D_WGRAD_AHEAD < S - 1 ? CONVT3D_WGRAD_AHEAD : S - 1;
#else
      constexpr int AHEAD = S - 1;
#endif
      auto issue_ahead = [&](int u) {
        while (iss < steps && iss <= u + AHEAD) {
          const bool starts = iss == 0 || ia.z == 0, whole = starts && iss > 0 && fresh < K;
          if (whole && iss - 1 > u) break;  // its slots' last reader is not staged yet: after staging u + 1
          if (ptid == 0) {
            if (whole)
              wait_done(iss - 1);
            else if (iss >= S)
              wait_done(iss - S);
            issue(iss, ib, ia, starts);
          }
          advance(ia);
          ib = wrap(ib + s);
          ++iss;
        }
      };
      issue_ahead(-1);
      if constexpr (XD) {
        // Nothing to stage: thread 0 issues each step once the one that last read its slots has retired.
        if (ptid == 0)
          for (int u = 0; u < steps; ++u) issue_ahead(u);
      } else {
        for (int u = 0; u < steps; ++u) {
          cutlass::arch::ClusterTransactionBarrier::wait(&full[u % S], (u / S) & 1);
          if (C::XT == 2 && u >= 2) wait_done(u - 2);
          stage(u, ptid, 128);
          Barrier::arrive(&ready[u % C::XT]);
          issue_ahead(u);
        }
      }
      return;
    }
    cutlass::arch::warpgroup_reg_alloc<(65536 - 128 * C::PRODUCER_REGS) / (128 * CW) / 8 * 8>();
  } else {
    if (tid == 0)
      for (int t = 0, b = 0; t < S - 1 && t < steps; ++t, b = wrap(b + s))
        issue(t, b, Plane{column, z0 + t, n, y0, w0}, t == 0);
  }

  float acc[MT][NA];
#pragma unroll
  for (int kd = 0; kd < MT; ++kd)
#pragma unroll
    for (int i = 0; i < NA; ++i) acc[kd][i] = 0.f;
  // 3xtf32: the wgmma accumulators restart at every plane and are added here with IEEE fp32 adds. The
  // tensor cores' own accumulation over a whole depth segment (about 2300 wgmma steps on the headline)
  // measured 4.3e-5 error against fp32's 1e-6; per plane it is 48 steps.
  float tot[SPLIT ? K : 1][SPLIT ? NA : 1];
#pragma unroll
  for (int kd = 0; kd < (SPLIT ? K : 1); ++kd)
#pragma unroll
    for (int i = 0; i < (SPLIT ? NA : 1); ++i) tot[kd][i] = 0.f;

  for (int t = 0, tb = 0; t < steps; ++t, tb = wrap(tb + s)) {
    uint8_t* xb = xt + (t % C::XT) * C::P * C::X_BYTES;
    if constexpr (PW) {
      if (t > 0) {
        // Step t - 1's wgmmas (the last batch still in flight) have read x^T and the A registers came
        // from its ring planes: the producer may refill them.
        cute::warpgroup_wait<0>();
        __syncwarp();
        if (lane == 0) Barrier::arrive(&done[(t - 1) % C::ND]);
      }
      if constexpr (XD)
        cutlass::arch::ClusterTransactionBarrier::wait(&full[t % S], (t / S) & 1);
      else
        Barrier::wait(&ready[t % C::XT], (t / C::XT) & 1);
    } else {
      cutlass::arch::ClusterTransactionBarrier::wait(&full[t % S], (t / S) & 1);
      stage(t, tid, C::THREADS);
      __syncthreads();
      // Every thread is past step t - 1: its x box and its oldest halo plane can be refilled.
      if (tid == 0 && t + S - 1 < steps) {
        int b = tb;
        for (int i = 0; i < S - 1; ++i) b = wrap(b + s);
        issue(t + S - 1, b, Plane{column, z0 + t + S - 1, n, y0, w0}, false);
      }
    }

    // Each warpgroup runs the loop for its own tile count, a compile-time NT: a branch on a runtime count
    // between the wgmmas made ptxas serialise all of them (C7520).
    auto mma = [&](auto nt_c) {
      constexpr int NT = decltype(nt_c)::value;
      // A addresses: per tile, one register per A row (its kd plane, roff) with this thread's column tq
      // folded in; a granule adds a warp-uniform offset (its x tile position, rows of TW / 8 granules at
      // `step` bytes per strided halo position; its second k4 half 4 positions on), which LDS takes as
      // [R + UR]. Computed per granule from the indices, the address arithmetic was half of the MMA
      // loop's instructions (v0.24 SASS: 41 IMAD of 126 per granule pair; v0.25: 0 IMAD of 73).
      const uint32_t step = 4 * s * geo.pitch, quad = 4 * step, row = step * geo.gw;
      uint32_t base[NT][2];  // 32-bit shared-window addresses: registers are at the cap
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        if constexpr (PW) {
#pragma unroll
          for (int r = 0; r < 2; ++r)
            base[j][r] = ring_addr + wrap(tb + (roff[j][r] >> 24)) * geo.plane_bytes + tq * step +
                         (roff[j][r] & 0xffffffu);
        } else {
          const uint32_t plane = ring_addr + wrap(tb + pl[j]) * geo.plane_bytes + tq * step;
          base[j][0] = plane + roff[j][0];
          base[j][1] = plane + roff[j][1];
        }
      }
      const uint32_t xb_addr = cute::cast_smem_ptr_to_uint(xb);
      fence_acc(acc);
      // Granules in pairs, each with its own A registers: one batch stays in flight while the
      // next one's operands load. (Fully unrolled, ptxas keeps every granule's addresses live and spills.)
      // 3xtf32: each A element is split into rounded hi (a) and lo (al) parts as it loads, and each tile
      // runs a_lo b_hi + a_hi b_lo + a_hi b_hi.
      // k5 keeps one register set: its 80 accumulators and two sets of 20 A registers exceed the 128
      // registers of 16 warps, and ptxas serialised every wgmma (C7512); with one set only the wait per
      // granule remains, which the other warpgroups' MMAs cover.
      constexpr int AB = C::ABUF;
      uint32_t a[AB][NT][4];
      [[maybe_unused]] uint32_t al[SPLIT ? AB : 1][NT][4];
#pragma unroll 1
      for (int gp = 0; gp < C::GRANULES; gp += AB) {
#pragma unroll
        for (int h = 0; h < AB; ++h) {
          const int gr = gp + h;
          const uint32_t o = row * (gr / (TW / 8)) + 2 * quad * (gr % (TW / 8)), o2 = o + quad;
#pragma unroll
          for (int j = 0; j < NT; ++j) {
            a[h][j][0] = lds(base[j][0] + o);
            a[h][j][1] = lds(base[j][1] + o);
            a[h][j][2] = lds(base[j][0] + o2);
            a[h][j][3] = lds(base[j][1] + o2);
            if constexpr (SPLIT) {
#pragma unroll
              for (int e = 0; e < 4; ++e) {
                const float x = __uint_as_float(a[h][j][e]);
                a[h][j][e] = direct::to_tf32(x);
                al[h][j][e] = direct::to_tf32(x - __uint_as_float(a[h][j][e]));
              }
            }
          }
          cute::warpgroup_arrive();
          // XD: granule gr is tile row gr / (TW / 8), its 32-byte part gr % (TW / 8) of each channel's row
          uint64_t db;
          if constexpr (XD && TW == 16)
            db = sw64_desc(xb_addr + (gr / 2) * BN * 64 + (gr % 2) * 32);
          else
            db = sw32_desc(xb_addr + gr * BN * 32);
#pragma unroll
          for (int j = 0; j < NT; ++j) {
            if constexpr (SPLIT) {
              gmma_rs<Op>(al[h][j], db, acc[j], std::make_index_sequence<NA>{});
              gmma_rs<Op>(a[h][j], sw32_desc(xb_addr + C::X_BYTES + gr * BN * 32), acc[j],
                          std::make_index_sequence<NA>{});
            }
            gmma_rs<Op>(a[h][j], db, acc[j], std::make_index_sequence<NA>{});
          }
          cute::warpgroup_commit_batch();
          // The other register set's batch has been read: the next granule may overwrite it.
          cute::warpgroup_wait<AB - 1>();
        }
      }
      if constexpr (SPLIT) {
        // All of the step's MMAs retire before the promotion (and so before the barrier after which
        // step t + 2 rewrites this x^T buffer).
        cute::warpgroup_wait<0>();
#pragma unroll
        for (int j = 0; j < NT; ++j) {
#pragma unroll
          for (int i = 0; i < NA; ++i) {
            cute::warpgroup_fence_operand(acc[j][i]);
            tot[j][i] += acc[j][i];
            acc[j][i] = 0.f;
          }
        }
      }
      fence_acc(acc);
    };
    dispatch_upto<MT>(nt, mma);
  }
  cute::warpgroup_wait<0>();
  fence_acc(acc);

  // This CTA's share of the slice: its tiles' rows (kd, kh, kw, co) x columns ci. Accumulator i of a
  // thread is row g + 8 * ((i >> 1) & 1) of its warp's 16, column 8 * (i >> 2) + 2 * tq + (i & 1).
  if (!mma_on) return;
  const int k3 = K * K * K;
#pragma unroll
  for (int j = 0; j < MT; ++j) {
    if (j >= nt) continue;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int m = (tile0 + j) * 64 + (warp & 3) * 16 + g + 8 * r;
      const int kd = m / geo.kb, rem = m - kd * geo.kb;
      const int kh = rem / (K * geo.cb), kw = (rem / geo.cb) % K, co = co0 + rem % geo.cb;
      if (kd >= K || rem >= taps_rows || co >= p.Co) continue;
      float* dst = p.partials + ((int64_t)slice * k3 + (kd * K + kh) * K + kw) * p.Ci * p.Co + co;
#pragma unroll
      for (int q = 0; q < BN / 8; ++q) {
        const int ci = ci0 + 8 * q + 2 * tq;  // Ci % 4 == 0: ci < Ci implies ci + 1 < Ci
        if (ci >= p.Ci) continue;
        if constexpr (SPLIT) {
          dst[(int64_t)ci * p.Co] = tot[j][4 * q + 2 * r];
          dst[(int64_t)(ci + 1) * p.Co] = tot[j][4 * q + 2 * r + 1];
        } else {
          dst[(int64_t)ci * p.Co] = acc[j][4 * q + 2 * r];
          dst[(int64_t)(ci + 1) * p.Co] = acc[j][4 * q + 2 * r + 1];
        }
      }
    }
  }
#endif
}

// CONVT3D_WGRAD_STAGE_X=1: the two-stage warp-specialized rows stage an NCDHW x's x^T in their producer
// warpgroup (before v0.63) instead of loading it K-major by TMA (XD). Read at every launch (a getenv is
// 0.1 us, v0.62), so that bench/tools/envab.py can switch it within one process.
inline bool stage_x_env() {
  const char* v = std::getenv("CONVT3D_WGRAD_STAGE_X");
  return v != nullptr && v[0] == '1';
}

template <int K, int TY, int TW, int BN, int WG, int S, bool SPLIT = false>
struct WgmmaWgradKernel {
  using C = WgradConfig<K, TY, TW, BN, WG, S, SPLIT>;

  // The warp-specialized form (a producer warpgroup stages, three warpgroups run the MMAs; PW). wgrad_ab
  // (v0.33, H100, median of 3 runs): headline 1.099x, V-Net refine (k5) 1.102x, video-gen 1.037x, the
  // strided k3 rows level (their staging was the x^T transposes only: they rounded grad_y at the A loads), 3D-GAN 64->32 (k5, stride 2)
  // 0.936x. So k3 always, k5 at unit stride; three stages (v0.46) always, the k5 strided row included
  // (wgrad_stages.py: 3D-GAN 64->32 0.89-0.91x against its two-stage plain form). Python mirror:
  // direct.wgmma_wgrad_pw.
  static constexpr bool kPW = !SPLIT && (K == 3 || K == 5) && WG == 4 && (S == 2 || S == 3);
  static_assert(S == 2 || kPW, "three stages: the warp-specialized form");
  static constexpr bool kAlwaysPW = kPW && (K == 3 || S == 3);  // at every stride: one instantiation
  static bool pw(const DirectWgradLaunch& p) { return kAlwaysPW || (kPW && p.stride == 1); }

  // 0 or a cutlass::Status value; fills geo. slices: PW, any count, each an even share of the (column of x
  // tiles, x plane) pairs; else columns of x tiles x depth segments.
  static int geometry(const DirectWgradLaunch& p, WgradGeometry& geo) {
    if (p.k != K || p.stride < 1 || p.stride > K || p.pad < 0 || p.slices < 1) return 5;
    geo.tiles_h = (p.Hi + TY - 1) / TY;
    geo.tiles_w = (p.Wi + TW - 1) / TW;
    const long long columns = (long long)p.N * geo.tiles_h * geo.tiles_w;
    if (columns < 1 || columns > 0x7fffffffLL) return 4;
    if (pw(p)) {
      if (columns * p.Di > 0x7fffffffLL) return 5;  // the kernel's 32-bit (column, plane) index
      geo.segs = 1;
      geo.planes = p.Di;
    } else {
      if (p.slices % columns != 0) return 4;  // kErrorInvalidProblem
      geo.segs = (int)(p.slices / columns);
      geo.planes = (p.Di + geo.segs - 1) / geo.segs;
    }
    const int cb_max = C::CB_MAX;
    if (cb_max < 4) return 5;
    const int blocks = (p.Co + cb_max - 1) / cb_max;
    geo.cb = ((p.Co + blocks - 1) / blocks + 3) / 4 * 4;
    geo.kb = (K * K * geo.cb + 15) / 16 * 16;
    geo.tiles = (K * geo.kb + 63) / 64;
    geo.co_blocks = (p.Co + geo.cb - 1) / geo.cb;
    geo.ci_blocks = (p.Ci + BN - 1) / BN;
    if (geo.tiles > WG * K || geo.tiles > C::TILES_MAX) return 5;  // accumulators for K tiles per warpgroup
    geo.pitch = geo.cb;
    for (int i = 0; i < 8; ++i, geo.pitch += 4)
      if ((p.stride * geo.pitch) % 32 == 8 || (p.stride * geo.pitch) % 32 == 24) break;
    if (geo.pitch > geo.cb + 28) geo.pitch = geo.cb;  // no bank-spreading pitch (stride 4): plain
    geo.gh = p.stride * (TY - 1) + K;
    geo.gw = p.stride * (TW - 1) + K;
    geo.plane_bytes = (geo.gh * geo.gw * geo.pitch * 4 + 127) / 128 * 128;
    geo.ring = K + (S - 1) * p.stride;
    if (geo.pitch > 256 || geo.gh > 256 || geo.gw > 256) return 5;  // TMA box limits
    return 0;
  }

  static size_t smem_bytes(const WgradGeometry& geo) {
    return 1024 + (size_t)(C::XT * C::P + S) * C::X_BYTES + (size_t)geo.ring * geo.plane_bytes +
           (S + C::XT + C::ND) * sizeof(uint64_t);
  }

  static int can_implement(const DirectWgradLaunch& p) {
    if (p.Ci % 4 != 0 || p.Co % 4 != 0) return 1;  // 16-byte TMA strides
    if (p.gy_ncdhw) return 5;                        // NDHWC grad_y only
    if (p.x_ncdhw && (p.Wi % 4 != 0 || C::GRANULES % 4 != 0 || BN % 4 != 0)) return 1;
    WgradGeometry geo;
    const int code = geometry(p, geo);
    if (code != 0) return code;
    if ((long long)p.slices * geo.co_blocks * geo.ci_blocks > 0x7fffffffLL) return 5;
    if ((long long)p.Hi * p.Wi * p.Ci > 0x7fffffffLL || (long long)p.Ho * p.Wo * p.Co > 0x7fffffffLL) return 5;
    return sm90_fits(smem_bytes(geo));
  }

  static int run(const DirectWgradLaunch& p) {
    int code = can_implement(p);
    if (code != 0) return code;
    WgradGeometry geo;
    geometry(p, geo);
    CUtensorMap tx, tg;
    const cuuint32_t x_box[5] = {BN, TW, TY, 1, 1};
    const cuuint32_t g_box[5] = {(cuuint32_t)geo.pitch, (cuuint32_t)geo.gw, (cuuint32_t)geo.gh, 1, 1};
    const cuuint32_t x_box_ncdhw[5] = {TW, TY, 1, BN, 1};
    const bool use_pw = pw(p);
    // XD (the warp-specialized two-stage k3 rows, tf32): x^T by TMA from an NCDHW x, its rows of TW positions
    // one swizzle span. CONVT3D_WGRAD_STAGE_X=1 stages it as before (A/B). v0.63 (envab, 7 rounds, NCDHW
    // grad_weight staged / XD): headline 1.032x, video-gen 1.021x, SR head 1.050x; V-Net refine (k5, whose
    // instantiations spill) 0.905x there and 1.033x with 32-byte rows in another run: k5 stays staged.
    constexpr bool kXD = kPW && S == 2 && K == 3 && (TW == 8 || TW == 16);
    const bool xd = kXD && p.x_ncdhw && use_pw && !stage_x_env();
    const cuuint32_t x_box_xd[5] = {TW, BN, TY, 1, 1};
    // tf32: both maps land their elements rounded (f32_map_type), so the kernel converts nothing. (Before
    // v0.55 the halo planes were rounded in place as they arrived, or at the A loads on the strided k3 rows.)
    constexpr bool kMapRounds = input_map_rounds(SPLIT, false);  // the kernel's MAP_ROUNDS
    const bool x_ok = xd ? encode_ncdhw_wchd(&tx, p.x, p.N, p.Di, p.Hi, p.Wi, p.Ci, x_box_xd,
                                             TW == 8 ? CU_TENSOR_MAP_SWIZZLE_32B : CU_TENSOR_MAP_SWIZZLE_64B,
                                             CU_TENSOR_MAP_L2_PROMOTION_L2_128B, kMapRounds)
                      : p.x_ncdhw ? encode_ncdhw(&tx, p.x, p.N, p.Di, p.Hi, p.Wi, p.Ci, x_box_ncdhw,
                                               CU_TENSOR_MAP_L2_PROMOTION_L2_128B, kMapRounds)
                                : encode_ndhwc(&tx, p.x, p.N, p.Di, p.Hi, p.Wi, p.Ci, x_box, CU_TENSOR_MAP_SWIZZLE_NONE,
                                               CU_TENSOR_MAP_L2_PROMOTION_L2_128B, 1, 0, kMapRounds);
    if (!x_ok ||
        !encode_ndhwc(&tg, p.gy, p.N, p.Do, p.Ho, p.Wo, p.Co, g_box, CU_TENSOR_MAP_SWIZZLE_NONE,
                      CU_TENSOR_MAP_L2_PROMOTION_L2_128B, 1, 0, kMapRounds))
      return 5;
    const size_t bytes = smem_bytes(geo);
    using Fn = decltype(&wgrad_kernel<K, TY, TW, BN, WG, S, SPLIT, false, kAlwaysPW>);
    auto pick = [&](auto xn) -> Fn {
      constexpr bool XN = decltype(xn)::value;
      if constexpr (kAlwaysPW)
        return &wgrad_kernel<K, TY, TW, BN, WG, S, SPLIT, XN, true>;
      else if constexpr (kPW)
        return use_pw ? &wgrad_kernel<K, TY, TW, BN, WG, S, SPLIT, XN, true>
                  : &wgrad_kernel<K, TY, TW, BN, WG, S, SPLIT, XN, false>;
      else
        return &wgrad_kernel<K, TY, TW, BN, WG, S, SPLIT, XN, false>;
    };
    Fn kernel = p.x_ncdhw ? pick(std::true_type{}) : pick(std::false_type{});
    if constexpr (kXD)
      if (xd) kernel = &wgrad_kernel<K, TY, TW, BN, WG, S, SPLIT, true, true, true>;
    const dim3 grid((unsigned)(p.slices * geo.co_blocks * geo.ci_blocks));
    return direct::launch_with_smem(kernel, grid, C::THREADS, bytes, p.stream, p, tx, tg, geo);
  }

  static DirectWgradEntry entry(const char* name) { return DirectWgradEntry{name, &can_implement, &run}; }
};

}  // namespace direct90
}  // namespace convt3d
