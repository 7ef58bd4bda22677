// Device helpers shared by the tap-reuse kernels (direct_conv.cuh, direct_wgrad.cuh): CuTe's SM80
// cp.async and TF32 MMA atoms, and round-to-nearest tf32.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cute/arch/copy_sm80.hpp"
#include "cute/arch/mma_sm80.hpp"
#include "cute/numeric/int.hpp"
#include "direct_launch.h"
#include "launch_smem.h"

namespace convt3d {
namespace direct {

// Round to nearest tf32. The tensor cores would otherwise truncate the stored fp32 bits (7.7e-4
// error instead of cuDNN's 2.9e-4 on the headline case). On sm_90 ties go to even (cvt.rn): one
// F2FP instruction, where cvt.rna is emulated by three (a finite test, an add, a mask), and the
// rounding warps issue it for every staged element. The two differ only on exact ties, so the
// error is the same. cvt.rn leaves the 13 low bits zero and matches round-to-nearest-even on every
// fp32 bit pattern (bench/tools/tf32rn.cu, run on the H200), which 3xtf32's low part x - hi relies on.
// The sm_90 kernels' tf32 paths mostly leave it to TMA (TFLOAT32 maps, sm90_atoms.cuh f32_map_type, the same
// bits); this stays for sm_80, 3xtf32's split and the inputs whose raw values are summed.
__device__ __forceinline__ uint32_t to_tf32(float x) {
  uint32_t r;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm("cvt.rn.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
#else
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r & 0xffffe000u;
#endif
}

// Rounds 4 floats of shared memory in place.
__device__ __forceinline__ void round4_tf32(float* p) {
  float4 v = *reinterpret_cast<float4*>(p);
  v.x = __uint_as_float(to_tf32(v.x));
  v.y = __uint_as_float(to_tf32(v.y));
  v.z = __uint_as_float(to_tf32(v.z));
  v.w = __uint_as_float(to_tf32(v.w));
  *reinterpret_cast<float4*>(p) = v;
}

using Mma = cute::SM80_16x8x8_F32TF32TF32F32_TN;
using Copy16 = cute::SM80_CP_ASYNC_CACHEGLOBAL_ZFILL<cute::uint128_t>;
using Copy4 = cute::SM80_CP_ASYNC_CACHEALWAYS_ZFILL<uint32_t>;

__device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  Mma::fma(d[0], d[1], d[2], d[3], a[0], a[1], a[2], a[3], b0, b1, d[0], d[1], d[2], d[3]);
}

// 16-byte cp.async, zero-filling the destination when pred is false (src is then not read).
__device__ __forceinline__ void copy16(const float* src, float* dst, bool pred) {
  Copy16::copy(*reinterpret_cast<const cute::uint128_t*>(src), *reinterpret_cast<cute::uint128_t*>(dst),
               pred);
}

// The taps t in [0, taps) with 0 <= g + t < extent, as bits (the FFMA GEMMs' NC modes: a position's taps inside
// an NCDHW tensor along one axis, g its tap-0 coordinate).
__device__ __forceinline__ int tap_range_bits(int g, int taps, int extent) {
  const int lo = g < 0 ? -g : 0, hi = extent - g < taps ? extent - g : taps;
  return hi > lo ? (1 << hi) - (1 << lo) : 0;
}

// The FFMA implicit GEMMs' position decode (ffma_fprop.cuh's result positions, ffma_wgrad.cuh's positions of x):
// pos -> (n, and the tap-0 corner's coordinates along d, h, w in the tensor the taps read) by the args' three
// FastDivmods, stride and padding.
template <class Args, class Index>
__device__ __forceinline__ int4 tap_corner(const Args& a, Index pos) {
  int q, p, z, n, rest;
  a.div_q(rest, q, (int)pos);
  a.div_p(rest, p, rest);
  a.div_z(n, z, rest);
  return make_int4(n, z * a.stride - a.pad_d, p * a.stride - a.pad_h, q * a.stride - a.pad_w);
}

// 4-byte cp.async (a transposing gather), zero-filling the destination when pred is false.
__device__ __forceinline__ void copy4(const float* src, float* dst, bool pred) {
  Copy4::copy(*reinterpret_cast<const uint32_t*>(src), *reinterpret_cast<uint32_t*>(dst), pred);
}

// Halo position -> input position within the sample (-1: out of range, zero-filled), for a
// HD x HH x HW halo whose position (hz, hy, hx) is input (iz0, iy0, ix0) + step * (hz, hy, hx); built
// once per CTA, so the staging loops need no division per copied segment.
__device__ __forceinline__ void build_halo_table(int* pos_of, const DirectLaunch& p, int hpos, int HH, int HW, int iz0,
                                                 int iy0, int ix0, int tid, int nthreads, int step = 1) {
  for (int i = tid; i < hpos; i += nthreads) {
    const int hx = i % HW, t2 = i / HW;
    const int hy = t2 % HH, hz = t2 / HH;
    const int iz = iz0 + step * hz, iy = iy0 + step * hy, ix = ix0 + step * hx;
    const bool ok = (unsigned)iz < (unsigned)p.Di && (unsigned)iy < (unsigned)p.Hi && (unsigned)ix < (unsigned)p.Wi;
    pos_of[i] = ok ? (iz * p.Hi + iy) * p.Wi + ix : -1;
  }
}

// One chunk of KC channels (8, or 4 for the FFMA rows whose k^3 taps need the room; from channel c) of
// the halo: KC / 4 16-byte segments per position, the segment (pos, h) going to dst(pos, h); and of the
// filter taps, [tap][BN][KC] from weight blocks [tap][Co][Cr]. Zero-filled past the input, Cr and Co.
template <int KC = 8, class Dst>  // KC: 4 or 8
__device__ __forceinline__ void stage_halo(const DirectLaunch& p, const float* in_n, const int* pos_of, int hpos, int c,
                                           int tid, int nthreads, Dst dst) {
  constexpr int kShift = KC / 8;  // log2 of the 16-byte segments per position
  for (int i = tid; i < KC / 4 * hpos; i += nthreads) {
    const int q = pos_of[i >> kShift], h = i & (KC / 4 - 1), ch = c + h * 4;
    const bool ok = q >= 0 && ch < p.Cr;
    copy16(ok ? in_n + (int64_t)q * p.Cr + ch : p.in, dst(i >> kShift, h), ok);
  }
}

// The same chunk from an NCDHW input (in_n: the sample's [Cr][Di * Hi * Wi]) into the FFMA kernel's
// halo planes (channel c + 4h + j of position pos at hs[h * plane + 4 * pos + j]), 4 bytes at a time.
// Each thread keeps one channel (warps split between the KC / 4 4-channel planes), so a copy costs a
// table read and an address add; a warp step covers 8 consecutive halo positions (one 32-byte sector
// where they share an input row) of 4 channels, whose 32 writes hit 32 banks (lanes along positions of
// one channel would hit 8). With two planes an odd last warp stays out.
template <int KC = 8>
__device__ __forceinline__ void stage_halo_ncdhw(const DirectLaunch& p, const float* in_n, const int* pos_of, int hpos,
                                                 int c, int warp, int lane, int nwarps, float* hs, int plane) {
  constexpr int kShift = KC / 8;
  const int pairs = nwarps >> kShift, h = warp & (KC / 4 - 1), wg = warp >> kShift;
  if (wg >= pairs) return;
  const int ch = c + h * 4 + (lane & 3);
  const bool ch_ok = ch < p.Cr;
  const float* src = in_n + (int64_t)(ch_ok ? ch : 0) * p.Di * p.Hi * p.Wi;
  float* d = hs + h * plane + (lane & 3);
#pragma unroll 4
  for (int pos = wg * 8 + (lane >> 2); pos < hpos; pos += pairs * 8) {
    const int q = pos_of[pos];
    const bool ok = ch_ok && q >= 0;
    copy4(ok ? src + q : p.in, d + 4 * pos, ok);
  }
}

template <int BN, int KC = 8>
__device__ __forceinline__ void stage_filter(float* fs, const DirectLaunch& p, const float* wbase, int co0, int c,
                                             int ntaps, int tid, int nthreads) {
  constexpr int kShift = KC / 8;
  for (int i = tid; i < ntaps * BN * (KC / 4); i += nthreads) {
    const int h = i & (KC / 4 - 1), nn = (i >> kShift) % BN, t = (i >> kShift) / BN;
    const int co = co0 + nn, ch = c + h * 4;
    const bool ok = co < p.Co && ch < p.Cr;
    copy16(ok ? wbase + ((int64_t)t * p.Co + co) * p.Cr + ch : p.weight, fs + (t * BN + nn) * KC + h * 4, ok);
  }
}

// Two-stage cp.async pipeline over steps [begin, end): load(stage, step) issues a step's copies,
// own(stage) may then touch this thread's own copied segments (its writes are visible to it after
// the wait), and compute(stage, step) runs between the CTA barriers.
template <class Index, class Load, class Own, class Compute>
__device__ __forceinline__ void run_two_stages(Index begin, Index end, Load load, Own own, Compute compute) {
  if (begin < end) {
    load(0, begin);
    cute::cp_async_fence();
  }
  for (Index t = begin; t < end; ++t) {
    const int stage = (int)((t - begin) & 1);
    if (t + 1 < end) load(stage ^ 1, t + 1);
    cute::cp_async_fence();
    cute::cp_async_wait<1>();
    own(stage);
    __syncthreads();
    compute(stage, t);
    __syncthreads();
  }
}

// Stages-deep cp.async pipeline over k_tiles steps (the FFMA implicit GEMMs, ffma_fprop.cuh and ffma_wgrad.cuh):
// load(stage, step) issues a step's copies Stages - 1 steps ahead, compute(stage) runs once the step has landed for
// every thread; one barrier a step, which also frees the stage the next load refills.
template <int Stages, class Load, class Compute>
__device__ __forceinline__ void run_stages(int k_tiles, Load load, Compute compute) {
#pragma unroll
  for (int st = 0; st < Stages - 1; ++st) {
    if (st < k_tiles) load(st, st);
    cute::cp_async_fence();
  }
  for (int kt = 0; kt < k_tiles; ++kt) {
    cute::cp_async_wait<Stages - 2>();
    __syncthreads();  // tile kt landed for every thread, and tile kt - 1's stage is free to refill
    const int next = kt + Stages - 1;
    if (next < k_tiles) load(next % Stages, next);
    cute::cp_async_fence();
    compute(kt % Stages);
  }
  cute::cp_async_wait<0>();
}

// Zeroes the FFMA implicit GEMMs' 8 x 8 thread tile.
__device__ __forceinline__ void zero_acc(float (&acc)[8][8]) {
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;
}

// One 4-deep k step of the FFMA implicit GEMMs' 8 x 8 thread tile with both operands K-major in shared memory
// (ffma_fprop.cuh's channels_last_3d kernel, ffma_wgrad.cuh's NC piece): rows as + RowStep i, columns bs + (j / 4)
// (BN / 2) + j % 4, row pitch LDK floats. Fma is passed in so both keep cute's UniversalFMA.
template <class Fma, int RowStep, int BN, int LDK>
__device__ __forceinline__ void ffma_kmajor_step(float (&acc)[8][8], const float* as, const float* bs, int kq) {
  float4 bv[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) bv[j] = *reinterpret_cast<const float4*>(bs + ((j / 4) * (BN / 2) + j % 4) * LDK + kq);
#pragma unroll
  for (int h = 0; h < 2; ++h) {  // four rows at a time: 16 registers of A beside B's 32
    float4 av[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) av[i] = *reinterpret_cast<const float4*>(as + (4 * h + i) * RowStep * LDK + kq);
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        float& o = acc[4 * h + i][j];
        Fma::fma(o, av[i].x, bv[j].x, o);
        Fma::fma(o, av[i].y, bv[j].y, o);
        Fma::fma(o, av[i].z, bv[j].z, o);
        Fma::fma(o, av[i].w, bv[j].w, o);
      }
  }
}

// x tile t (w fastest, then h, depth, sample) of the weight-gradient kernels' walk over 1 x th x tw tiles.
__device__ __forceinline__ void wgrad_tile_of(const DirectWgradLaunch& p, long long t, int tiles_h, int tiles_w, int th,
                                              int tw, int& n, int& id, int& h0, int& w0) {
  w0 = (int)(t % tiles_w) * tw;
  long long r = t / tiles_w;
  h0 = (int)(r % tiles_h) * th;
  r /= tiles_h;
  id = (int)(r % p.Di);
  n = (int)(r / p.Di);
}

// The CTA's sample, phase and first output position (per phase) from the grid of the forward /
// grad_input kernels: blockIdx.z = n * phases + phase; blockIdx.x walks TD x TH x TW tiles, w fastest.
struct TileOrigin {
  int n, phase, q0d, q0h, q0w;
};

// Tile `tile` (w fastest) of sample-and-phase index z = n * phases + phase.
__device__ __forceinline__ TileOrigin tile_origin_at(const DirectLaunch& p, int tile, int z, int tiles_h, int tiles_w,
                                                     int td, int th, int tw) {
  TileOrigin o;
  o.phase = z % p.num_phases;
  o.n = z / p.num_phases;
  o.q0w = (tile % tiles_w) * tw;
  o.q0h = ((tile / tiles_w) % tiles_h) * th;
  o.q0d = (tile / (tiles_w * tiles_h)) * td;
  return o;
}

__device__ __forceinline__ TileOrigin tile_origin(const DirectLaunch& p, int tiles_h, int tiles_w, int td, int th,
                                                  int tw) {
  return tile_origin_at(p, blockIdx.x, blockIdx.z, tiles_h, tiles_w, td, th, tw);
}

// A phase's halo as one output tile of TD x TH x TW positions sees it: taps per axis, the halo box
// (output positions `so` halo positions apart, taps one apart) and the input position of its first
// element (the kernels' tile origin q0 times s_in, plus the phase's dmin).
struct HaloBox {
  int tz, ty, tx, ntaps, HH, HW, hpos, iz0, iy0, ix0;
};

template <int TD, int TH, int TW>
__device__ __forceinline__ HaloBox halo_box(const DirectPhase& ph, int s, int so, int q0d, int q0h, int q0w) {
  HaloBox g;
  g.tz = ph.taps[0], g.ty = ph.taps[1], g.tx = ph.taps[2];
  g.ntaps = g.tz * g.ty * g.tx;
  g.HH = so * (TH - 1) + g.ty, g.HW = so * (TW - 1) + g.tx;
  g.hpos = (so * (TD - 1) + g.tz) * g.HH * g.HW;
  g.iz0 = s * q0d + ph.dmin[0], g.iy0 = s * q0h + ph.dmin[1], g.ix0 = s * q0w + ph.dmin[2];
  return g;
}

// The checks the weight-gradient launchers share (0 or a cutlass::Status value): 16-byte channel
// copies, 32-bit plane offsets, the grid's y extent, the launch's own fields and the shared memory.
inline int wgrad_checks(const DirectWgradLaunch& p, int bm, int bn, size_t smem_bytes) {
  if (p.Ci % 4 != 0 || p.Co % 4 != 0) return 1;  // kErrorMisalignedOperand
  if (p.k < 1 || p.stride < 1 || p.pad < 0 || p.slices < 1) return 4;  // kErrorInvalidProblem
  if ((long long)p.Hi * p.Wi * p.Ci > 0x7fffffffLL || (long long)p.Ho * p.Wo * p.Co > 0x7fffffffLL) return 5;
  const long long ci_blocks = (p.Ci + bm - 1) / bm, co_blocks = (p.Co + bn - 1) / bn;
  if (ci_blocks * co_blocks > 65535) return 5;
  return smem_fits(smem_bytes);
}

}  // namespace direct
}  // namespace convt3d
