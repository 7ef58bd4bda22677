// Hopper weight gradient as an implicit GEMM per filter tap (contract: DirectWgradLaunch in
// direct_launch.h):
//   partials[slice][tap][ci][co] = sum over the slice's x positions i of x[n, i, ci] * gy[n, s*i - pad + tap, co].
//
// Why beside the tap-reuse grad_weight (direct_wgrad_sm90.cuh): that kernel shares each transposed x tile
// across every tap of a CTA (GEMM M = (kh, kw, C_out block)), so a CTA holds few channels of each
// operand; with 128-256 channels and a stride, it re-stages the stride-times wider grad_y halo once per
// 32-channel block and rounds it between CTA barriers (70 TFLOP/s on the 256->128 U-Net decoder). Here
// each unit is one tap and a 128 x BN channel block, a plain GEMM over positions:
//   * M = 128 input channels (two consumer warpgroups of 64), N = BN output channels, K = positions,
//     32 per k-block (a TD x TH x TW box of x; the same box of grad_y at s*i - pad + tap, every s-th
//     position by TMA's traversal stride). Out-of-range positions and channels are zero-filled.
//   * A = x^T from registers: each thread loads its x[position][ci] elements from the TMA boxes (32-channel,
//     128-byte swizzled sub-boxes).
//   * B = grad_y^T, which tf32 wgmma reads K-major only (positions are the outer axis of NDHWC): producer
//     warps (seven per tap, three with the kw fold) transpose each grad_y box [positions][co] into
//     [co][32 positions], 128-byte swizzled, while the consumers run the previous stages.
//   * Both tensor maps are TFLOAT32 (f32_map_type): TMA lands x and grad_y rounded to tf32, so neither the
//     transposers nor the consumers convert anything (v0.55; before, each element was rounded there).
//   * Warp-specialized, persistent; units (slice, ci block, co block, tap) tap fastest, so concurrent CTAs
//     read the same x and grad_y tiles through L2. Every unit writes its partial block (zeros for an empty
//     slice); the caller sums the slices in a fixed order: bitwise reproducible.
//   * KX > 1 (KX == k): the kw taps fold into N = KX * BN, so a unit is one (kd, kh) and each x box feeds
//     KX taps' MMAs (a third of the x reads through L2 and shared memory at k = 3). grad_y then comes as
//     one box per 32 channels spanning the KX taps' positions along w (s * (TW - 1) + KX of them at unit
//     traversal stride there, every s-th along d and h), and the transposers gather tap kw's positions
//     s * i + kw into rows kw * BN + co of the K-major tile.
//   * SWAP (igemm_wgrad_swap_kernel, k = 3, v0.38): the kw fold with the GEMM's roles swapped, M = (kw, C_out),
//     N = 128 C_in; x is the transposed operand and grad_y comes from registers (see the kernel).
//
// Built from CuTe/CUTLASS parts: SM90_TMA_LOAD_5D, the SM90 GMMA TF32 RS atoms, GmmaDescriptor,
// ClusterTransactionBarrier / ClusterBarrier and setmaxnreg. sm_90a only.
#pragma once
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "cute/arch/copy_sm90_desc.hpp"
#include "cute/arch/copy_sm90_tma.hpp"
#include "cutlass/arch/barrier.h"
#include "cutlass/arch/reg_reconfig.h"
#include "direct_atoms.cuh"
#include "direct_launch.h"
#include "sm90_atoms.cuh"

