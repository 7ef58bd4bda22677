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

// kSum (p.sum_phases): the CTA adds every phase into its output tile (blockIdx.z = n), walking
// (phase, channel chunk) pairs; each phase's halo holds every s_in-th input position (its parity), so
// the output positions are one halo position apart. Else blockIdx.z = n * phases + phase and the halo
// is dense, output positions s_in apart.
// KC: reduction channels per stage, 8, or 4 where a k = 5 filter's 125 taps of 8 channels and the
// halo would not fit two stages (the _c4 rows).
template <int TD, int TH, int TM, int TN, bool kSum, int KC = 8>
__global__ void __launch_bounds__(TD * TH / TM * 32, 1)
    direct_simt_kernel(const __grid_constant__ DirectLaunch p, int tiles_h, int tiles_w, int halo_floats,
                       int stage_floats) {
  constexpr int TW = 16, BN = 2 * TN, kPlanes = KC / 4;
  static_assert(KC == 4 || KC == 8, "one or two planes of 4 channels");
  constexpr int kThreads = TD * TH / TM * 32;
  static_assert((TD * TH) % TM == 0 && TN % 4 == 0, "tile shape");
  using Fma = cute::UniversalFMA<float, float, float, float>;
  extern __shared__ __align__(16) float smem[];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int tw = lane & 15, half = lane >> 4;
  // A strided forward writing NCDHW: a phase's outputs are s_out apart along w, so the other parts of
  // each 32-byte sector it writes belong to its sibling phases. Their CTAs are then taken phase-fastest
  // in launch order (a permutation of the same grid), so that the parts meet in L2 instead of going to
  // DRAM as partial sectors.
  unsigned bx = blockIdx.x, by = blockIdx.y, bz = blockIdx.z;
  if (!kSum && p.out_ncdhw && p.s_out > 1) {
    const unsigned phases = p.num_phases;
    unsigned rest = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const unsigned phase = rest % phases;
    rest /= phases;
    bx = rest % gridDim.x;
    rest /= gridDim.x;
    by = rest % gridDim.y;
    bz = rest / gridDim.y * phases + phase;
  }
  // kSum: a grid z of n alone (phase 0 gives the output extent).
  const TileOrigin o = tile_origin_at(p, bx, kSum ? bz * p.num_phases : bz, tiles_h, tiles_w, TD, TH, TW);
  const int n = o.n, q0d = o.q0d, q0h = o.q0h, q0w = o.q0w;
  const DirectPhase& ph = p.phase[o.phase];
  if (q0d >= ph.count[0] || q0h >= ph.count[1] || q0w >= ph.count[2]) return;
  const int co0 = by * BN;
  const int s = p.s_in, so = kSum ? 1 : s;
  const int table_ints = halo_floats / KC;  // one phase's table (the largest halo)
  const int cpc = (p.Cr + KC - 1) / KC;      // channel chunks per phase

  // Halo position of tap 0 for each of this thread's TM output rows (rows warp*TM + m of the tile).
  auto bases = [&](const HaloBox& g, int (&base)[TM]) {
#pragma unroll
    for (int m = 0; m < TM; ++m) {
      const int r = warp * TM + m, td = r / TH, th = r % TH;
      base[m] = ((so * td) * g.HH + so * th) * g.HW + so * tw;
    }
  };
  const HaloBox g0 = halo_box<TD, TH, TW>(ph, s, so, q0d, q0h, q0w);
  int base0[TM];
  bases(g0, base0);

  float acc[TM][TN];
#pragma unroll
  for (int m = 0; m < TM; ++m)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[m][j] = 0.f;

  int* tables = reinterpret_cast<int*>(smem + 2 * stage_floats);
  if constexpr (kSum) {
    for (int i = 0; i < p.num_phases; ++i) {
      const HaloBox g = halo_box<TD, TH, TW>(p.phase[i], s, so, q0d, q0h, q0w);
      build_halo_table(tables + i * table_ints, p, g.hpos, g.HH, g.HW, g.iz0, g.iy0, g.ix0, tid, kThreads, s);
    }
  } else {
    build_halo_table(tables, p, g0.hpos, g0.HH, g0.HW, g0.iz0, g0.iy0, g0.ix0, tid, kThreads);
  }
  __syncthreads();

  const float* in_n = p.in + (int64_t)n * p.Di * p.Hi * p.Wi * p.Cr;
  // Step t: chunk t of the CTA's phase, or (kSum) chunk t % cpc of phase t / cpc.
  auto load = [&](int stage, int t) {
    const int pi = kSum ? t / cpc : 0;
    const DirectPhase& pht = kSum ? p.phase[pi] : ph;
    const HaloBox g = kSum ? halo_box<TD, TH, TW>(pht, s, so, q0d, q0h, q0w) : g0;
    if (kSum && g.ntaps == 0) return;  // k < stride: a parity no tap reads
    const int* pos_of = tables + pi * table_ints;
    float* hs = smem + stage * stage_floats;
    const int c = (kSum ? t % cpc : t) * KC, plane = 4 * g.hpos;
    if (p.in_ncdhw)
      stage_halo_ncdhw<KC>(p, in_n, pos_of, g.hpos, c, warp, lane, kThreads / 32, hs, plane);
    else
      stage_halo<KC>(p, in_n, pos_of, g.hpos, c, tid, kThreads,
                     [&](int pos, int h) { return hs + h * plane + 4 * pos; });
    stage_filter<BN, KC>(hs + halo_floats, p, p.weight + pht.w_offset, co0, c, g.ntaps, tid, kThreads);
  };

  auto compute = [&](int stage, const HaloBox& g, const int (&base)[TM]) {
    const float* hs = smem + stage * stage_floats;
    const float* fs = hs + halo_floats + half * TN * KC;
    const int plane = 4 * g.hpos;
    int t = 0;
    for (int jz = 0; jz < g.tz; ++jz)
      for (int jy = 0; jy < g.ty; ++jy) {
        const int off_zy = (jz * g.HH + jy) * g.HW;
        for (int jx = 0; jx < g.tx; ++jx, ++t) {
#pragma unroll
          for (int h = 0; h < kPlanes; ++h) {
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

  const int nchunks = kSum ? p.num_phases * cpc : (g0.ntaps > 0 ? cpc : 0);
  run_two_stages(0, nchunks, load, [](int) {}, [&](int stage, int t) {
    if constexpr (kSum) {
      const HaloBox g = halo_box<TD, TH, TW>(p.phase[t / cpc], s, so, q0d, q0h, q0w);
      int base[TM];
      bases(g, base);
      compute(stage, g, base);
    } else {
      compute(stage, g0, base0);
    }
  });

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
