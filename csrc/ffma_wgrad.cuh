// Exact-fp32 grad_weight as an implicit GEMM per tap on FFMA, behind the stock kernels' ConvLaunch
// contract (conv_launch.h, Wgrad): result[slice] [K, T, R, S, C] = sum over the slice's positions of
//     output[pos, k] * activation[n, z*s - pad + t, p*s - pad + r, q*s - pad + s', c]
// with output = x [N, Z, P, Q, K=C_in] and activation = grad_y [N, D, H, W, C=C_out], both NDHWC.
// GEMM: M = C_in, N = (tap, C_out), K = positions of x, split into slices the caller sums in a fixed
// order (bitwise reproducible).
//
// Why: the stock SIMT wgrad copies one 4-byte element per cp.async with conv-iterator bookkeeping per
// access (CUTLASS's SIMT cores have one element per access), and ran the 256->128 layers at 23
// TFLOP/s against cuDNN's 27 (H100, v0.18). Both operands here are MN-major in memory (channels
// contiguous at a position), which is the layout an FFMA outer product reads from shared memory, so
// each stage row is one run of 16-byte cp.async straight from global memory: per 8 positions a thread
// issues one copy per operand against 512 FFMA.
//
// CTA: BM (C_in: 128, or 64 or 32 for narrower layers) x BN ((tap, C_out): 128, 256 for 32 rows) x BK
// positions, BM * BN / 64 threads, each 8 x 8 outputs as 2 x 2 blocks of 4 x 4 (16-byte shared-memory
// reads: distinct ones along M within a quarter warp, broadcasts along N).
//
// SK (the `_sk` rows): stream-K. Split-K gives each tile the same number of CTAs, so a grid of tiles x
// slices rarely matches the SMs (U-Net 256->128: 54 tiles, 2 slices, 108 CTAs on 132 SMs), and more slices
// cost a partial-sum slot each. Here a grid of SMs x CTAs per SM splits all tiles x k blocks evenly: CTA c
// takes the range [total c / G, total (c + 1) / G), whose pieces fall in one to a few tiles. The pieces of
// a tile are added in a fixed order (by CTA, the lowest first) into one slot: a per-tile flag counts the
// pieces already added, and each piece waits for its turn, loads the sum so far and adds its own. So the
// result is bitwise reproducible for a given grid, with one slot of partial sums. Waits only go to lower
// CTAs (dispatched earlier), and a CTA walks its range from the end, so its first piece is the first of
// its tile and never waits: only a CTA's last piece can.
//
// NC (ConvLaunch::ncdhw, the 64- and 128-row tiles): x [N, Ci, Z, P, Q] and grad_y [N, Co, D, H, W] read in their
// NCDHW storage, so that an NCDHW layer's backward converts neither (no channels_last_3d copy of x, and none of
// grad_y where grad_input reads it in place too). Positions, the GEMM's K, are then the inner axis of both, so
// the stages are K-major, with ffma_fprop.cuh's layout and compute roles (rows at a pitch of BK + 4 floats; per
// 4 k, 16 shared reads of 16 bytes for 256 FFMA, as many as here). x's rows arrive by 16-byte cp.async along
// positions, untransposed; grad_y's by 4-byte cp.async with a warp's lanes on consecutive positions of one
// column (tap, channel): one or two 128-byte lines per instruction. (v0.22's in-place gathers put the lanes
// along channels, 4-8 lines an instruction, and lost 18-34% on L1.)
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "conv_launch.h"
#include "cutlass/barrier.h"
#include "cute/arch/copy_sm80.hpp"
#include "cute/arch/mma.hpp"
#include "cutlass/fast_math.h"
#include "direct_atoms.cuh"

