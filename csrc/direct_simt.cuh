// The exact-fp32 form of the tap-reuse kernel (forward and grad_input, DirectLaunch contract in
// direct_launch.h), run by DirectKernel (direct_conv.cuh) for its rows with TM > 0.
//
// Why: there is no IEEE fp32 tensor-core path, and the stock SIMT implicit GEMM re-reads every
// input element once per filter tap: it ran the headline forward at 26% of the FP32 rate. Here, as
// in the mma.sync form, a CTA stages its output tile's input halo and the filter taps in shared
// memory once per 8 reduction channels (cp.async, zero-filled out of range) and runs every tap from
// there, on FFMA (CuTe's UniversalFMA): each product rounded once, summed in a fixed order.
//
// Thread mapping: lanes l and l + 16 own the same 16 positions along w (TW = 16) for the two halves
// of the BN output channels, so a halo read is one 256-byte row shared by the halves (2 wavefronts)
// and a filter read is uniform within each half (1 wavefront). Per tap and 4 channels a warp then
// issues TM + TN 16-byte loads for 4 * TM * TN FFMAs; the halo sits in two planes of 4 channels
// ([plane][position][4]) so that consecutive positions are 16 bytes apart.
//
// Input in NDHWC, or in NCDHW (in_ncdhw: gathered 4 bytes at a time, which the FFMA-bound kernel hides,
// instead of a channels_last_3d copy of the input); output in either layout (out_ncdhw, below).
#pragma once
#include <cuda_runtime.h>

#include "cute/arch/mma.hpp"
#include "direct_atoms.cuh"

namespace convt3d {
namespace direct {

template <int TD, int TH, int TM, int TN>
__global__ void __launch_bounds__(TD * TH / TM * 32, 1)
    direct_simt_kernel(const __grid_constant__ DirectLaunch p, int tiles_h, int tiles_w, int halo_floats,
                       int stage_floats) {
  constexpr int TW = 16, KC = 8, BN = 2 * TN;
  constexpr int kThreads = TD * TH / TM * 32;
  static_assert((TD * TH) % TM == 0 && TN % 4 == 0, "tile shape");
  using Fma = cute::UniversalFMA<float, float, float, float>;
  extern __shared__ __align__(16) float smem[];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int tw = lane & 15, half = lane >> 4;
  const TileOrigin o = tile_origin(p, tiles_h, tiles_w, TD, TH, TW);
  const int n = o.n, q0d = o.q0d, q0h = o.q0h, q0w = o.q0w;
  const DirectPhase& ph = p.phase[o.phase];
  if (q0d >= ph.count[0] || q0h >= ph.count[1] || q0w >= ph.count[2]) return;
  const int co0 = blockIdx.y * BN;
  const int tz = ph.taps[0], ty = ph.taps[1], tx = ph.taps[2];
  const int ntaps = tz * ty * tx;
  const int s = p.s_in;
  const int HH = s * (TH - 1) + ty, HW = s * (TW - 1) + tx;
  const int HD = s * (TD - 1) + tz;
  const int iz0 = s * q0d + ph.dmin[0], iy0 = s * q0h + ph.dmin[1], ix0 = s * q0w + ph.dmin[2];
  const int hpos = HD * HH * HW;
  const int plane = 4 * hpos;  // floats of one 4-channel halo plane

  // Halo position of tap 0 for each of this thread's TM output rows (rows warp*TM + m of the tile).
  int base[TM];
#pragma unroll
  for (int m = 0; m < TM; ++m) {
    const int r = warp * TM + m, td = r / TH, th = r % TH;
    base[m] = ((s * td) * HH + s * th) * HW + s * tw;
  }

  float acc[TM][TN];
#pragma unroll
  for (int m = 0; m < TM; ++m)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[m][j] = 0.f;

  int* pos_of = reinterpret_cast<int*>(smem + 2 * stage_floats);
  build_halo_table(pos_of, p, hpos, HH, HW, iz0, iy0, ix0, tid, kThreads);
  __syncthreads();

  const float* in_n = p.in + (int64_t)n * p.Di * p.Hi * p.Wi * p.Cr;
  const float* wbase = p.weight + ph.w_offset;
  auto load = [&](int stage, int chunk) {
    float* hs = smem + stage * stage_floats;
    const int c = chunk * KC;
    if (p.in_ncdhw)
      stage_halo_ncdhw(p, in_n, pos_of, hpos, c, warp, lane, kThreads / 32, hs, plane);
    else
      stage_halo(p, in_n, pos_of, hpos, c, tid, kThreads, [&](int pos, int h) { return hs + h * plane + 4 * pos; });
    stage_filter<BN>(hs + halo_floats, p, wbase, co0, c, ntaps, tid, kThreads);
  };

  auto compute = [&](int stage) {
    const float* hs = smem + stage * stage_floats;
    const float* fs = hs + halo_floats + half * TN * KC;
    int t = 0;
    for (int jz = 0; jz < tz; ++jz)
      for (int jy = 0; jy < ty; ++jy) {
        const int off_zy = (jz * HH + jy) * HW;
        for (int jx = 0; jx < tx; ++jx, ++t) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            float4 a[TM];
#pragma unroll
            for (int m = 0; m < TM; ++m)
              a[m] = *reinterpret_cast<const float4*>(hs + h * plane + 4 * (base[m] + off_zy + jx));
            const float* fb = fs + t * BN * KC + 4 * h;
#pragma unroll
            for (int j = 0; j < TN; ++j) {
              const float4 b = *reinterpret_cast<const float4*>(fb + j * KC);
#pragma unroll
              for (int m = 0; m < TM; ++m) {
                Fma::fma(acc[m][j], a[m].x, b.x, acc[m][j]);
                Fma::fma(acc[m][j], a[m].y, b.y, acc[m][j]);
                Fma::fma(acc[m][j], a[m].z, b.z, acc[m][j]);
                Fma::fma(acc[m][j], a[m].w, b.w, acc[m][j]);
              }
            }
          }
        }
      }
  };

