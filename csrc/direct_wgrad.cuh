// Tap-reuse ("direct") kernel for the ConvTranspose3d weight gradient (see direct_launch.h).
//
//   grad_w[kd,kh,kw][ci][co] = sum_{n, i} x[n, i, ci] * grad_y[n, s*i - p + (kd,kh,kw), co]
//
// Why not the stock wgrad: its implicit GEMM (M = C_in, N = C_out*k^3, K = positions) re-reads
// grad_y once per tap through L2. Here a CTA fixes kd and a group of (kh, kw) taps, one warp per
// tap, each warp holding its whole BM x BN block of grad_w in registers. The CTA walks a
// contiguous range of 1 x TH x TW tiles of x; per tile it stages the x tile (BM channels) and the
// grad_y halo it meets ((s*(TH-1)+k) x (s*(TW-1)+k) positions, BN channels) in shared memory once
// (cp.async, zero-filled out of range, double buffered) and every warp reads its tap's shifted
// slice from there. Each CTA writes its partial sums to its own slice of `partials`; the caller
// sums the slices in a fixed order, so the result is bitwise reproducible.
//
// Built from CuTe's SM80 atoms (SM80_CP_ASYNC_CACHEGLOBAL_ZFILL, SM80_16x8x8_F32TF32TF32F32_TN).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "direct_atoms.cuh"
#include "direct_launch.h"