namespace convt3d {
namespace ffma {

struct WgradArgs {
  const float* x;     // [N, Z, P, Q, Ci]
  const float* gy;    // [N, D, H, W, Co]
  float* partials;    // [slices, Ci, T*R*S*Co]
  int Ci, Co, ntot;      // ntot = T*R*S*Co
  int D, H, W, T, R, S;  // grad_y's spatial extent; filter taps along d, h and w
  int stride, pad_d, pad_h, pad_w;
  long long positions;  // N*Z*P*Q
  cutlass::FastDivmod div_q, div_p, div_z;
  int* flags;           // SK: one per tile, zero at launch: the tile's pieces added so far
  int tiles_n;          // SK: tiles along N (tile t is M tile t / tiles_n, N tile t % tiles_n)
  long long k_blocks;   // SK: BK blocks of positions per tile; tiles * k_blocks in all
  // NC: x [N, Ci, Z, P, Q] and grad_y [N, Co, D, H, W]; zpq = Z*P*Q (a multiple of 4), dhw = D*H*W.
  int zpq, dhw;
  cutlass::FastDivmod div_zpq;
};

template <int BM, int BK, int Stages>
struct WgradShape {
  // 8 x 8 outputs per thread; the 32-row tile (C_in <= 32) is 256 columns wide to keep 128 threads.
  static constexpr int BN = BM == 32 ? 256 : 128, kThreads = BM * BN / 64, kBM = BM;
  // The 64-row tile at three CTAs per SM (159 registers) instead of four (a 128 cap, 4 bytes spilled): 1.05-1.08x
  // at the same grid (H200, v0.80, bench/tools/ffmatile.py on U-Net 64->32 and SR x2).
  static constexpr int kMinBlocks = BM == 128 ? 2 : 3;
  // SK: CTAs per SM in the stream-K grid. The 128-row tile runs as fast with one per SM as with two (H100,
  // v0.43), and fewer CTAs mean fewer pieces per tile, whose sums are added one after another.
  static constexpr int kStreamKPerSM = BM == 128 ? 1 : kMinBlocks;
  // Compute roles: kLanesM lanes of a warp along M (a quarter warp's A reads hit distinct 16 bytes).
  static constexpr int kLanesM = BM >= 64 ? 8 : 4, kWarpsM = BM / (8 * kLanesM);
  static constexpr int kStageFloats = BK * (BM + BN);
  // Copy roles: a thread keeps one 16-byte chunk column of each operand (so B's tap and channel are
  // fixed for the CTA) and takes every (kThreads / chunks)-th row.
  static constexpr int kChunksA = BM / 4, kChunksB = BN / 4;
  static constexpr int kRowStepA = kThreads / kChunksA, kRowStepB = kThreads / kChunksB;
  // More than 4 B rows per thread per stage (the 32-row tile: 8): their positions come decoded from a
  // table (below) instead of three divisions per row.
  static constexpr bool kTable = BK / kRowStepB > 4;
  static constexpr size_t kTableBytes = kTable ? 2 * BK * sizeof(int2) : 0;
  static constexpr size_t kSmemBytes = size_t(Stages) * kStageFloats * sizeof(float) + kTableBytes;
  static_assert(BM == 32 || BM == 64 || BM == 128, "32, 64 or 128 rows of C_in");
  static_assert(BK % kRowStepA == 0 && BK % kRowStepB == 0, "whole rows per thread");
  static_assert(!kTable || BK <= kThreads, "one decoding thread per position of a stage");
};

// Compute roles: rows 4*tm (+BM/2) of M, columns 4*tn (+BN/2) of N; a quarter warp spans min(8, kLanesM) tm.
template <class Sh>
__device__ __forceinline__ int2 thread_tile() {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  return make_int2((warp % Sh::kWarpsM) * Sh::kLanesM + lane % Sh::kLanesM,
                   (warp / Sh::kWarpsM) * (32 / Sh::kLanesM) + lane / Sh::kLanesM);
}

// acc = this thread's 8 x 8 outputs of the tile at (m0, n0), summed over positions [k_begin, k_end).
template <int BM, int BK, int Stages>
__device__ __forceinline__ void wgrad_piece(const WgradArgs& a, float* smem, int m0, int n0, long long k_begin,
                                            long long k_end, float (&acc)[8][8]) {
  using Sh = WgradShape<BM, BK, Stages>;
  constexpr int BN = Sh::BN, kHalfM = BM / 2, kHalfN = BN / 2;
  using Fma = cute::UniversalFMA<float, float, float, float>;

  const int tid = threadIdx.x;
  const int k_tiles = (int)((k_end - k_begin + BK - 1) / BK);

  const int ca = tid % Sh::kChunksA, ra = tid / Sh::kChunksA;
  const int ci = m0 + 4 * ca;
  const bool ci_ok = ci < a.Ci;
  const int cb = tid % Sh::kChunksB, rb = tid / Sh::kChunksB;
  const int nb = n0 + 4 * cb;
  const bool n_ok = nb < a.ntot;
  const int tap = n_ok ? nb / a.Co : 0, co = nb - tap * a.Co;
  const int ks = tap % a.S, kr = (tap / a.S) % a.R, kt = tap / (a.S * a.R);

  // The table (kTable): BK threads decode a stage's positions once, two slots deep, into grad_y's
  // index of the tap-0 corner and a mask of the taps that land inside grad_y (bit t of byte 0, 1, 2:
  // the depth, height, width tap t; filters of up to 8 taps per axis); a B copy adds its own tap.
  int2* table = reinterpret_cast<int2*>(smem + Stages * Sh::kStageFloats);
  const int tap_bits = (1 << kt) | (1 << (8 + kr)) | (1 << (16 + ks));
  const int tap_pos = (kt * a.H + kr) * a.W + ks;  // the tap's offset in grad_y's positions
  auto decode = [&](int kt_idx) {
    if (!Sh::kTable || tid >= BK) return;
    const long long pos = k_begin + (long long)kt_idx * BK + tid;
    int2 e = make_int2(0, 0);  // past k_end: no tap inside
    if (pos < k_end) {
      const int4 c = direct::tap_corner(a, pos);
      const int n = c.x, gz = c.y, gh = c.z, gw = c.w;
      e.x = ((n * a.D + gz) * a.H + gh) * a.W + gw;
      for (int t = 0; t < a.T; ++t) e.y |= ((unsigned)(gz + t) < (unsigned)a.D) << t;
      for (int t = 0; t < a.R; ++t) e.y |= ((unsigned)(gh + t) < (unsigned)a.H) << (8 + t);
      for (int t = 0; t < a.S; ++t) e.y |= ((unsigned)(gw + t) < (unsigned)a.W) << (16 + t);
    }
    table[(kt_idx & 1) * BK + tid] = e;
  };

  auto load = [&](int stage, int kt_idx) {
    float* as = smem + stage * Sh::kStageFloats;
    float* bs = as + BK * BM;
    const long long pos0 = k_begin + (long long)kt_idx * BK;
#pragma unroll
    for (int j = 0; j < BK / Sh::kRowStepA; ++j) {
      const int row = ra + j * Sh::kRowStepA;
      const long long pos = pos0 + row;
      const bool ok = pos < k_end && ci_ok;
      direct::copy16(ok ? a.x + pos * a.Ci + ci : a.x, as + row * BM + 4 * ca, ok);
    }
    if constexpr (Sh::kTable) {
      const int2* te = table + (kt_idx & 1) * BK;
#pragma unroll
      for (int j = 0; j < BK / Sh::kRowStepB; ++j) {
        const int row = rb + j * Sh::kRowStepB;
        const int2 e = te[row];
        const bool ok = n_ok && (e.y & tap_bits) == tap_bits;
        direct::copy16(ok ? a.gy + (long long)(e.x + tap_pos) * a.Co + co : a.gy, bs + row * BN + 4 * cb, ok);
      }
    } else {  // an else, not a return: nvcc warned the loop below unreachable in the table form (#128-D)
#pragma unroll
      for (int j = 0; j < BK / Sh::kRowStepB; ++j) {
        const int row = rb + j * Sh::kRowStepB;
        const long long pos = pos0 + row;
        const int4 c = direct::tap_corner(a, pos);
        const int n = c.x, gz = c.y + kt, gh = c.z + kr, gw = c.w + ks;
        const bool ok = pos < k_end && n_ok && (unsigned)gz < (unsigned)a.D && (unsigned)gh < (unsigned)a.H &&
                        (unsigned)gw < (unsigned)a.W;
        const float* src = a.gy + ((((long long)n * a.D + gz) * a.H + gh) * a.W + gw) * a.Co + co;
        direct::copy16(ok ? src : a.gy, bs + row * BN + 4 * cb, ok);
      }
    }
  };

  const int2 tmn = thread_tile<Sh>();
  const int tm = tmn.x, tn = tmn.y;
  direct::zero_acc(acc);

  auto compute = [&](int stage) {
    const float* as = smem + stage * Sh::kStageFloats;
    const float* bs = as + BK * BM;
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float av[8], bv[8];
      *reinterpret_cast<float4*>(av) = *reinterpret_cast<const float4*>(as + kk * BM + 4 * tm);
      *reinterpret_cast<float4*>(av + 4) = *reinterpret_cast<const float4*>(as + kk * BM + kHalfM + 4 * tm);
      *reinterpret_cast<float4*>(bv) = *reinterpret_cast<const float4*>(bs + kk * BN + 4 * tn);
      *reinterpret_cast<float4*>(bv + 4) = *reinterpret_cast<const float4*>(bs + kk * BN + kHalfN + 4 * tn);
      // Serpentine order, as CUTLASS's SIMT thread MMA (mma_sm50.h): odd rows walk the columns backwards,
      // so consecutive FFMAs share an operand at each row change too. Each output's sum is unchanged (the
      // same products in the same kk order), so the bits are. H100 (v0.44, bench/tools/ffmatile.py): the
      // 128-row tile 1.006-1.020x, the 64-row tile 1.020-1.032x on the sweep's layers.
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int jj = 0; jj < 8; ++jj) {
          const int j = (i & 1) ? 7 - jj : jj;
          Fma::fma(acc[i][j], av[i], bv[j], acc[i][j]);
        }
    }
  };