namespace convt3d {
namespace direct90 {

constexpr int IW_KB = 32;   // positions per k-block
constexpr int IW_MI = 128;  // input channels per unit
constexpr int IW_SUB = 4096;  // one [32 positions][32 channels] 128-byte swizzled sub-box

// Per-launch sizes the host derives (the Python mirrors are direct.igemm_wgrad_slices and
// direct.igemm_wgrad_smem_bytes).
struct IgemmWgradGeometry {
  int tiles_d, tiles_h, tiles_w;  // position tiles per sample
  int tiles;                      // all samples
  int per_slice;                  // position tiles per slice (the last ones may hold fewer, or none)
  int ciblocks, coblocks, taps;   // taps: units per (slice, ci block, co block): k^3, or k^2 with KX > 1
  int units;
  int wb;                         // KX > 1: grad_y box width along w, s * (TW - 1) + KX
  int g_sub, g_tx, stage_bytes;   // bytes: one grad_y sub-box's slot (1 KiB aligned), TMA bytes per stage, stage
};

template <int TD, int TH, int TW, int BN, int S, int KX = 1, bool SWAP = false>
struct IgemmWgradConfig {
  static constexpr int X_BYTES = IW_MI * IW_KB * 4;  // four sub-boxes
  // The K-major transposed operand: grad_y's [KX * BN rows][32 positions], or (SWAP) x's [128 C_in rows][32
  // positions]; SW128 either way.
  static constexpr int GT_BYTES = SWAP ? IW_MI * IW_KB * 4 : KX * BN * IW_KB * 4;
  static constexpr int N = SWAP ? IW_MI : KX * BN;
  // grad_y: BN / 32 sub-boxes of 32 positions (KX = 1; the Python mirror's stage sizes follow), or of
  // TD * TH * wb rows of 128 bytes each rounded to 1 KiB (KX > 1: wb depends on the stride).
  static constexpr __host__ __device__ int g_sub(int wb) {
    return KX == 1 ? IW_SUB : (TD * TH * wb * 128 + 1023) / 1024 * 1024;
  }
  static constexpr __host__ __device__ int stage_bytes(int wb) { return X_BYTES + BN / 32 * g_sub(wb) + GT_BYTES; }
  // SWAP: GEMM M = KX x BN rows of (kw, C_out) on 64-row consumer warpgroups (k3: one per kw tap, 64 C_out;
  // k5: two taps of 32 C_out each, the third warpgroup's second half idle), two producer
  // warpgroups (warp 0 issues TMA, the other seven transpose; one warpgroup's three measured 1-4% slower on
  // every layer, v0.38). The per-tap rows (KX = 1) transpose with seven warps too: with three, ncu put their
  // consumers asleep in the wait for the transposed grad_y half of the time (V-Net up, v0.39).
  static constexpr int PW = SWAP || KX == 1 ? 2 : 1;
  static constexpr int CONSUMERS = SWAP ? (KX * BN + 63) / 64 : 2;
  static constexpr int THREADS = 128 * (CONSUMERS + PW);
  static constexpr int TRANSPOSERS = 32 * (4 * PW - 1);  // producer warps 1..4 PW - 1
  // The transposers batch their loads: more than a TMA thread's 40 registers (ptxas spilled at 40 and 56).
  // SWAP's consumers hold 64 accumulators (N = 128) instead of 96; at 640 threads 96 registers each come with
  // the launch, and producers at 48 spilled.
  // KX = 1 at 512 threads: 176 for up to 64 accumulators (N <= 128) and two A register sets.
  static constexpr int PRODUCER_REGS = SWAP ? 56 : 80, CONSUMER_REGS = SWAP ? 120 : KX == 1 ? 176 : 208;
  // setmaxnreg only moves registers within the CTA's allocation (65536 / THREADS per thread, a multiple of
  // 8): a consumer increase beyond what the producers released blocks forever.
  static_assert(PRODUCER_REGS * 128 * PW + CONSUMER_REGS * 128 * CONSUMERS <=
                    (65536 / THREADS / 8 * 8) * THREADS,
                "register budget");
  static_assert(!SWAP || (KX == 3 && BN == 64) || (KX == 5 && BN == 32),
                "the swapped form: k = 3 with 64 output channels per tap, or k = 5 with 32");
  static_assert(TD * TH * TW == IW_KB, "a k-block is 32 positions");
  static_assert(BN % 32 == 0 && KX * BN <= 256, "N tile in 32-channel sub-boxes, at most 256 wide");
  static_assert(KX == 1 || KX == 2 || KX == 3 || KX == 5, "kw fold");
  static_assert(S >= 2, "stages");
};

// A unit: (slice, C_in block, C_out block, tap), tap fastest; with the kw fold the tap is (kd, kh). Its
// k-blocks are the position tiles [first, first + count) (count 0 for an empty slice). Every role of a CTA
// walks the same units, so the stage and barrier phase of k-block `it` agree between them.
struct IgemmWgradUnit {
  int slice, ci0, co0, tap, first, count;
};

template <int BN>
__device__ __forceinline__ void igemm_wgrad_unit(const IgemmWgradGeometry& geo, int u, IgemmWgradUnit& t) {
  t.tap = u % geo.taps;
  int r = u / geo.taps;
  t.co0 = (r % geo.coblocks) * BN;
  r /= geo.coblocks;
  t.ci0 = (r % geo.ciblocks) * IW_MI;
  t.slice = r / geo.ciblocks;
  t.first = t.slice * geo.per_slice;
  const int end = t.first + geo.per_slice < geo.tiles ? t.first + geo.per_slice : geo.tiles;
  t.count = end > t.first ? end - t.first : 0;
}

// The producer's TMA thread (both kernels): for each k-block of this CTA's units, once stage it % S is
// released, the 32-position box of x (four 32-channel sub-boxes) and the box of grad_y at s * i - pad + tap
// (BN / 32 sub-boxes g_sub apart; with the kw fold the box spans the KX taps along w and starts at kw = 0).
// XN (the swapped rows, x_ncdhw): x's box is already K-major ([d][h][128 C_in][TW positions], see
// igemm_wgrad_swap_kernel), so TMA lands it where the transposers would have written x^T (X_BYTES + BN / 32 *
// g_sub bytes into the stage), and nothing transposes it.
template <int TD, int TH, int TW, int BN, int S, int KX, bool XN = false>
__device__ __forceinline__ void igemm_wgrad_tma(const DirectWgradLaunch& p, const CUtensorMap* tmap_x,
                                                const CUtensorMap* tmap_gy, const IgemmWgradGeometry& geo,
                                                int k, int per_sample, uint8_t* smem, int stage_bytes,
                                                int g_sub, uint64_t* full, uint64_t* empty) {
  using Barrier = cutlass::arch::ClusterBarrier;
  using TxBarrier = cutlass::arch::ClusterTransactionBarrier;
  constexpr uint64_t hint = static_cast<uint64_t>(cute::TMA::CacheHintSm90::EVICT_NORMAL);
  constexpr int X_BYTES = IgemmWgradConfig<TD, TH, TW, BN, S, KX>::X_BYTES;
  const int s = p.stride;
  int it = 0;
  for (int u = blockIdx.x; u < geo.units; u += gridDim.x) {
    IgemmWgradUnit t;
    igemm_wgrad_unit<BN>(geo, u, t);
    const int kd = KX > 1 ? t.tap / k : t.tap / (k * k), kh = KX > 1 ? t.tap % k : (t.tap / k) % k;
    const int kw = KX > 1 ? 0 : t.tap % k;
    for (int i = 0; i < t.count; ++i, ++it) {
      const int tile = t.first + i, n = tile / per_sample, rest = tile % per_sample;
      const int w0 = (rest % geo.tiles_w) * TW, h0 = ((rest / geo.tiles_w) % geo.tiles_h) * TH;
      const int d0 = (rest / (geo.tiles_w * geo.tiles_h)) * TD;
      const int st_i = it % S;
      Barrier::wait(&empty[st_i], ((it / S) & 1) ^ 1);
      uint8_t* st = smem + st_i * stage_bytes;
      TxBarrier::arrive_and_expect_tx(&full[st_i], geo.g_tx);
      if constexpr (XN) {
        cute::SM90_TMA_LOAD_5D::copy(tmap_x, &full[st_i], hint, st + X_BYTES + BN / 32 * g_sub, w0, t.ci0, h0, d0, n);
      } else {
#pragma unroll
        for (int c = 0; c < IW_MI / 32; ++c)
          cute::SM90_TMA_LOAD_5D::copy(tmap_x, &full[st_i], hint, st + c * IW_SUB, t.ci0 + 32 * c, w0, h0, d0, n);
      }
#pragma unroll
      for (int c = 0; c < BN / 32; ++c)
        cute::SM90_TMA_LOAD_5D::copy(tmap_gy, &full[st_i], hint, st + X_BYTES + c * g_sub, t.co0 + 32 * c,
                                     s * w0 - p.pad + kw, s * h0 - p.pad + kh, s * d0 - p.pad + kd, n);
    }
  }
}

// Both kernels' ring of S stages: full (the TMA bytes), ready (the transposers' arrivals) and empty (the
// consumers'), S barriers each, in that order from `full`; set up by thread 0 before any role starts.
template <int S>
__device__ __forceinline__ void igemm_wgrad_ring_init(uint64_t* full, int ready_arrivals, int empty_arrivals) {
  if (threadIdx.x == 0) {
    for (int s = 0; s < S; ++s) {
      cutlass::arch::ClusterTransactionBarrier::init(&full[s], 1);
      cutlass::arch::ClusterBarrier::init(&full[S + s], ready_arrivals);
      cutlass::arch::ClusterBarrier::init(&full[2 * S + s], empty_arrivals);
    }
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();
}

// Both kernels' transposers: every k-block of this CTA's units in order, body(stage) once its TMA bytes have
// landed (full[stage]); the stage and its phase follow from the k-block's count `it` as in every role.
template <int S, int BN, typename Body>
__device__ __forceinline__ void igemm_wgrad_each_loaded(const IgemmWgradGeometry& geo, uint64_t* full, Body&& body) {
  int it = 0;
  for (int u = blockIdx.x; u < geo.units; u += gridDim.x) {
    IgemmWgradUnit t;
    igemm_wgrad_unit<BN>(geo, u, t);
    for (int i = 0; i < t.count; ++i, ++it) {
      const int st_i = it % S;
      cutlass::arch::ClusterTransactionBarrier::wait(&full[st_i], (it / S) & 1);
      body(st_i);
    }
  }
}

template <int TD, int TH, int TW, int BN, int S, int KX>
__global__ void __launch_bounds__(IgemmWgradConfig<TD, TH, TW, BN, S, KX>::THREADS, 1)
    igemm_wgrad_kernel(const __grid_constant__ DirectWgradLaunch p, const __grid_constant__ CUtensorMap tmap_x,
                       const __grid_constant__ CUtensorMap tmap_gy, const IgemmWgradGeometry geo) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = IgemmWgradConfig<TD, TH, TW, BN, S, KX>;
  using Op = typename GmmaRS<C::N>::Op;
  using Barrier = cutlass::arch::ClusterBarrier;
  constexpr int NA = C::N / 2;
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = smem_1k(smem_raw);
  // Compile-time for KX = 1 (the grad_y box is 32 positions whatever the stride).
  const int STAGE_BYTES = KX == 1 ? C::stage_bytes(0) : geo.stage_bytes, G_SUB = KX == 1 ? IW_SUB : geo.g_sub;
  const int G_BYTES = BN / 32 * G_SUB;
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + S * STAGE_BYTES);
  uint64_t* ready = full + S;
  uint64_t* empty = ready + S;