namespace convt3d {
namespace direct {

constexpr int kWgradMaxWarps = 16;  // taps per CTA; more (k >= 5) split into tap groups

// Shared-memory row strides: 4 floats of padding make the fragment loads conflict-free (a quad's
// lanes tq read positions 2tq apart, 2*(C+4) = 8 mod 32 banks for C = 0 mod 16, 24 for C = 8 mod 16).
template <int TH, int TW, int BM, int BN>
struct WgradShape {
  static constexpr int kTP = TH * TW;  // x positions per tile: the reduction per tile
  static constexpr int SA = BM + 4, SB = BN + 4;  // padded row strides (see above)
  static_assert(TW % 8 == 0, "a k-step's 8 positions must lie in one tile row");
  static_assert(BM % 16 == 0 && BN % 8 == 0, "MMA tile");
  static __host__ __device__ int halo_h(int k, int s) { return s * (TH - 1) + k; }
  static __host__ __device__ int halo_w(int k, int s) { return s * (TW - 1) + k; }
  static __host__ __device__ int stage_floats(int k, int s) {
    return kTP * SA + halo_h(k, s) * halo_w(k, s) * SB;
  }
  // Two stages, then one int per halo position (its (row, column), packed).
  static __host__ __device__ size_t smem_bytes(int k, int s) {
    return (2ull * stage_floats(k, s) + halo_h(k, s) * halo_w(k, s)) * sizeof(float);
  }
};

template <int TH, int TW, int BM, int BN>
__global__ void __launch_bounds__(32 * kWgradMaxWarps)
    direct_wgrad_kernel(const __grid_constant__ DirectWgradLaunch p, int tiles_h, int tiles_w,
                        long long tiles, int ci_blocks) {
  using S = WgradShape<TH, TW, BM, BN>;
  constexpr int kTP = S::kTP, SA = S::SA, SB = S::SB;
  constexpr int kMT = BM / 16, kNT = BN / 8;
  constexpr int kASegs = kTP * (BM / 4);
  extern __shared__ __align__(16) float smem[];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nthreads = blockDim.x;
  const int g = lane >> 2, tq = lane & 3;
  const int k = p.k, s = p.stride;
  const int kd = blockIdx.z / p.tap_groups;
  const int tap = (blockIdx.z % p.tap_groups) * p.taps_per_group + warp;  // (kh, kw) of this warp
  const bool has_tap = warp < p.taps_per_group && tap < k * k;
  const int kh = has_tap ? tap / k : 0, kw = has_tap ? tap % k : 0;
  const int ci0 = (blockIdx.y % ci_blocks) * BM, co0 = (blockIdx.y / ci_blocks) * BN;
  const int HH = S::halo_h(k, s), HW = S::halo_w(k, s), hpos = HH * HW;
  const int stage_floats = S::stage_floats(k, s);
  const long long t_begin = tiles * blockIdx.x / gridDim.x, t_end = tiles * (blockIdx.x + 1) / gridDim.x;

  int* hyx = reinterpret_cast<int*>(smem + 2 * stage_floats);
  for (int i = tid; i < hpos; i += nthreads) hyx[i] = ((i / HW) << 16) | (i % HW);
  __syncthreads();

  float acc[kMT][kNT][4];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[mt][nt][i] = 0.f;

  // Tile t -> (n, id, h0, w0) of x; its grad_y plane is s*id - p + kd.
  auto tile_of = [&](long long t, int& n, int& id, int& h0, int& w0) {
    wgrad_tile_of(p, t, tiles_h, tiles_w, TH, TW, n, id, h0, w0);
  };
  auto plane_ok = [&](int id) { return (unsigned)(s * id - p.pad + kd) < (unsigned)p.Do; };

  // Per-tile bases are computed once per tile; a 16-byte segment then costs a bound check and a
  // 32-bit offset (planes of x and grad_y hold < 2^31 elements: can_implement).
  const int Hi = p.Hi, Wi = p.Wi, Ci = p.Ci, Ho = p.Ho, Wo = p.Wo, Co = p.Co;
  auto load = [&](int stage, long long t) {
    int n, id, h0, w0;
    tile_of(t, n, id, h0, w0);
    float* as = smem + stage * stage_floats;
    float* bs = as + kTP * SA;
    const float* x_plane = p.x + (((int64_t)n * p.Di + id) * Hi) * Wi * Ci + ci0;
    for (int i = tid; i < kASegs; i += nthreads) {
      const int pos = i / (BM / 4), seg = i % (BM / 4);
      const int h = h0 + pos / TW, w = w0 + pos % TW;
      const bool ok = h < Hi && w < Wi && ci0 + seg * 4 < Ci;
      copy16(ok ? x_plane + (h * Wi + w) * Ci + seg * 4 : p.x, as + pos * SA + seg * 4, ok);
    }
    const int od = s * id - p.pad + kd;
    const bool dok = (unsigned)od < (unsigned)p.Do;
    const int oh0 = s * h0 - p.pad, ow0 = s * w0 - p.pad;
    const float* gy_plane = p.gy + (((int64_t)n * p.Do + (dok ? od : 0)) * Ho) * Wo * Co + co0;
    const int bsegs = hpos * (BN / 4);
    for (int i = tid; i < bsegs; i += nthreads) {
      const int pos = i / (BN / 4), seg = i % (BN / 4);
      const int yx = hyx[pos];
      const int oh = oh0 + (yx >> 16), ow = ow0 + (yx & 0xffff);
      const bool ok = dok && (unsigned)oh < (unsigned)Ho && (unsigned)ow < (unsigned)Wo && co0 + seg * 4 < Co;
      copy16(ok ? gy_plane + (oh * Wo + ow) * Co + seg * 4 : p.gy, bs + pos * SB + seg * 4, ok);
    }
  };

  // tf32 rounding (direct::to_tf32) of this thread's own staged segments, once per tile: its cp.async
  // writes are visible to it after the wait, and no other thread touches them before the barrier.
  auto round_own = [&](int stage) {
    float* as = smem + stage * stage_floats;
    float* bs = as + kTP * SA;
    for (int i = tid; i < kASegs; i += nthreads) round4_tf32(as + (i / (BM / 4)) * SA + (i % (BM / 4)) * 4);
    const int bsegs = hpos * (BN / 4);
    for (int i = tid; i < bsegs; i += nthreads) round4_tf32(bs + (i / (BN / 4)) * SB + (i % (BN / 4)) * 4);
  };

  // Logical MMA k = tq and tq + 4 are the adjacent positions 2tq and 2tq + 1 of a k-step, for A
  // (x, rows = ci) and B (grad_y, columns = co) alike.
  auto compute = [&](int stage) {
    const float* as = smem + stage * stage_floats;
    const float* bs = as + kTP * SA + (kh * HW + kw) * SB;
#pragma unroll 4
    for (int ks = 0; ks < kTP / 8; ++ks) {
      const int p0 = ks * 8 + 2 * tq;
      const int th = p0 / TW, tw = p0 % TW;
      const float* a_lo = as + p0 * SA + g;
      const float* b_lo = bs + (s * th * HW + s * tw) * SB + g;
      uint32_t a[kMT][4];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        a[mt][0] = __float_as_uint(a_lo[mt * 16]);
        a[mt][1] = __float_as_uint(a_lo[mt * 16 + 8]);
        a[mt][2] = __float_as_uint(a_lo[SA + mt * 16]);
        a[mt][3] = __float_as_uint(a_lo[SA + mt * 16 + 8]);
      }
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt) {
        const uint32_t b0 = __float_as_uint(b_lo[nt * 8]), b1 = __float_as_uint(b_lo[s * SB + nt * 8]);
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) mma(acc[mt][nt], a[mt], b0, b1);
      }
    }
  };

  run_two_stages(t_begin, t_end, load, round_own, [&](int stage, long long t) {
    int n, id, h0, w0;
    tile_of(t, n, id, h0, w0);
    if (has_tap && plane_ok(id)) compute(stage);  // a grad_y plane out of range adds nothing
  });

  // This CTA's slice: partials[blockIdx.x][kd*k*k + tap][ci][co], every element written.
  if (!has_tap) return;
  float* dst = p.partials + ((int64_t)blockIdx.x * k * k * k + (int64_t)kd * k * k + tap) * p.Ci * p.Co;
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int hi = 0; hi < 2; ++hi) {
      const int ci = ci0 + mt * 16 + g + 8 * hi;
      if (ci >= p.Ci) continue;
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt) {
        const int co = co0 + nt * 8 + 2 * tq;  // Co % 4 == 0, so co < Co implies co + 1 < Co
        if (co < p.Co)
          *reinterpret_cast<float2*>(dst + (int64_t)ci * p.Co + co) =
              make_float2(acc[mt][nt][2 * hi], acc[mt][nt][2 * hi + 1]);
      }
    }
}