  // Stages - 1 tiles in flight ahead of the one being computed. With the table, a tile's positions are
  // decoded one barrier before its copies read them, into the slot its predecessor's copies read a
  // barrier ago.
  decode(0);
  if (Sh::kTable) __syncthreads();
#pragma unroll
  for (int s = 0; s < Stages - 1; ++s) {
    if (s < k_tiles) load(s, s);
    cute::cp_async_fence();
    if constexpr (Sh::kTable) {
      decode(s + 1);
      __syncthreads();
    }
  }
  for (int t = 0; t < k_tiles; ++t) {
    cute::cp_async_wait<Stages - 2>();
    __syncthreads();  // tile t landed for every thread, and tile t - 1's stage is free to refill
    const int next = t + Stages - 1;
    if (next < k_tiles) load(next % Stages, next);
    cute::cp_async_fence();
    if (next + 1 < k_tiles) decode(next + 1);
    compute(t % Stages);
  }
  cute::cp_async_wait<0>();
}

// Stores this thread's outputs of the tile at (m0, n0) into dst [Ci, ntot]; add: adds them to what is there
// (the sum so far + this piece's, in that order), read from L2 since another CTA wrote it.
template <class Sh>
__device__ __forceinline__ void store_tile(const WgradArgs& a, float* dst, int m0, int n0, const float (&acc)[8][8],
                                           bool add) {
  const int2 tmn = thread_tile<Sh>();
  constexpr int kHalfM = Sh::kBM / 2, kHalfN = Sh::BN / 2;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int m = m0 + (i < 4 ? 4 * tmn.x + i : kHalfM + 4 * tmn.x + i - 4);
    if (m >= a.Ci) continue;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int n = n0 + kHalfN * h + 4 * tmn.y;
      if (n >= a.ntot) continue;  // ntot % 4 == 0: a chunk is all in or all out
      float4* out = reinterpret_cast<float4*>(dst + (long long)m * a.ntot + n);
      float4 v = make_float4(acc[i][4 * h], acc[i][4 * h + 1], acc[i][4 * h + 2], acc[i][4 * h + 3]);
      if (add) {
        const float4 s = __ldcg(out);
        v = make_float4(s.x + v.x, s.y + v.y, s.z + v.z, s.w + v.w);
      }
      *out = v;
    }
  }
}