  const int tid = threadIdx.x, wg = tid >> 7;
  igemm_wgrad_ring_init<S>(full, C::TRANSPOSERS, 256);

  const int k = p.k;
  // Every role walks the same units, so the stage and barrier phase of k-block `it` agree between them.
  using Unit = IgemmWgradUnit;
  auto unit_at = [&](int u, Unit& t) { igemm_wgrad_unit<BN>(geo, u, t); };
  const int per_sample = geo.tiles_d * geo.tiles_h * geo.tiles_w;

  if (wg < C::PW) {
    cutlass::arch::warpgroup_reg_dealloc<C::PRODUCER_REGS>();
    if (tid == 0) {
      igemm_wgrad_tma<TD, TH, TW, BN, S, KX>(p, &tmap_x, &tmap_gy, geo, k, per_sample, smem, STAGE_BYTES, G_SUB,
                                             full, empty);
    } else if (tid >= 32) {
      // grad_y^T. Warp w takes the (sub-box c, 16-byte chunk j) pairs P = w, w + TWARPS, ..., lane q the
      // position: it reads 4 channels of position q (the 8 lanes of each 128-bit phase hit 8 distinct
      // chunks) and writes them into 4 rows of the K-major tile at column col(q) (below; 32 lanes,
      // 32 distinct banks). Loads go in batches of 4 pairs: the transposing warps are the kernel's critical
      // path (ncu: one dependent chain each made a k-block 5x its MMA time).
      const int w = (tid >> 5) - 1, lane = tid & 31;
      constexpr int TWARPS = C::TRANSPOSERS / 32;  // odd, so that pair w + b0 + TWARPS b has parity (w + b) & 1
      static_assert(TWARPS % 2 == 1, "chunk parity by batch index");
      constexpr int PAIRS = KX * BN / 32 * 8;  // (kw, sub-box, chunk), kw slowest
      // The lane's position q (its column of the K-major tile). KX > 1 at stride 2: the box rows a 128-bit
      // load's 8-lane phase reads are th * wb + 2 tw + kw with wb odd, so 8 consecutive tw hit 4 swizzle
      // phases (2-way bank conflicts); a phase takes 4 consecutive tw of 2 consecutive th instead, which
      // hit 8. The column stores stay conflict-free whatever the lane order (32 distinct words of a row).
      const int q = KX > 1 && p.stride == 2 && TH % 2 == 0 && TW % 4 == 0 && TD == 1
                        ? (2 * ((lane >> 3) / (TW / 4)) + ((lane & 7) >> 2)) * TW + 4 * ((lane >> 3) % (TW / 4)) + (lane & 3)
                        : lane;
      // KX > 1: position q = (td, th, tw) of the k-block reads box row (td * TH + th) * wb + s * tw + kw.
      const int qrow = KX > 1 ? (q / (TW * TH) * TH + (q / TW) % TH) * geo.wb + p.stride * (q % TW) : q;
      constexpr int BATCH = 4;  // even: pair P = w + b0 + TWARPS b has chunk parity (w + b) & 1 whatever b0
      // Position q goes to column col of its group of 8 (the consumers' order, see off below): col = q / 2 +
      // 4 (q % 2) within the group. Channel m of chunk j lands in row 4j + m at column col: byte m * 128 +
      // ((col / 4 ^ (4 (j & 1) + m)) << 4) + (col % 4) * 4 past the chunk's first row. Precomputed for both
      // chunk parities (par[0]: w's own).
      const int col = (q & ~7) | ((q & 7) >> 1) | ((q & 1) << 2);
      uint32_t par[2][4];
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int m = 0; m < 4; ++m)
          par[h][m] = m * 128 + ((((col >> 2) ^ (((w + h) & 1) << 2)) ^ m) << 4) + (col & 3) * 4;
      igemm_wgrad_each_loaded<S, BN>(geo, full, [&](int st_i) {
        const uint8_t* g = smem + st_i * STAGE_BYTES + C::X_BYTES;
        uint8_t* gt = smem + st_i * STAGE_BYTES + C::X_BYTES + G_BYTES;
#pragma unroll 1
        for (int b0 = 0; b0 < PAIRS; b0 += TWARPS * BATCH) {
          float4 v[BATCH];
#pragma unroll
          for (int b = 0; b < BATCH; ++b) {
            const int P = w + b0 + TWARPS * b;
            if (P < PAIRS) {
              const int kw = P / (BN / 32 * 8), sub = (P >> 3) % (BN / 32), r = qrow + kw;
              v[b] = *reinterpret_cast<const float4*>(g + sub * G_SUB + r * 128 + (((P & 7) ^ (r & 7)) << 4));
            }
          }
#pragma unroll
          for (int b = 0; b < BATCH; ++b) {
            const int P = w + b0 + TWARPS * b;
            if (P < PAIRS) {
              // Rows kw * BN + 32 sub + 4 chunk + m: BN % 32 == 0 keeps the row's swizzle phase.
              uint8_t* row = gt + (32 * (P >> 3) + 4 * (P & 7)) * 128;
              const float e[4] = {v[b].x, v[b].y, v[b].z, v[b].w};
#pragma unroll
              for (int m = 0; m < 4; ++m) *reinterpret_cast<uint32_t*>(row + par[b & 1][m]) = __float_as_uint(e[m]);
            }
          }
        }
        cutlass::arch::fence_view_async_shared();  // generic-proxy writes, read by wgmma
        Barrier::arrive(&ready[st_i]);
      });
    }
    return;
  }

