// Tap-reuse ("direct") kernels for the ConvTranspose3d forward and grad_input (see direct_launch.h).
//
// Why not the stock implicit GEMM: it re-reads every input element once per filter tap through
// L2 (the bound measured in ../shared/notes/kernels.md). Here a CTA owns an output tile of
// TD x TH x TW positions and BN channels; per chunk of 8 reduction channels it stages the input
// halo of that tile and the filter taps in shared memory once (cp.async, zero-filled out of
// range), then runs every tap from shared memory on TF32 tensor cores (mma.sync m16n8k8). All
// stride phases of a layer are one launch (blockIdx.z = n * phases + phase).
//
// Built from CuTe's SM80 atoms: SM80_CP_ASYNC_CACHEGLOBAL_ZFILL for the staging copies and
// SM80_16x8x8_F32TF32TF32F32_TN for the MMA. Runs on sm_80 and newer.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "direct_atoms.cuh"
#include "direct_launch.h"
#include "direct_simt.cuh"

namespace convt3d {
namespace direct {

constexpr int KC = 8;  // reduction channels per stage: one k8 step of the MMA

// The weight comes pre-rounded to tf32 by the host (round to nearest) and the input is rounded here
// with direct::to_tf32 (once per staged chunk, in shared memory), so the error matches cuDNN's TF32 rather than truncation's. (A 3xTF32 variant, in
// commit 579cd9f, measured 5e-6..2e-5 error and was dropped: docs/performance.md.)
template <int TD, int TH, int TW, int BN>
__global__ void __launch_bounds__(TD * TH * TW)
    direct_kernel(const __grid_constant__ DirectLaunch p, int tiles_h, int tiles_w, int halo_floats,
                  int stage_floats) {
  constexpr int kRows = TD * TH * TW;
  constexpr int kThreads = kRows;  // one warp per 32 output rows
  constexpr int kNT = BN / 8;
  static_assert(kRows % 32 == 0 && BN % 8 == 0, "tile shape");
  extern __shared__ __align__(16) float smem[];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, tq = lane & 3;
  const TileOrigin o = tile_origin(p, tiles_h, tiles_w, TD, TH, TW);
  const int n = o.n, q0d = o.q0d, q0h = o.q0h, q0w = o.q0w;
  const DirectPhase& ph = p.phase[o.phase];
  // Phases differ in size by at most one position per axis; the grid covers the largest.
  if (q0d >= ph.count[0] || q0h >= ph.count[1] || q0w >= ph.count[2]) return;
  const int co0 = blockIdx.y * BN;
  const int s = p.s_in;
  const HaloBox hb = halo_box<TD, TH, TW>(ph, s, s, q0d, q0h, q0w);
  const int tz = hb.tz, ty = hb.ty, tx = hb.tx, ntaps = hb.ntaps, HH = hb.HH, HW = hb.HW, hpos = hb.hpos;

  // Halo position of each of this thread's four accumulator rows (2 m-tiles x rows g, g + 8).
  int base[2][2];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int hi = 0; hi < 2; ++hi) {
      const int r = warp * 32 + mt * 16 + g + 8 * hi;
      const int td = r / (TH * TW), th = (r / TW) % TH, tw = r % TW;
      base[mt][hi] = ((s * td) * HH + s * th) * HW + s * tw;
    }

  float acc[2][kNT][4];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[mt][nt][i] = 0.f;

  int* pos_of = reinterpret_cast<int*>(smem + 2 * stage_floats);
  build_halo_table(pos_of, p, hpos, HH, HW, hb.iz0, hb.iy0, hb.ix0, tid, kThreads);
  __syncthreads();

  const float* in_n = p.in + (int64_t)n * p.Di * p.Hi * p.Wi * p.Cr;
  const float* wbase = p.weight + ph.w_offset;
  auto load = [&](int stage, int chunk) {
    float* hs = smem + stage * stage_floats;
    const int c = chunk * KC;
    stage_halo(p, in_n, pos_of, hpos, c, tid, kThreads, [&](int pos, int h) { return hs + 8 * pos + 4 * h; });
    stage_filter<BN>(hs + halo_floats, p, wbase, co0, c, ntaps, tid, kThreads);
  };