// NC tile: the FFMA roles of ffma_fprop.cuh's FpropShape on the same (BM, BN) as the row's WgradShape.
template <int BM, int BN, int BK, int Stages>
struct WgradNcShape {
  static constexpr int kBM = BM, kBN = BN, kThreads = BM * BN / 64;
  // Compute roles: 8 lanes of a warp along M, 4 along N; thread (tm, tn) holds rows tm + kRowStep i and
  // columns 4 tn + j (+ BN / 2).
  static constexpr int kRowStep = BM / 8, kWarpsM = kRowStep / 8;
  static constexpr int LDK = BK + 4;  // row pitch in floats: 8 consecutive rows on 8 distinct bank groups
  static constexpr int kStageFloats = (BM + BN) * LDK;
  static constexpr size_t kSmemBytes = size_t(Stages) * kStageFloats * sizeof(float);
  // x copies: a thread keeps one 16-byte chunk column (4 positions) and takes every kRowsPerPass-th channel row.
  static constexpr int kChunks = BK / 4, kRowsPerPass = kThreads / kChunks, kCopiesA = BM / kRowsPerPass;
  // grad_y copies: a thread keeps one position (lane % BK) and takes groups of 4 columns (one tap, 4 channels:
  // C_out % 4 == 0), kSubs groups per warp instruction, every kGroupsPerPass-th group.
  static constexpr int kSubs = 32 / BK, kGroupsPerPass = kThreads / 32 * kSubs, kPassesB = BN / 4 / kGroupsPerPass;
  // 112 registers of operands and sums (ffma_fprop's count): two CTAs of 4 warps per SM, one of 8.
  // (Three CTAs of the 64-row tile would cap it at 168 registers: 36 bytes spilled, ptxas, v0.83.)
  static constexpr int kMinBlocks = kThreads >= 256 ? 1 : 2;
  static constexpr int kStreamKPerSM = kMinBlocks;
  static_assert(BM % 64 == 0 && BN % 32 == 0, "compute roles");
  static_assert(BK == 16 || BK == 32, "a warp instruction's lanes on the positions of one or two columns");
  static_assert(BM % kRowsPerPass == 0 && (BN / 4) % kGroupsPerPass == 0, "whole copy rows");
};