  cutlass::arch::warpgroup_reg_alloc<C::CONSUMER_REGS>();
  const int cw = wg - C::PW, wl = (tid >> 5) & 3, lane = tid & 31;
  const int g = lane >> 2, tq = lane & 3;
  const uint32_t smem_addr = cute::cast_smem_ptr_to_uint(smem);
  // This thread's A elements: rows ci = 64 cw + 16 wl + g (+ 8), in sub-box ci / 32; columns 8 kk + tq (+ 4).
  // Position q of channel c' in a sub-box sits at q * 128 + ((c' / 4) ^ (q % 8)) * 16 + (c' % 4) * 4.
  // Column tq + 4h of each k8 step is position 8 kk + 2 tq + h (the transposers write grad_y there too):
  // the four tq of a load then read rows 0, 2, 4, 6 (or 1, 3, 5, 7), four distinct swizzle phases, where
  // positions tq + 4h put rows 0 and 1 on the same banks (2-way conflicts on every load, ncu, v0.39).
  uint32_t off[2][2];
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    const int ci = 64 * cw + 16 * wl + g + 8 * rr, cl = ci & 31;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int q = 2 * tq + h;
      off[rr][h] = (ci >> 5) * IW_SUB + q * 128 + (((cl >> 2) ^ q) << 4) + (cl & 3) * 4;
    }
  }

  int it = 0;
  for (int u = blockIdx.x; u < geo.units; u += gridDim.x) {
    Unit t;
    unit_at(u, t);
    float acc[NA];
#pragma unroll
    for (int i = 0; i < NA; ++i) acc[i] = 0.f;
    uint32_t a0[4][4], a1[4][4];
    int held = -1;
    auto kblock = [&](uint32_t(&a)[4][4]) {
      const int s = it % S;
      Barrier::wait(&ready[s], (it / S) & 1);
      const uint32_t st = smem_addr + s * STAGE_BYTES;
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        a[kk][0] = lds(st + off[0][0] + kk * 1024);
        a[kk][1] = lds(st + off[1][0] + kk * 1024);
        a[kk][2] = lds(st + off[0][1] + kk * 1024);
        a[kk][3] = lds(st + off[1][1] + kk * 1024);
#pragma unroll
        for (int e = 0; e < 4; ++e) cute::warpgroup_fence_operand(a[kk][e]);
      }
      fence_acc(acc);
      cute::warpgroup_arrive();
#pragma unroll
      for (int kk = 0; kk < 4; ++kk)
        gmma_rs<Op>(a[kk], sw128_desc(st + C::X_BYTES + G_BYTES + 32 * kk), acc, std::make_index_sequence<NA>{});
      cute::warpgroup_commit_batch();
      cute::warpgroup_wait<1>();
      fence_acc(acc);
      if (held >= 0) Barrier::arrive(&empty[held]);
      held = s;
      ++it;
    };
    int i = 0;
