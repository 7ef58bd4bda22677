// The exact-fp32 form of the tap-reuse weight gradient (DirectWgradLaunch, direct_launch.h), k = 3.
//
//   partials[slice][(kd*3 + kh)*3 + kw][ci][co] = sum over the slice's x tiles of
//       x[n, i, ci] * grad_y[n, s*i - p + (kd, kh, kw), co]
//
// Why: the stock SIMT wgrad re-reads grad_y once per tap through L2 and ran the headline at 25% of
// the FP32 rate. As in the mma.sync form (direct_wgrad.cuh), a CTA walks a contiguous range of
// 1 x TH x TW tiles of x and stages each tile with the grad_y halo it meets (here all three kd planes)
// in shared memory once (cp.async, zero-filled out of range, double buffered); the CTA's slice of
// partial sums is summed by the caller in a fixed order (bitwise reproducible).
//
// x and grad_y in NDHWC, or in NCDHW (x_ncdhw, gy_ncdhw: gathered 4 bytes at a time instead of
// channels_last_3d copies; the FFMA-bound kernel hides the gathers where their shared-memory writes are
// free of bank conflicts, see XS and GS).
//
// FFMA (CuTe's UniversalFMA), S warps per (kd, kh), each on 8 A of the block's input channels: all
// lanes walk the same positions, lane (cg, og) owning A input channels x B output channels of all three
// kw taps, so one x value feeds 3*B products and every shared-memory read is a broadcast of at most 8
// (x) or 4 (grad_y) distinct words of up to 16 bytes: one wavefront each.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cute/arch/mma.hpp"
#include "direct_atoms.cuh"
#include "direct_launch.h"