// An A/B macro (CUDAFLAGS at build time; 0: fully unrolled, as landed) for the NC piece's k loop: unrolled fully, the
// 64-row tile's NC kernel is about 71-77 KB of SASS (readelf on the cubin, v0.84) against 48-51 KB for its
// channels_last_3d kernel, and ffma_fprop's NC kernel at 75 KB ran 1.20-1.40x its channels_last_3d kernel's time on
// fetch and dispatch stalls until its loop was not unrolled (41.7 KB, 1.04-1.19x; v0.84). Here it does not pay
// (H200, v0.85, bench/tools/ffmanc.py grad_weight, two runs per build): not unrolled (40 KB) 2.3-4.0% slower on
// all five 64-row layers, by 2 (45 KB) 1.2-1.3% faster on U-Net 64->32 and SR x2 but 1.4-2.4% slower on the other
// three. So the full unroll stays (a guess at why it differs, not measured: this stage is half ffma_fprop's, BK 16).
#ifndef CONVT3D_WGRAD_NC_KQ_UNROLL
#define CONVT3D_WGRAD_NC_KQ_UNROLL 0
#endif
// nvcc does not expand a macro in #pragma unroll's count (v0.85: the A/B builds failed); a constant it takes.
constexpr int kWgradNcKqUnroll = CONVT3D_WGRAD_NC_KQ_UNROLL > 0 ? CONVT3D_WGRAD_NC_KQ_UNROLL : 1;

// acc = this thread's 8 x 8 outputs of the tile at (m0, n0), summed over positions [k_begin, k_end) (multiples of 4
// but the last), from x and grad_y in NCDHW storage.
template <class Sh, int BK, int Stages>
__device__ __forceinline__ void wgrad_piece_nc(const WgradArgs& a, float* smem, int m0, int n0, long long k_begin,
                                               long long k_end, float (&acc)[8][8]) {
  constexpr int BM = Sh::kBM, BN = Sh::kBN, LDK = Sh::LDK;
  using Fma = cute::UniversalFMA<float, float, float, float>;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int k_tiles = (int)((k_end - k_begin + BK - 1) / BK);
  const int chunk = tid % Sh::kChunks, row0 = tid / Sh::kChunks;
  const int kk = lane % BK, sub = lane / BK;

  // This thread's grad_y column groups: the offset of (channel, tap) from a position's tap-0 corner, and the
  // tap's bit per axis (a position's bits say which taps land inside grad_y).
  int boff[Sh::kPassesB], bbits[Sh::kPassesB];
#pragma unroll
  for (int i = 0; i < Sh::kPassesB; ++i) {
    const int n = n0 + 4 * (warp * Sh::kSubs + sub + i * Sh::kGroupsPerPass);
    boff[i] = 0;
    bbits[i] = 1 << 30;  // past N: a bit no position has
    if (n < a.ntot) {
      const int tap = n / a.Co, co = n - tap * a.Co;
      const int ks = tap % a.S, kr = (tap / a.S) % a.R, kt = tap / (a.S * a.R);
      boff[i] = co * a.dhw + (kt * a.H + kr) * a.W + ks;
      bbits[i] = (1 << kt) | (1 << (8 + kr)) | (1 << (16 + ks));
    }
  }

  auto load = [&](int stage, int kt_idx) {
    float* as = smem + stage * Sh::kStageFloats;
    float* bs = as + BM * LDK;
    const long long kb = k_begin + (long long)kt_idx * BK;
    {
      const long long pos = kb + 4 * chunk;
      const bool pos_ok = pos < k_end;
      int n = 0, sp = 0;
      if (pos_ok) a.div_zpq(n, sp, (int)pos);
      const float* xn = a.x + (long long)n * a.Ci * a.zpq + sp;
#pragma unroll
      for (int i = 0; i < Sh::kCopiesA; ++i) {
        const int r = row0 + i * Sh::kRowsPerPass, ci = m0 + r;
        const bool ok = pos_ok && ci < a.Ci;
        direct::copy16(ok ? xn + (long long)ci * a.zpq : a.x, as + r * LDK + 4 * chunk, ok);
      }
    }
    const long long pos = kb + kk;
    int base = 0, pbits = 0;
    if (pos < k_end) {
      const int4 c = direct::tap_corner(a, pos);
      const int gz = c.y, gh = c.z, gw = c.w;
      base = c.x * a.Co * a.dhw + (gz * a.H + gh) * a.W + gw;
      pbits = direct::tap_range_bits(gz, a.T, a.D) | (direct::tap_range_bits(gh, a.R, a.H) << 8) |
              (direct::tap_range_bits(gw, a.S, a.W) << 16);
    }
#pragma unroll
    for (int i = 0; i < Sh::kPassesB; ++i) {
      const int g = warp * Sh::kSubs + sub + i * Sh::kGroupsPerPass;
      // A copy predicated off reads nothing (cp.async's source size 0), so its address may fall outside grad_y.
      const bool ok = (pbits & bbits[i]) == bbits[i];
      const float* src = a.gy + (base + boff[i]);
#pragma unroll
      for (int r = 0; r < 4; ++r) direct::copy4(src + r * a.dhw, bs + (4 * g + r) * LDK + kk, ok);
    }
  };

  const int tm = (warp % Sh::kWarpsM) * 8 + (lane & 7);
  const int tn = (warp / Sh::kWarpsM) * 4 + (lane >> 3);
  direct::zero_acc(acc);

  auto compute = [&](int stage) {
    const float* as = smem + stage * Sh::kStageFloats + tm * LDK;
    const float* bs = smem + stage * Sh::kStageFloats + BM * LDK + 4 * tn * LDK;
#if CONVT3D_WGRAD_NC_KQ_UNROLL > 0
#pragma unroll kWgradNcKqUnroll
#else
#pragma unroll
#endif
    for (int kq = 0; kq < BK; kq += 4) {
      direct::ffma_kmajor_step<Fma, Sh::kRowStep, BN, LDK>(acc, as, bs, kq);
    }
  };

#pragma unroll
  for (int s = 0; s < Stages - 1; ++s) {
    if (s < k_tiles) load(s, s);
    cute::cp_async_fence();
  }
  for (int t = 0; t < k_tiles; ++t) {
    cute::cp_async_wait<Stages - 2>();
    __syncthreads();  // tile t landed for every thread, and tile t - 1's stage is free to refill
    const int next = t + Stages - 1;
    if (next < k_tiles) load(next % Stages, next);
    cute::cp_async_fence();
    compute(t % Stages);
  }
  cute::cp_async_wait<0>();
}