#pragma unroll 1
    for (; i + 1 < t.count; i += 2) {
      kblock(a0);
      kblock(a1);
    }
    if (i < t.count) kblock(a0);
    cute::warpgroup_wait<0>();
    fence_acc(acc);
    if (held >= 0) Barrier::arrive(&empty[held]);

    // Accumulator 4j + 2r + e: ci row g + 8r of the warp's 16, N column 8j + 2tq + e = kw * BN + co offset.
    const int k3 = k * k * k;
    const int tap0 = KX > 1 ? t.tap * k : t.tap;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int ci = t.ci0 + 64 * cw + 16 * wl + g + 8 * r;
      if (ci >= p.Ci) continue;
      float* row0 = p.partials + (((int64_t)t.slice * k3 + tap0) * p.Ci + ci) * p.Co;
      const int64_t tap_stride = (int64_t)p.Ci * p.Co;
#pragma unroll
      for (int j = 0; j < C::N / 8; ++j) {
        constexpr int JB = BN / 8;
        const int co = t.co0 + 8 * (j % JB) + 2 * tq;
        if (co >= p.Co) continue;  // Co % 4 == 0: co + 1 < Co as well
        *reinterpret_cast<float2*>(row0 + (j / JB) * tap_stride + co) =
            make_float2(acc[4 * j + 2 * r], acc[4 * j + 2 * r + 1]);
      }
    }
  }
#endif
}