namespace convt3d {
namespace direct {

// S warps per (kd, kh), splitting the block's input channels: with S = 1 nine warps put three on one
// scheduler and two on the others, so that one sets the pace; with S = 2 it is five against four.
template <int TH, int TW, int A, int B, int S = 1>
struct SimtWgradShape {
  static constexpr int K = 3, BM = 8 * A * S, BN = 4 * B, kTP = TH * TW, kWarps = K * K * S;
  // x tile row stride (floats): 4 mod 8, so that the NCDHW gather's 8 positions x 4 channels per warp
  // step write 32 distinct banks (at BM = 48 lanes along positions hit 2).
  static constexpr int XS = BM + 4;
  static_assert(XS % 8 == 4, "x tile row stride");
  // grad_y halo row stride, 4 mod 8 for the same reason (its NCDHW gather).
  static constexpr int GS = BN + 4;
  static_assert(GS % 8 == 4, "grad_y halo row stride");
  static __host__ __device__ int halo_h(int s) { return s * (TH - 1) + K; }
  static __host__ __device__ int halo_w(int s) { return s * (TW - 1) + K; }
  static __host__ __device__ int stage_floats(int s) { return kTP * XS + K * halo_h(s) * halo_w(s) * GS; }
  // Two stages, then one int per halo position of a plane (its (row, column), packed).
  static __host__ __device__ size_t smem_bytes(int s) {
    return (2ull * stage_floats(s) + halo_h(s) * halo_w(s)) * sizeof(float);
  }
};

// N floats from shared memory: 16-byte loads where N allows (src 16-byte aligned), 8-byte loads for
// even N (src 8-byte aligned), else 4-byte loads.
template <int N>
__device__ __forceinline__ void load_row(float (&v)[N], const float* src) {
  if constexpr (N % 2 != 0) {
#pragma unroll
    for (int i = 0; i < N; ++i) v[i] = src[i];
  } else if constexpr (N % 4 == 0) {
#pragma unroll
    for (int i = 0; i < N; i += 4) {
      const float4 t = *reinterpret_cast<const float4*>(src + i);
      v[i] = t.x, v[i + 1] = t.y, v[i + 2] = t.z, v[i + 3] = t.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < N; i += 2) {
      const float2 t = *reinterpret_cast<const float2*>(src + i);
      v[i] = t.x, v[i + 1] = t.y;
    }
  }
}

template <int TH, int TW, int A, int B, int SP, int MB>
__global__ void __launch_bounds__(SimtWgradShape<TH, TW, A, B, SP>::kWarps * 32, MB)
    direct_wgrad_simt_kernel(const __grid_constant__ DirectWgradLaunch p, int tiles_h, int tiles_w, long long tiles,
                             int ci_blocks) {
  using S = SimtWgradShape<TH, TW, A, B, SP>;
  constexpr int K = S::K, BM = S::BM, BN = S::BN, kTP = S::kTP, XS = S::XS, GS = S::GS;
  static_assert(kTP % 8 == 0 && kTP / 8 <= S::kWarps && BM % 4 == 0, "x tile: a warp per 8 positions");
  using Fma = cute::UniversalFMA<float, float, float, float>;
  extern __shared__ __align__(16) float smem[];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  constexpr int nthreads = S::kWarps * 32;
  const int cg = lane >> 2, og = lane & 3;
  const int kd = (warp % (K * K)) / K, kh = warp % K, part = warp / (K * K);
  const int cl = part * 8 * A + cg * A;  // this lane's first channel within the block
  const int s = p.stride;
  const int ci0 = (blockIdx.y % ci_blocks) * BM, co0 = (blockIdx.y / ci_blocks) * BN;
  const int HH = S::halo_h(s), HW = S::halo_w(s), hpos = HH * HW;
  const int stage_floats = S::stage_floats(s);
  const long long t_begin = tiles * blockIdx.x / gridDim.x, t_end = tiles * (blockIdx.x + 1) / gridDim.x;

  int* hyx = reinterpret_cast<int*>(smem + 2 * stage_floats);
  for (int i = tid; i < hpos; i += nthreads) hyx[i] = ((i / HW) << 16) | (i % HW);
  __syncthreads();

  float acc[K][A][B];
#pragma unroll
  for (int kw = 0; kw < K; ++kw)
#pragma unroll
    for (int a = 0; a < A; ++a)
#pragma unroll
      for (int b = 0; b < B; ++b) acc[kw][a][b] = 0.f;

  auto tile_of = [&](long long t, int& n, int& id, int& h0, int& w0) {
    wgrad_tile_of(p, t, tiles_h, tiles_w, TH, TW, n, id, h0, w0);
  };

  const int Hi = p.Hi, Wi = p.Wi, Ci = p.Ci, Ho = p.Ho, Wo = p.Wo, Co = p.Co;
  auto load = [&](int stage, long long t) {
    int n, id, h0, w0;
    tile_of(t, n, id, h0, w0);
    float* as = smem + stage * stage_floats;
    float* bs = as + kTP * XS;
    if (p.x_ncdhw) {
      // x read in its NCDHW storage into the tile's [position][channel] layout, 4 bytes at a time. Warp
      // g < kTP / 8 keeps 8 consecutive positions (32 bytes of one channel's row) and walks the channels
      // 4 at a time, so a copy costs an address add.
      if (warp < kTP / 8) {
        const int64_t cstride = (int64_t)p.Di * Hi * Wi;
        const int pos = warp * 8 + (lane >> 2), h = h0 + pos / TW, w = w0 + pos % TW;
        const bool pos_ok = h < Hi && w < Wi;
        const float* src = p.x + ((int64_t)n * Ci + ci0 + (lane & 3)) * cstride + ((int64_t)id * Hi + h) * Wi + w;
        float* d = as + pos * XS + (lane & 3);
#pragma unroll
        for (int c = 0; c < BM; c += 4) {
          const bool ok = pos_ok && ci0 + c + (lane & 3) < Ci;
          copy4(ok ? src + c * cstride : p.x, d + c, ok);
        }
      }
    } else {
      const float* x_plane = p.x + (((int64_t)n * p.Di + id) * Hi) * Wi * Ci + ci0;
      for (int i = tid; i < kTP * (BM / 4); i += nthreads) {
        const int pos = i / (BM / 4), seg = i % (BM / 4);
        const int h = h0 + pos / TW, w = w0 + pos % TW;
        const bool ok = h < Hi && w < Wi && ci0 + seg * 4 < Ci;
        copy16(ok ? x_plane + (h * Wi + w) * Ci + seg * 4 : p.x, as + pos * XS + seg * 4, ok);
      }
    }
    const int od0 = s * id - p.pad, oh0 = s * h0 - p.pad, ow0 = s * w0 - p.pad;
    if (p.gy_ncdhw) {
      // grad_y read in its NCDHW storage, as x above: a warp keeps 8 consecutive halo positions and
      // walks the channels 4 at a time.
      const int64_t cplane = (int64_t)p.Do * Ho * Wo;
      const float* gy_c = p.gy + ((int64_t)n * Co + co0 + (lane & 3)) * cplane;
      for (int g = warp; g * 8 < K * hpos; g += S::kWarps) {
        const int pos = g * 8 + (lane >> 2);
        if (pos >= K * hpos) continue;
        const int od = od0 + pos / hpos, yx = hyx[pos % hpos];
        const int oh = oh0 + (yx >> 16), ow = ow0 + (yx & 0xffff);
        const bool pos_ok = (unsigned)od < (unsigned)p.Do && (unsigned)oh < (unsigned)Ho && (unsigned)ow < (unsigned)Wo;
        const float* src = gy_c + ((int64_t)od * Ho + oh) * Wo + ow;
        float* d = bs + pos * GS + (lane & 3);
#pragma unroll
        for (int c = 0; c < BN; c += 4) {
          const bool ok = pos_ok && co0 + c + (lane & 3) < Co;
          copy4(ok ? src + c * cplane : p.gy, d + c, ok);
        }
      }
      return;
    }
    const float* gy_n = p.gy + (int64_t)n * p.Do * Ho * Wo * Co + co0;
    for (int i = tid; i < K * hpos * (BN / 4); i += nthreads) {
      const int pos = i / (BN / 4), seg = i % (BN / 4);
      const int od = od0 + pos / hpos, yx = hyx[pos % hpos];
      const int oh = oh0 + (yx >> 16), ow = ow0 + (yx & 0xffff);
      const bool ok = (unsigned)od < (unsigned)p.Do && (unsigned)oh < (unsigned)Ho && (unsigned)ow < (unsigned)Wo &&
                      co0 + seg * 4 < Co;
      copy16(ok ? gy_n + (((int64_t)od * Ho + oh) * Wo + ow) * Co + seg * 4 : p.gy, bs + pos * GS + seg * 4, ok);
    }
  };

  auto fma_row = [&](float (&acc_kw)[A][B], const float (&xa)[A], const float (&gb)[B]) {
#pragma unroll
    for (int a = 0; a < A; ++a)
#pragma unroll
      for (int b = 0; b < B; ++b) Fma::fma(acc_kw[a][b], xa[a], gb[b], acc_kw[a][b]);
  };

  auto compute = [&](int stage) {
    const float* xs = smem + stage * stage_floats + cl;
    const float* gs = smem + stage * stage_floats + kTP * XS + (kd * HH + kh) * HW * GS + og * B;
    if (s == 1) {
      // Along a tile row the three kw taps read a window of grad_y that slides by one position: kept
      // in registers, each position loads one new grad_y row instead of three.
#pragma unroll 1
      for (int th = 0; th < TH; ++th) {
        const float* xrow = xs + th * TW * XS;
        const float* grow = gs + th * HW * GS;
        float g0[B], g1[B], g2[B];
        load_row(g0, grow);
        load_row(g1, grow + GS);
#pragma unroll
        for (int tw = 0; tw < TW; ++tw) {
          float xa[A];
          load_row(xa, xrow + tw * XS);
          load_row(g2, grow + (tw + 2) * GS);
          fma_row(acc[0], xa, g0);
          fma_row(acc[1], xa, g1);
          fma_row(acc[2], xa, g2);
#pragma unroll
          for (int b = 0; b < B; ++b) g0[b] = g1[b], g1[b] = g2[b];
        }
      }
      return;
    }
#pragma unroll 1
    for (int pos = 0; pos < kTP; ++pos) {
      const int th = pos / TW, tw = pos % TW;
      float xa[A];
      load_row(xa, xs + pos * XS);
      const float* g = gs + (s * th * HW + s * tw) * GS;
#pragma unroll
      for (int kw = 0; kw < K; ++kw) {
        float gb[B];
        load_row(gb, g + kw * GS);
        fma_row(acc[kw], xa, gb);
      }
    }
  };

  run_two_stages(t_begin, t_end, load, [](int) {}, [&](int stage, long long t) {
    int n, id, h0, w0;
    tile_of(t, n, id, h0, w0);
    if ((unsigned)(s * id - p.pad + kd) < (unsigned)p.Do) compute(stage);  // else its plane adds nothing
  });

  // This CTA's slice: partials[blockIdx.x][(kd*3 + kh)*3 + kw][ci][co], every element of its block.
  float* dst = p.partials + ((int64_t)blockIdx.x * K * K * K + (kd * K + kh) * K) * Ci * Co;
#pragma unroll
  for (int kw = 0; kw < K; ++kw)
#pragma unroll
    for (int a = 0; a < A; ++a) {
      const int ci = ci0 + cl + a;
      if (ci >= Ci) continue;
#pragma unroll
      for (int b = 0; b < B; b += 2) {
        const int co = co0 + og * B + b;  // even, and Co % 4 == 0: co < Co implies co + 1 < Co
        if (co < Co)
          *reinterpret_cast<float2*>(dst + ((int64_t)kw * Ci + ci) * Co + co) =
              make_float2(acc[kw][a][b], acc[kw][a][b + 1]);
      }
    }
}

// MB: CTAs per SM that __launch_bounds__ caps the registers for. A narrow block (A x B = 4 x 2: 24 sums per lane)
// otherwise gets 138 registers and one CTA of nine warps per SM, too few to hide its shared loads' latency.
template <int TH, int TW, int A, int B, int SP = 1, int MB = 1>
struct DirectWgradSimtKernel {
  using S = SimtWgradShape<TH, TW, A, B, SP>;