// store_tile for the NC roles: rows tm + kRowStep i, columns 4 tn (+ BN / 2).
template <class Sh>
__device__ __forceinline__ void store_tile_nc(const WgradArgs& a, float* dst, int m0, int n0, const float (&acc)[8][8],
                                              bool add) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int tm = (warp % Sh::kWarpsM) * 8 + (lane & 7);
  const int tn = (warp / Sh::kWarpsM) * 4 + (lane >> 3);
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int m = m0 + tm + i * Sh::kRowStep;
    if (m >= a.Ci) continue;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int n = n0 + h * (Sh::kBN / 2) + 4 * tn;
      if (n >= a.ntot) continue;  // ntot % 4 == 0: a chunk is all in or all out
      float4* out = reinterpret_cast<float4*>(dst + (long long)m * a.ntot + n);
      float4 v = make_float4(acc[i][4 * h], acc[i][4 * h + 1], acc[i][4 * h + 2], acc[i][4 * h + 3]);
      if (add) {
        const float4 s = __ldcg(out);
        v = make_float4(s.x + v.x, s.y + v.y, s.z + v.z, s.w + v.w);
      }
      *out = v;
    }
  }
}

// NC runs 32 positions per stage in 3 stages whatever the row's BK (ffma_fprop's depth: twice the FFMA per barrier of
// the 64-row tile's 16, and a warp's copy lanes on 32 positions of one column); a stream-K piece still starts on the
// row's BK blocks, multiples of 4 positions.
constexpr int kNcBK = 32, kNcStages = 3;
template <int BM, int BK, int Stages>
using NcShapeOf = WgradNcShape<BM, WgradShape<BM, BK, Stages>::BN, kNcBK, kNcStages>;

template <int BM, int BK, int Stages, bool NC>
constexpr int wgrad_min_blocks() {
  if constexpr (NC) return NcShapeOf<BM, BK, Stages>::kMinBlocks;
  else return WgradShape<BM, BK, Stages>::kMinBlocks;
}