// The kw-fold grad_weight with the GEMM's roles swapped (SWAP rows): M = (kw, C_out) = 3 x 64, one consumer
// warpgroup per kw tap, N = 128 C_in, K = positions. Why: ncu on the 256->128 layers (v0.38) put the
// consumers 70% of their time in the wait for the transposed operand; the three transposing warps were the
// bound (0.14 ms against the MMAs' 0.04). Here x is transposed (128 x 32 per k-block) instead of the three
// kw taps' gathered grad_y (192 x 32): a third less. A = grad_y from registers, each warpgroup loading its
// tap's positions s * i + kw straight from the TMA box (no gather step); B = x^T, K-major, by descriptor.
// A stage is 16 KiB smaller than the unswapped row's, so four fit where that row has three.
// Two producer warpgroups: seven transposing warps (three, in one, measured 1-4% slower).
// XN: x is NCDHW (p.x_ncdhw), where positions are x's inner axis, so its box is K-major as it lands: TMA
// brings [d][h][128 C_in][TW positions] (map axes w, C, h, d, n), 32-byte (TW = 8) or 64-byte (TW = 16)
// swizzled, into the x^T slot, the consumers wait for TMA alone, and the transposing warps have nothing to do.
// That also spares the backward x's channels_last_3d copy.
// k5 (KX = 5, BN = 32, v0.67): M = 5 x 32 on the same three warpgroups, two taps each, 32 of the 192 MMA rows
// idle. It replaces 125 per-tap units per slice, each transposing its own 64 x 32 grad_y block per k-block
// (the bound of V-Net up's per-tap row, v0.39), with 25 (kd, kh) units per 32 C_out that transpose x once for
// five taps, or nothing on an NCDHW x.
template <int TD, int TH, int TW, int S, bool XN = false, int KX = 3, int BN = 64>
__global__ void __launch_bounds__(640, 1)
    igemm_wgrad_swap_kernel(const __grid_constant__ DirectWgradLaunch p, const __grid_constant__ CUtensorMap tmap_x,
                            const __grid_constant__ CUtensorMap tmap_gy, const IgemmWgradGeometry geo) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = IgemmWgradConfig<TD, TH, TW, BN, S, KX, true>;
  constexpr int PW = C::PW;
  static_assert(C::THREADS == 640, "launch bounds");
  static_assert(!XN || TW == 8 || TW == 16, "NCDHW x: rows of 32 or 64 bytes, one swizzle span each");
  using Op = typename GmmaRS<IW_MI>::Op;
  using Barrier = cutlass::arch::ClusterBarrier;
  constexpr int NA = IW_MI / 2;
  constexpr int PAIRS = IW_MI / 32 * 8;         // (sub-box, 16-byte chunk) pairs of x per k-block
  constexpr int TWARPS = C::TRANSPOSERS / 32;
  constexpr int PER_WARP = (PAIRS + TWARPS - 1) / TWARPS, BATCH = PER_WARP < 4 ? PER_WARP : 4;
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = smem_1k(smem_raw);
  const int STAGE_BYTES = geo.stage_bytes, G_SUB = geo.g_sub;
  const int G_BYTES = BN / 32 * G_SUB;
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + S * STAGE_BYTES);
  uint64_t* ready = full + S;
  uint64_t* empty = ready + S;

  const int tid = threadIdx.x, wg = tid >> 7, lane = tid & 31;
  igemm_wgrad_ring_init<S>(full, TWARPS, 128 * C::CONSUMERS);

  const int k = p.k;
  using Unit = IgemmWgradUnit;
  auto unit_at = [&](int u, Unit& t) { igemm_wgrad_unit<BN>(geo, u, t); };
  const int per_sample = geo.tiles_d * geo.tiles_h * geo.tiles_w;
  const uint32_t smem_addr = cute::cast_smem_ptr_to_uint(smem);

  if (wg < PW) {
    cutlass::arch::warpgroup_reg_dealloc<C::PRODUCER_REGS>();
    if (tid == 0) {
      igemm_wgrad_tma<TD, TH, TW, BN, S, KX, XN>(p, &tmap_x, &tmap_gy, geo, k, per_sample, smem, STAGE_BYTES,
                                                 G_SUB, full, empty);
    } else if (tid >= 32 && !XN) {
      // x^T. Transposing warp w takes the (sub-box, 16-byte chunk) pairs P = w, w + TWARPS, ..., lane q the
      // position: it reads channels 4j..4j+3 (j = P % 8) of position q (8 lanes of a 128-bit phase hit 8
      // distinct chunks) and writes them into rows 4P + m of the K-major tile at column q (32
      // distinct banks). Loads go in batches: one dependent chain per pair is too slow.
      const int w = (tid >> 5) - 1;
      igemm_wgrad_each_loaded<S, BN>(geo, full, [&](int st_i) {
        const uint32_t x = smem_addr + st_i * STAGE_BYTES + lane * 128;
        const uint32_t xt = smem_addr + st_i * STAGE_BYTES + C::X_BYTES + G_BYTES + (lane & 3) * 4;
#pragma unroll 1
        for (int b0 = 0; b0 < PER_WARP; b0 += BATCH) {
          float4 v[BATCH];
#pragma unroll
          for (int b = 0; b < BATCH; ++b) {
            const int P = w + TWARPS * (b0 + b);
            if (P < PAIRS) v[b] = lds4(x + (P >> 3) * IW_SUB + (((P & 7) ^ (lane & 7)) << 4));
          }
#pragma unroll
          for (int b = 0; b < BATCH; ++b) {
            const int P = w + TWARPS * (b0 + b);
            if (P < PAIRS) {
              const uint32_t row = xt + P * 512;
              const int sw = (lane >> 2) ^ ((P & 1) << 2);
              const float e[4] = {v[b].x, v[b].y, v[b].z, v[b].w};
#pragma unroll
              for (int m = 0; m < 4; ++m) sts(row + m * 128 + ((sw ^ m) << 4), __float_as_uint(e[m]));
            }
          }
        }
        cutlass::arch::fence_view_async_shared();  // generic-proxy writes, read by wgmma
        __syncwarp();
        if (lane == 0) Barrier::arrive(&ready[st_i]);
      });
    }
    return;
  }

  cutlass::arch::warpgroup_reg_alloc<C::CONSUMER_REGS>();
  const int wl = (tid >> 5) & 3;
  const int g = lane >> 2, tq = lane & 3;
  // Warp wl's 16 rows of its warpgroup's 64 are tap kw's channels co_w .. co_w + 15 of the unit's BN. With
  // k5 the rows of a tap past the filter (kw = 5, the third warpgroup's second half) are computed from tap
  // 4's operands, a warpgroup-wide MMA needing every warp, and never stored.
  const int kw = (wg - PW) * (64 / BN) + 16 * wl / BN, co_w = 16 * wl % BN;
  const int kw_a = kw < KX ? kw : KX - 1;
  // This thread's A elements: rows co = co_w + g (+ 8), in sub-box co_w / 32; columns (positions
  // of the k-block) q = 8 kk + tq (+ 4), which sit at box row qrow(q) + kw (qrow: the position's row of the
  // box spanning the kw taps along w). Element (row r, channel c) of a sub-box: r * 128 + ((c / 4 ^ r % 8)
  // << 4) + (c % 4) * 4. Row co + 8 is chunk c / 4 + 2 (bit 1 of c / 4 is clear), which flips bit 5 of the
  // address whatever the swizzle: one offset per (kk, h) in registers, not two.
  uint32_t off[4][2];