  // Rounds this thread's own halo segments of a stage to tf32 in place, once per chunk, instead of
  // once per tap that reads them (k^3 times). Only the copying thread touches a segment, and its
  // own cp.async writes are visible to it after the wait, so no barrier is needed before this.
  auto round_halo = [&](int stage) {
    float* hs = smem + stage * stage_floats;
    for (int i = tid; i < 2 * hpos; i += kThreads) {
      round4_tf32(hs + 4 * i);
    }
  };

  // Logical MMA k = tq and tq + 4 map to adjacent channels 2tq and 2tq + 1, for A and B alike, so
  // one 64-bit shared load gives both halves of a fragment and a quad reads 32 contiguous bytes.
  auto compute = [&](int stage) {
    const float* hs = smem + stage * stage_floats;
    const float* fs = hs + halo_floats;
    int t = 0;
    for (int jz = 0; jz < tz; ++jz)
      for (int jy = 0; jy < ty; ++jy) {
        const int off_zy = (jz * HH + jy) * HW;
        for (int jx = 0; jx < tx; ++jx, ++t) {
          const int off = off_zy + jx;
          uint32_t a[2][4];
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
            const uint2 lo = *reinterpret_cast<const uint2*>(hs + (base[mt][0] + off) * KC + 2 * tq);
            const uint2 hi = *reinterpret_cast<const uint2*>(hs + (base[mt][1] + off) * KC + 2 * tq);
            a[mt][0] = lo.x;
            a[mt][1] = hi.x;
            a[mt][2] = lo.y;
            a[mt][3] = hi.y;
          }
#pragma unroll
          for (int nt = 0; nt < kNT; ++nt) {
            const float2 b = *reinterpret_cast<const float2*>(fs + (t * BN + nt * 8 + g) * KC + 2 * tq);
            const uint32_t b0 = __float_as_uint(b.x), b1 = __float_as_uint(b.y);
#pragma unroll
            for (int mt = 0; mt < 2; ++mt) mma(acc[mt][nt], a[mt], b0, b1);
          }
        }
      }
  };

  const int nchunks = ntaps > 0 ? (p.Cr + KC - 1) / KC : 0;
  run_two_stages(0, nchunks, load, round_halo, [&](int stage, int) { compute(stage); });

  // Epilogue: each quad writes 8 contiguous channels (32 bytes) of one output position.
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int hi = 0; hi < 2; ++hi) {
      const int r = warp * 32 + mt * 16 + g + 8 * hi;
      const int qd = q0d + r / (TH * TW), qh = q0h + (r / TW) % TH, qw = q0w + r % TW;
      if (qd >= ph.count[0] || qh >= ph.count[1] || qw >= ph.count[2]) continue;
      const int od = ph.first[0] + p.s_out * qd, oh = ph.first[1] + p.s_out * qh,
                ow = ph.first[2] + p.s_out * qw;
      float* dst = p.out + ((((int64_t)n * p.Do + od) * p.Ho + oh) * p.Wo + ow) * p.Co;
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt) {
        const int co = co0 + nt * 8 + 2 * tq;
        if (co >= p.Co) continue;
        float2 v = make_float2(acc[mt][nt][2 * hi], acc[mt][nt][2 * hi + 1]);
        if (p.bias != nullptr) {
          v.x += p.bias[co];
          v.y += p.bias[co + 1];
        }
        *reinterpret_cast<float2*>(dst + co) = v;
      }
    }
}

// TM = 0: the tf32 mma.sync kernel above, one thread per output row. TM > 0: the exact-fp32 FFMA
// kernel (direct_simt.cuh), TW = 16, TM output rows per thread; both stage the same halo and filter,
// in chunks of KCS channels (8; the FFMA kernel also 4).
template <int TD, int TH, int TW, int BN, int TM = 0, int KCS = 8>
struct DirectKernel {
  static_assert(TM == 0 || TW == 16, "the FFMA kernel's lanes span 16 positions along w");
  static_assert(KCS == KC || (TM > 0 && KCS == 4), "chunks of 8 channels, or 4 on the FFMA kernel");
  static constexpr int kThreads = TM > 0 ? TD * TH / TM * 32 : TD * TH * TW;