template <int BM, int BK, int Stages, bool SK, bool NC = false>
__global__ void __launch_bounds__(WgradShape<BM, BK, Stages>::kThreads, (wgrad_min_blocks<BM, BK, Stages, NC>()))
    ffma_wgrad_kernel(const __grid_constant__ WgradArgs a) {
  using Sh = WgradShape<BM, BK, Stages>;
  extern __shared__ __align__(16) float smem[];
  float acc[8][8];
  auto piece = [&](int m0, int n0, long long k_begin, long long k_end) {
    if constexpr (NC) wgrad_piece_nc<NcShapeOf<BM, BK, Stages>, kNcBK, kNcStages>(a, smem, m0, n0, k_begin, k_end, acc);
    else wgrad_piece<BM, BK, Stages>(a, smem, m0, n0, k_begin, k_end, acc);
  };
  auto store = [&](float* dst, int m0, int n0, bool add) {
    if constexpr (NC) store_tile_nc<NcShapeOf<BM, BK, Stages>>(a, dst, m0, n0, acc, add);
    else store_tile<Sh>(a, dst, m0, n0, acc, add);
  };
  if constexpr (!SK) {
    long long k_begin = a.positions * blockIdx.z / gridDim.z;
    long long k_end = a.positions * (blockIdx.z + 1) / gridDim.z;
    if constexpr (NC) {  // slices of whole BK blocks: x's 16-byte copies start on 4 positions
      k_begin = a.k_blocks * blockIdx.z / gridDim.z * BK;
      k_end = a.k_blocks * (blockIdx.z + 1) / gridDim.z * BK;
      if (k_end > a.positions) k_end = a.positions;
    }
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * Sh::BN;
    piece(m0, n0, k_begin, k_end);
    store(a.partials + (long long)blockIdx.z * a.Ci * a.ntot, m0, n0, false);
  } else {
    using Flags = cutlass::GenericBarrier<cutlass::detail::SyncthreadsSync>;
    const long long tiles_m = (a.Ci + BM - 1) / BM, total = tiles_m * a.tiles_n * a.k_blocks;
    const long long G = gridDim.x, c = blockIdx.x, r_begin = total * c / G;
    auto cta_of = [&](long long i) { return ((i + 1) * G - 1) / total; };  // the CTA whose range holds i
    for (long long e = total * (c + 1) / G; e > r_begin;) {
      const long long t = (e - 1) / a.k_blocks, tb = t * a.k_blocks, s = tb > r_begin ? tb : r_begin;
      const int m0 = (int)(t / a.tiles_n) * BM, n0 = (int)(t % a.tiles_n) * Sh::BN;
      if (e != total * (c + 1) / G) __syncthreads();  // every warp is done with the last piece's stages
      const long long k_end = (e - tb) * BK;
      piece(m0, n0, (s - tb) * BK, k_end < a.positions ? k_end : a.positions);
      const int j = (int)(c - cta_of(tb));  // this piece's turn in its tile
      if (j > 0) Flags::wait_eq(a.flags, threadIdx.x, (int)t, j);
      store(a.partials, m0, n0, j > 0);
      if (c < cta_of(tb + a.k_blocks - 1)) {  // a later piece waits for this one
        __threadfence();
        Flags::arrive_inc(a.flags, threadIdx.x, (int)t);
      }
      e = s;
    }
  }
}

template <int BM, int BK, int Stages, bool SK = false>
struct FfmaWgradKernel {
  using Sh = WgradShape<BM, BK, Stages>;
  // NC: the 64- and 128-row tiles (the K-major roles need 64 rows or more).
  static constexpr bool kNc = BM >= 64;

  static long long tiles(const ConvLaunch& L) {
    return (long long)((L.K + Sh::kBM - 1) / Sh::kBM) * ((L.T * L.R * L.S * L.C + Sh::BN - 1) / Sh::BN);
  }

  static size_t smem_bytes(const ConvLaunch& L) {
    if constexpr (kNc) {
      if (L.ncdhw) return NcShapeOf<BM, BK, Stages>::kSmemBytes;
    }
    return Sh::kSmemBytes;
  }

  static int can_implement(const ConvLaunch& L) {
    if (L.C % 4 != 0 || L.K % 4 != 0) return 1;  // kErrorMisalignedOperand: 16-byte channel chunks
    if (L.stride_d != L.stride_h || L.stride_h != L.stride_w || L.split_k_slices < 1) return 4;
    if (((uintptr_t)L.output | (uintptr_t)L.activation | (uintptr_t)L.result) % 16 != 0) return 1;
    const long long positions = (long long)L.N * L.Z * L.P * L.Q;
    if (positions > 0x7fffffffLL || (long long)L.N * L.D * L.H * L.W * L.C > (1LL << 40)) return 5;
    if (L.ncdhw) {
      if (!kNc) return 5;  // kErrorNotSupported
      // 16-byte copies of x along positions never straddle two samples; grad_y's element indices in 32 bits;
      // one byte of tap bits per axis.
      if ((long long)L.Z * L.P * L.Q % 4 != 0) return 1;
      if ((long long)L.N * L.C * L.D * L.H * L.W >= (1LL << 31) || L.T > 8 || L.R > 8 || L.S > 8) return 5;
    }
    // The table's 32-bit grad_y position indices (with room for the padding's negative corners) and
    // one byte of tap bits per axis.
    if (Sh::kTable && ((long long)L.N * L.D * L.H * L.W >= (1LL << 30) || L.T > 8 || L.R > 8 || L.S > 8)) return 5;
    if ((L.K + Sh::kBM - 1) / Sh::kBM > 65535 || L.split_k_slices > 65535) return 5;
    if (SK && (L.split_k_slices != 1 || tiles(L) > 0x7fffffffLL)) return 4;  // one slot of sums; int flags
    return direct::smem_fits(smem_bytes(L));
  }