#pragma unroll
  for (int kk = 0; kk < 4; ++kk)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int q = 8 * kk + tq + 4 * h;
      const int r = (q / (TW * TH) * TH + (q / TW) % TH) * geo.wb + p.stride * (q % TW) + kw_a;
      const int cl = co_w % 32 + g;
      off[kk][h] = co_w / 32 * G_SUB + r * 128 + (((cl >> 2) ^ (r & 7)) << 4) + (cl & 3) * 4;
    }

  int it = 0;
  for (int u = blockIdx.x; u < geo.units; u += gridDim.x) {
    Unit t;
    unit_at(u, t);
    float acc[NA];
#pragma unroll
    for (int i = 0; i < NA; ++i) acc[i] = 0.f;
    // One A register set, all four wgmmas of a k-block in flight, then wait: with two sets (the next
    // k-block's loads beside these MMAs) ptxas serialised every wgmma for lack of registers (C7512); the
    // three warpgroups keep the tensor pipe fed between one's k-blocks (v0.38: level or 0.3-4% faster).
    uint32_t a[4][4];
#pragma unroll 1
    for (int i = 0; i < t.count; ++i, ++it) {
      const int s = it % S;
      if constexpr (XN)
        cutlass::arch::ClusterTransactionBarrier::wait(&full[s], (it / S) & 1);
      else
        Barrier::wait(&ready[s], (it / S) & 1);
      const uint32_t gy = smem_addr + s * STAGE_BYTES + C::X_BYTES;
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        a[kk][0] = lds(gy + off[kk][0]);
        a[kk][1] = lds((gy + off[kk][0]) ^ 32);
        a[kk][2] = lds(gy + off[kk][1]);
        a[kk][3] = lds((gy + off[kk][1]) ^ 32);
#pragma unroll
        for (int e = 0; e < 4; ++e) cute::warpgroup_fence_operand(a[kk][e]);
      }
      fence_acc(acc);
      cute::warpgroup_arrive();
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        uint64_t desc;
        if constexpr (XN) {
          // positions 8 kk .. 8 kk + 7: row (8 kk) / TW of the box's (d, h) rows, at 32 * (8 kk % TW / 8) bytes
          const uint32_t b = gy + G_BYTES + (8 * kk / TW) * (IW_MI * TW * 4) + (8 * kk % TW) * 4;
          desc = TW == 8 ? sw32_desc(b) : sw64_desc(b);
        } else {
          desc = sw128_desc(gy + G_BYTES + 32 * kk);
        }
        gmma_rs<Op>(a[kk], desc, acc, std::make_index_sequence<NA>{});
      }
      cute::warpgroup_commit_batch();
      cute::warpgroup_wait<0>();
      fence_acc(acc);
#pragma unroll
      for (int kk = 0; kk < 4; ++kk)
#pragma unroll
        for (int e = 0; e < 4; ++e) cute::warpgroup_fence_operand(a[kk][e]);
      Barrier::arrive(&empty[s]);
    }

    // Accumulator 4j + 2r + e: row co = co_w + g + 8r, column ci = 8j + 2tq + e. partials is [ci][co] per
    // tap, so 8 lanes of one (tq, e) write 32 contiguous bytes.
    if (kw >= KX) continue;
    const int k3 = k * k * k;
    const int64_t tap_base = ((int64_t)t.slice * k3 + t.tap * k + kw) * p.Ci;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int co = t.co0 + co_w + g + 8 * r;
      if (co >= p.Co) continue;
#pragma unroll
      for (int j = 0; j < IW_MI / 8; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int ci = t.ci0 + 8 * j + 2 * tq + e;
          if (ci < p.Ci) p.partials[(tap_base + ci) * p.Co + co] = acc[4 * j + 2 * r + e];
        }
    }
  }
#endif
}

template <int TD, int TH, int TW, int BN, int S, int KX = 1, bool SWAP = false>
struct IgemmWgradKernel {
  using C = IgemmWgradConfig<TD, TH, TW, BN, S, KX, SWAP>;