template <int TH, int TW, int BM, int BN>
struct DirectWgradKernel {
  using S = WgradShape<TH, TW, BM, BN>;

  static int can_implement(const DirectWgradLaunch& p) {
    if (p.x_ncdhw || p.gy_ncdhw) return 5;  // kErrorNotSupported: reads NDHWC x and grad_y only
    if (p.tap_groups < 1 || p.taps_per_group < 1 || p.taps_per_group > kWgradMaxWarps ||
        p.tap_groups * p.taps_per_group < p.k * p.k)
      return 4;  // kErrorInvalidProblem
    const int HH = S::halo_h(p.k, p.stride), HW = S::halo_w(p.k, p.stride);
    if (HH >= (1 << 15) || HW >= (1 << 16) || (long long)p.k * p.tap_groups > 65535) return 5;
    return wgrad_checks(p, BM, BN, S::smem_bytes(p.k, p.stride));
  }

  static int run(const DirectWgradLaunch& p) {
    int code = can_implement(p);
    if (code != 0) return code;
    const int tiles_h = (p.Hi + TH - 1) / TH, tiles_w = (p.Wi + TW - 1) / TW;
    const long long tiles = (long long)p.N * p.Di * tiles_h * tiles_w;
    const int ci_blocks = (p.Ci + BM - 1) / BM, co_blocks = (p.Co + BN - 1) / BN;
    const size_t bytes = S::smem_bytes(p.k, p.stride);
    auto kernel = direct_wgrad_kernel<TH, TW, BM, BN>;
    const dim3 grid((unsigned)p.slices, (unsigned)(ci_blocks * co_blocks), (unsigned)(p.k * p.tap_groups));
    return launch_with_smem(kernel, grid, 32 * p.taps_per_group, bytes, p.stream, p, tiles_h, tiles_w, tiles,
                            ci_blocks);
  }

  static DirectWgradEntry entry(const char* name) { return DirectWgradEntry{name, &can_implement, &run}; }
};

}  // namespace direct
}  // namespace convt3d