  // SK: the tiles' flags.
  static std::size_t workspace_size(const ConvLaunch& L) { return SK ? (std::size_t)tiles(L) * sizeof(int) : 0; }

  template <bool NC>
  static int launch(const ConvLaunch& L, const WgradArgs& a) {
    const size_t smem = smem_bytes(L);
    if constexpr (SK) {
      // kStreamKPerSM CTAs per SM (at most what the shape's registers and shared memory let run at once), and
      // at most one per k block, so that no CTA's range is empty.
      int sms = 0;
      if (!direct::device_attribute(cudaDevAttrMultiProcessorCount, sms)) return 1000 + (int)cudaGetLastError();
      if (a.flags == nullptr || L.workspace_bytes < workspace_size(L)) return 6;  // kErrorWorkspaceNull
      int per_sm = Sh::kStreamKPerSM;
      if constexpr (NC) per_sm = NcShapeOf<BM, BK, Stages>::kStreamKPerSM;
      const long long total = tiles(L) * a.k_blocks, ctas = (long long)sms * per_sm;
      if (total == 0) {  // no positions: a zero gradient
        const cudaError_t err = cudaMemsetAsync(a.partials, 0, sizeof(float) * a.Ci * a.ntot, L.stream);
        return err == cudaSuccess ? 0 : 1000 + (int)err;
      }
      const cudaError_t err = cudaMemsetAsync(a.flags, 0, workspace_size(L), L.stream);
      if (err != cudaSuccess) return 1000 + (int)err;
      const dim3 grid((unsigned)(ctas < total ? ctas : total));
      return direct::launch_with_smem(ffma_wgrad_kernel<BM, BK, Stages, true, NC>, grid, Sh::kThreads, smem,
                                      L.stream, a);
    } else {  // an else, so that a stream-K TU does not compile the split-K kernel too
      const dim3 grid((unsigned)a.tiles_n, (unsigned)((a.Ci + Sh::kBM - 1) / Sh::kBM), (unsigned)L.split_k_slices);
      return direct::launch_with_smem(ffma_wgrad_kernel<BM, BK, Stages, false, NC>, grid, Sh::kThreads, smem,
                                      L.stream, a);
    }
  }

  static int run(const ConvLaunch& L) {
    const int code = can_implement(L);
    if (code != 0) return code;
    WgradArgs a;
    a.x = L.output;
    a.gy = L.activation;
    a.partials = L.result;
    a.Ci = L.K;
    a.Co = L.C;
    a.ntot = L.T * L.R * L.S * L.C;
    a.D = L.D, a.H = L.H, a.W = L.W, a.T = L.T, a.R = L.R, a.S = L.S;
    a.stride = L.stride_d, a.pad_d = L.pad_d, a.pad_h = L.pad_h, a.pad_w = L.pad_w;
    a.positions = (long long)L.N * L.Z * L.P * L.Q;
    a.div_q = cutlass::FastDivmod(L.Q);
    a.div_p = cutlass::FastDivmod(L.P);
    a.div_z = cutlass::FastDivmod(L.Z);
    a.tiles_n = (a.ntot + Sh::BN - 1) / Sh::BN;
    a.k_blocks = (a.positions + BK - 1) / BK;
    a.flags = static_cast<int*>(L.workspace);
    a.zpq = L.Z * L.P * L.Q;
    a.dhw = L.D * L.H * L.W;
    a.div_zpq = cutlass::FastDivmod(a.zpq > 0 ? a.zpq : 1);
    if constexpr (kNc) {
      if (L.ncdhw) return launch<true>(L, a);
    }
    return launch<false>(L, a);
  }

  static int resident() {
    return direct::resident_ctas(ffma_wgrad_kernel<BM, BK, Stages, SK>, Sh::kThreads, Sh::kSmemBytes);
  }

  static int resident_nc() {
    if constexpr (kNc) {
      return direct::resident_ctas(ffma_wgrad_kernel<BM, BK, Stages, SK, true>, Sh::kThreads,
                                   NcShapeOf<BM, BK, Stages>::kSmemBytes);
    }
    return 0;
  }

  static KernelEntry entry(const char* name) {
    KernelEntry e{name, &can_implement, &workspace_size, &run, nullptr, &resident};
    e.reads_ncdhw = kNc;
    if (kNc) e.resident_ncdhw = &resident_nc;
    return e;
  }
};

}  // namespace ffma
}  // namespace convt3d