  static int can_implement(const DirectWgradLaunch& p) {
    if (p.k != S::K) return 5;  // kErrorNotSupported: the kw taps live in registers, k = 3 only
    if ((long long)p.Di * p.Hi * p.Wi > 0x7fffffffLL || (long long)S::halo_w(p.stride) >= (1 << 16)) return 5;
    return wgrad_checks(p, S::BM, S::BN, S::smem_bytes(p.stride));
  }

  static int run(const DirectWgradLaunch& p) {
    int code = can_implement(p);
    if (code != 0) return code;
    const int tiles_h = (p.Hi + TH - 1) / TH, tiles_w = (p.Wi + TW - 1) / TW;
    const long long tiles = (long long)p.N * p.Di * tiles_h * tiles_w;
    const int ci_blocks = (p.Ci + S::BM - 1) / S::BM, co_blocks = (p.Co + S::BN - 1) / S::BN;
    const dim3 grid((unsigned)p.slices, (unsigned)(ci_blocks * co_blocks), 1u);
    return launch_with_smem(direct_wgrad_simt_kernel<TH, TW, A, B, SP, MB>, grid, S::kWarps * 32, S::smem_bytes(p.stride),
                            p.stream, p, tiles_h, tiles_w, tiles, ci_blocks);
  }

  static DirectWgradEntry entry(const char* name) { return DirectWgradEntry{name, &can_implement, &run}; }
};

}  // namespace direct
}  // namespace convt3d