  // Shared memory per stage (floats): the largest phase's halo, then its filter taps. Output positions
  // are s_in halo positions apart, or one with sum_phases (each phase's halo holds one input parity).
  static void stage_floats(const DirectLaunch& p, int& halo, int& filt) {
    halo = 0;
    filt = 0;
    const int so = p.sum_phases ? 1 : p.s_in;
    for (int i = 0; i < p.num_phases; ++i) {
      const DirectPhase& ph = p.phase[i];
      if (ph.count[0] <= 0 || ph.count[1] <= 0 || ph.count[2] <= 0) continue;
      const int hd = so * (TD - 1) + ph.taps[0], hh = so * (TH - 1) + ph.taps[1], hw = so * (TW - 1) + ph.taps[2];
      const int taps = ph.taps[0] * ph.taps[1] * ph.taps[2];
      if (taps == 0) continue;
      halo = hd * hh * hw * KCS > halo ? hd * hh * hw * KCS : halo;
      filt = taps * BN * KCS > filt ? taps * BN * KCS : filt;
    }
  }

  // Two stages of (halo, filter), then the halo's position table (one int per halo position; with
  // sum_phases one table per phase).
  static size_t smem_bytes(const DirectLaunch& p, int halo, int filt) {
    return (2ull * (halo + filt) + (p.sum_phases ? p.num_phases : 1) * (halo / KCS)) * sizeof(float);
  }

  static int can_implement(const DirectLaunch& p) {
    // kErrorNotSupported: NCDHW input and output and summed phases on the FFMA form only; no input sums
    if (((p.out_ncdhw || p.in_ncdhw || p.sum_phases) && TM == 0) || p.in_sums) return 5;
    if (p.sum_phases) {  // one output extent for all phases, dense
      if (p.s_out != 1) return 4;
      for (int i = 1; i < p.num_phases; ++i)
        for (int a = 0; a < 3; ++a)
          if (p.phase[i].first[a] != p.phase[0].first[a] || p.phase[i].count[a] != p.phase[0].count[a]) return 4;
    }
    if (p.Cr % 4 != 0 || p.Co % 4 != 0) return 1;  // kErrorMisalignedOperand: 16-byte copies
    if (p.num_phases < 1 || p.num_phases > kDirectMaxPhases || p.s_in < 1 || p.s_out < 1) return 4;
    if ((long long)p.Di * p.Hi * p.Wi > 0x7fffffffLL) return 5;  // int positions in the halo table
    if ((long long)p.N * p.num_phases > 65535 || (p.Co + BN - 1) / BN > 65535) return 5;
    int halo, filt;
    stage_floats(p, halo, filt);
    return smem_fits(smem_bytes(p, halo, filt));
  }

  static int run(const DirectLaunch& p) {
    int code = can_implement(p);
    if (code != 0) return code;
    int halo, filt;
    stage_floats(p, halo, filt);
    int cd = 0, ch = 0, cw = 0;
    for (int i = 0; i < p.num_phases; ++i) {
      cd = p.phase[i].count[0] > cd ? p.phase[i].count[0] : cd;
      ch = p.phase[i].count[1] > ch ? p.phase[i].count[1] : ch;
      cw = p.phase[i].count[2] > cw ? p.phase[i].count[2] : cw;
    }
    if (cd == 0 || ch == 0 || cw == 0 || p.N == 0 || p.Co == 0) return 0;
    const int tiles_d = (cd + TD - 1) / TD, tiles_h = (ch + TH - 1) / TH, tiles_w = (cw + TW - 1) / TW;
    const long long tiles = (long long)tiles_d * tiles_h * tiles_w;
    if (tiles > 0x7fffffffLL) return 5;
    const int stage = halo + filt;
    const size_t bytes = smem_bytes(p, halo, filt);
    const unsigned gz = (unsigned)(p.N * (p.sum_phases ? 1 : p.num_phases));
    const dim3 grid((unsigned)tiles, (unsigned)((p.Co + BN - 1) / BN), gz);
    if constexpr (TM > 0) {
      if (p.sum_phases)
        return launch_with_smem(direct_simt_kernel<TD, TH, TM, BN / 2, true, KCS>, grid, kThreads, bytes, p.stream,
                                p, tiles_h, tiles_w, halo, stage);
      return launch_with_smem(direct_simt_kernel<TD, TH, TM, BN / 2, false, KCS>, grid, kThreads, bytes, p.stream,
                              p, tiles_h, tiles_w, halo, stage);
    } else {
      return launch_with_smem(direct_kernel<TD, TH, TW, BN>, grid, kThreads, bytes, p.stream, p, tiles_h, tiles_w,
                              halo, stage);
    }
  }

  static DirectEntry entry(const char* name) { return DirectEntry{name, &can_implement, &run}; }
};

}  // namespace direct
}  // namespace convt3d