  const int nchunks = ntaps > 0 ? (p.Cr + KC - 1) / KC : 0;
  run_two_stages(0, nchunks, load, [](int) {}, [&](int stage, int) { compute(stage); });

  // NDHWC: each thread writes TN contiguous channels (16-byte stores) of each of its TM positions; the
  // two halves of a warp fill one position's BN channels. NCDHW (out_ncdhw): per channel, a half-warp
  // writes 16 consecutive positions along w (64 bytes): the kernel is FFMA-bound, so the store pattern
  // costs it nothing and the caller's transpose of the whole output goes away.
  const int64_t out_plane = (int64_t)p.Do * p.Ho * p.Wo;
#pragma unroll
  for (int m = 0; m < TM; ++m) {
    const int r = warp * TM + m;
    const int qd = q0d + r / TH, qh = q0h + r % TH, qw = q0w + tw;
    if (qd >= ph.count[0] || qh >= ph.count[1] || qw >= ph.count[2]) continue;
    const int od = ph.first[0] + p.s_out * qd, oh = ph.first[1] + p.s_out * qh, ow = ph.first[2] + p.s_out * qw;
    if (p.out_ncdhw) {
      float* dst = p.out + ((int64_t)n * p.Co * p.Do + od) * p.Ho * p.Wo + (int64_t)oh * p.Wo + ow;
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const int co = co0 + half * TN + j;
        if (co < p.Co) dst[co * out_plane] = acc[m][j] + (p.bias != nullptr ? p.bias[co] : 0.f);
      }
      continue;
    }
    float* dst = p.out + ((((int64_t)n * p.Do + od) * p.Ho + oh) * p.Wo + ow) * p.Co;
#pragma unroll
    for (int j = 0; j < TN; j += 4) {
      const int co = co0 + half * TN + j;
      if (co >= p.Co) continue;
      float4 v = make_float4(acc[m][j], acc[m][j + 1], acc[m][j + 2], acc[m][j + 3]);
      if (p.bias != nullptr) {
        v.x += p.bias[co];
        v.y += p.bias[co + 1];
        v.z += p.bias[co + 2];
        v.w += p.bias[co + 3];
      }
      *reinterpret_cast<float4*>(dst + co) = v;
    }
  }
}

}  // namespace direct
}  // namespace convt3d