  // 0 or a cutlass::Status value; fills geo.
  static int geometry(const DirectWgradLaunch& p, IgemmWgradGeometry& geo) {
    if (p.k < 1 || p.stride < 1 || p.stride > 8 || p.pad < 0 || p.slices < 1) return 5;
    if (KX > 1 && p.k != KX) return 5;  // the fold covers a filter row exactly
    if (p.stride * TW > 256 || p.stride * TH > 256 || p.stride * TD > 256) return 5;  // TMA box limits
    geo.wb = KX > 1 ? p.stride * (TW - 1) + KX : TW;
    geo.g_sub = C::g_sub(geo.wb);
    geo.g_tx = C::X_BYTES + (KX > 1 ? BN / 32 * TD * TH * geo.wb * 128 : BN * IW_KB * 4);
    geo.stage_bytes = C::stage_bytes(geo.wb);
    geo.tiles_d = (p.Di + TD - 1) / TD;
    geo.tiles_h = (p.Hi + TH - 1) / TH;
    geo.tiles_w = (p.Wi + TW - 1) / TW;
    const long long tiles = (long long)p.N * geo.tiles_d * geo.tiles_h * geo.tiles_w;
    if (tiles > 0x7fffffffLL) return 5;
    geo.tiles = (int)tiles;
    geo.per_slice = (int)((tiles + p.slices - 1) / p.slices);
    geo.ciblocks = (p.Ci + IW_MI - 1) / IW_MI;
    geo.coblocks = (p.Co + BN - 1) / BN;
    geo.taps = KX > 1 ? p.k * p.k : p.k * p.k * p.k;
    const long long units = (long long)p.slices * geo.ciblocks * geo.coblocks * geo.taps;
    if (units > 0x7fffffffLL) return 5;
    geo.units = (int)units;
    return 0;
  }

  static size_t smem_bytes(const IgemmWgradGeometry& geo) {
    return 1024 + (size_t)S * geo.stage_bytes + 3 * S * sizeof(uint64_t);
  }

  static int can_implement(const DirectWgradLaunch& p) {
    if (p.Ci % 4 != 0 || p.Co % 4 != 0) return 1;  // 16-byte TMA strides and float2 stores
    if (p.gy_ncdhw) return 5;  // NDHWC grad_y only
    // NCDHW x: the swapped rows (XN), W a multiple of 4 (TMA's 16-byte strides)
    if (p.x_ncdhw && !(SWAP && (TW == 8 || TW == 16) && p.Wi % 4 == 0)) return 5;
    IgemmWgradGeometry geo;
    const int code = geometry(p, geo);
    if (code != 0) return code;
    return sm90_fits(smem_bytes(geo));
  }

  static int run(const DirectWgradLaunch& p) {
    int code = can_implement(p);
    if (code != 0) return code;
    IgemmWgradGeometry geo;
    geometry(p, geo);
    if (geo.units == 0 || p.Ci == 0 || p.Co == 0) return 0;
    CUtensorMap tx, tg;
    const cuuint32_t s = (cuuint32_t)p.stride;
    const cuuint32_t x_box[5] = {32, TW, TH, TD, 1};
    // KX > 1: every position along w of the KX taps' span (traversal stride 1 there).
    const cuuint32_t g_box[5] = {32, KX > 1 ? (cuuint32_t)geo.wb : s * TW, s * TH, s * TD, 1};
    // TFLOAT32 maps (tf32 only, no sums): the kernels take the landed elements as their tf32 operands.
    constexpr bool kMapRounds = input_map_rounds(false, false);
    // NCDHW x (XN): axes (w, C, h, d, n), a box of TW positions x 128 C_in x TH x TD, one swizzle span per row.
    const cuuint32_t xn_box[5] = {TW, IW_MI, TH, TD, 1};
    const bool x_ok = p.x_ncdhw ? encode_ncdhw_wchd(&tx, p.x, p.N, p.Di, p.Hi, p.Wi, p.Ci, xn_box,
                                                    TW == 8 ? CU_TENSOR_MAP_SWIZZLE_32B : CU_TENSOR_MAP_SWIZZLE_64B,
                                                    CU_TENSOR_MAP_L2_PROMOTION_L2_128B, kMapRounds)
                                : encode_ndhwc(&tx, p.x, p.N, p.Di, p.Hi, p.Wi, p.Ci, x_box, CU_TENSOR_MAP_SWIZZLE_128B,
                                               CU_TENSOR_MAP_L2_PROMOTION_L2_128B, 1, 0, kMapRounds);
    if (!x_ok ||
        !encode_ndhwc(&tg, p.gy, p.N, p.Do, p.Ho, p.Wo, p.Co, g_box, CU_TENSOR_MAP_SWIZZLE_128B,
                      CU_TENSOR_MAP_L2_PROMOTION_L2_128B, s, KX > 1 ? 1 : 0, kMapRounds))
      return 5;
    const int sms = sm_count();
    if (sms <= 0) return 1000 + (int)cudaGetLastError();
    const dim3 grid((unsigned)(geo.units < sms ? geo.units : sms));
    if constexpr (SWAP) {
      if constexpr (TW == 8 || TW == 16) {
        if (p.x_ncdhw)
          return direct::launch_with_smem(igemm_wgrad_swap_kernel<TD, TH, TW, S, true, KX, BN>, grid, C::THREADS,
                                          smem_bytes(geo), p.stream, p, tx, tg, geo);
      }
      return direct::launch_with_smem(igemm_wgrad_swap_kernel<TD, TH, TW, S, false, KX, BN>, grid, C::THREADS,
                                      smem_bytes(geo), p.stream, p, tx, tg, geo);
    }
    else
      return direct::launch_with_smem(igemm_wgrad_kernel<TD, TH, TW, BN, S, KX>, grid, C::THREADS, smem_bytes(geo),
                                      p.stream, p, tx, tg, geo);
  }

  static DirectWgradEntry entry(const char* name) { return DirectWgradEntry{name, &can_implement, &run}; }
};

}  // namespace direct90
}  // namespace convt3d
