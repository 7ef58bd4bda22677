// Hopper form of the tap-reuse kernel (same contract as direct_conv.cuh, see direct_launch.h), for
// unit input stride: the ConvTranspose3d forward at any stride (one phase per output residue) and
// grad_input at stride 1.
//
// Why a second kernel: the mma.sync form is bound by instruction issue (14 warp instructions per
// m16n8k8, docs/performance.md). Here the tensor cores read both operands from shared memory
// (SS-wgmma) and one thread stages them with TMA, so the MMA warps issue almost nothing else.
//
// The kw fold: a halo row of HALO_W = 16 input positions along w makes the A operand of one
// (kd, kh) tap for 4 output rows a dense, K-major 64 x 8 tile of the halo, read by descriptor offset
// (no gather); B is the tap's [kw][co] block, so GEMM N = KX * BN and the accumulator holds, per
// halo position u, the partial sums of every kw. The epilogue adds them shifted:
//   out[w][co] = sum_kx P[w + kx][kx * BN + co],  w < TW = 16 - KX + 1.
// Staging: per chunk of 8 channels (one k8 step, a 32-byte row), one TMA box of the halo
// (OOB zero fill gives the padding and channel tails) and one box per (kd, kh) of the filter, 32-byte
// swizzled as wgmma's SW32 K-major layout expects, on an mbarrier per stage. The halo is rounded to
// tf32 (direct::to_tf32: cvt.rn on sm_90) in place before the MMAs read it (in tf32 TMA has rounded it already,
// a TFLOAT32 map: the same bits); the host pre-rounds the weight.
//
// Built from CuTe/CUTLASS parts: SM90_TMA_LOAD_{3,5}D, the SM90 GMMA TF32 SS atoms,
// GmmaDescriptor and ClusterTransactionBarrier. sm_90a only (the TU is compiled for nothing else).
#pragma once
#include <cuda.h>
#include <cudaTypedefs.h>
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

constexpr int KC = 8;       // reduction channels per stage: one k8 wgmma step, 32 bytes
constexpr int HALO_W = 16;  // halo positions per row: 4 rows make one 64-row A tile
constexpr int ROW_BYTES = KC * 4;

template <int N>
struct Gmma;
#define CONVT3D_GMMA_N(N)                                                   \
  template <>                                                               \
  struct Gmma<N> {                                                          \
    using Op = cute::SM90::GMMA::MMA_64x##N##x8_F32TF32TF32_SS_TN<>;        \
  };
CONVT3D_GMMA_N(24)
CONVT3D_GMMA_N(48)
CONVT3D_GMMA_N(72)
CONVT3D_GMMA_N(80)
CONVT3D_GMMA_N(96)
CONVT3D_GMMA_N(144)
CONVT3D_GMMA_N(160)
CONVT3D_GMMA_N(192)
#undef CONVT3D_GMMA_N

template <class Op, int NA, size_t... I>
__device__ __forceinline__ void gmma(uint64_t da, uint64_t db, float (&d)[NA], std::index_sequence<I...>) {
  Op::fma(da, db, d[I]...);
}

// Per-launch sizes the host derives from the phase table.
struct Geometry {
  int tiles_d, tiles_h, tiles_w;
  int HD, HH;          // halo box depth and height (the largest phase's)
  int halo_bytes;      // HD * HH * HALO_W rows of 32 bytes
  int stage_bytes;     // halo + every (kd, kh) filter block, rounded to 1 KiB (resident filter: halo only)
  int stages;          // min(S, channel chunks)
  int resident;        // warp-specialized form: the whole filter of a (phase, C_out block) stays in shared memory
  int filter_bytes;    // its size: chunks x (kd, kh) blocks
  int lo_tap;          // 3xtf32: the filter's low parts start this many taps after its high parts
  int raw_bytes;       // NCDHW input (ws form): one box of 4 channels as TMA lands it, [c][raw_hd][raw_hh][RAW_W]
  int raw_stride;      // its buffer, 1 KiB aligned
  int raw_offset;      // the raw ring's offset: after the stages and the filter, 1 KiB aligned
  int wgroup;          // ws form: w-neighbour tiles a CTA takes in turn (see walk_next; 1: one at a time)
  int tw;              // ws form with a w fold (WF): halo positions per tile along w whose outputs it stores
  // ws form, one unit-stride phase (see wcarry_tiles): 1 = tiles of HALO_W input positions along w, each CTA
  // walking a whole row of them (wgroup = tiles_w) and handing the partial sums of the outputs whose taps span
  // two tiles to the next one in registers; 0 = tiles of TW outputs, overlapping by KX - 1 halo positions.
  int wcarry;
  int raw_hd, raw_hh;  // its planes and rows: HD and HH, padded in the RS form (see raw_box_dims)
  // NCDHW input whose rows are not 16-byte multiples (W % 4 != 0; the ring form only): TMA cannot step
  // along h, so each halo row (hh) is its own box of a map whose innermost axis is a plane's H x W positions
  // (16-byte strides where H * W % 4 == 0), landed [hh][c][raw_hd][RAW_W], raw_row_pitch bytes apart (128-byte
  // aligned TMA destinations). The rounders mask the positions outside [0, W) of each row (a box runs into the
  // neighbouring rows there). 0: one box of [c][raw_hd][raw_hh][RAW_W].
  int raw_rows, raw_row_pitch;
};

// The ws form's walk over work units: CTA b takes units b, b + grid, ... (G = 1), or groups of G w-neighbour
// tiles in turn, so that an NCDHW epilogue can hand the 32-byte sector where two tiles meet from one tile to
// the next (the group starts on a sector: G * TW % 8 == 0). Every role walks the same units.
// Groups (G > 1, ROT: the NCDHW epilogue's instantiations): wave k's groups k * grid + r go to CTA
// (r - k) mod grid, a rotation by one per wave. Why: a row's last group is short (7 tiles of 14 in groups of
// 4: 4 + 3), and with grid and groups per row both even a fixed stride hands every short group to the same
// half of the CTAs, which then idle for the last quarter of the kernel (ncu, headline grad_input NCDHW: SMs
// active 86% of its 2.35 ms against 99% of 1.77 ms channels_last_3d).
template <bool ROT = false>
__device__ __forceinline__ int walk_next(int u, int G) {
  if (u % G != G - 1) return u + 1;
  if (!ROT || G == 1) return u + (int)(gridDim.x - 1) * G + 1;
  const int grid = (int)gridDim.x, gi = u / G, r = gi % grid;
  return (gi - r + grid + (r + 1 == grid ? 0 : r + 1)) * G;
}

// The NCDHW input's boxes in flight: two halves of a chunk (4 + 4 channels), so that the next half
// lands while the producer warps transpose this one.
constexpr int RAW_BUFFERS = 2;

// The ring form's rounders with sums and copy (IN with SUMS): positions in flight per thread (4, as the
// one-box form's), and the producer registers that hold them and the prefetched running sums without spills
// (ptxas, every RING_SUMS row; 104 leaves two consumer warpgroups the same 200 as 96 does).
#ifndef CONVT3D_RING_B
#define CONVT3D_RING_B 4
#endif
#ifndef CONVT3D_RING_SUMS_REGS
#define CONVT3D_RING_SUMS_REGS 104
#endif
constexpr int RING_B = CONVT3D_RING_B;
constexpr int RING_SUMS_REGS = CONVT3D_RING_SUMS_REGS;

// Input sums (DirectLaunch::in_sums): rows per CTA, one per rounder warp of the producer warpgroup
// (direct.SUM_ROWS_PER_CTA mirrors it).
constexpr int SUM_ROWS = 3;
// Their rows along w: TMA faults (illegal instruction) unless a box's innermost start coordinate is
// 16-byte aligned, and a halo row starts anywhere, so the box starts at the multiple of 4 at or below it
// and is 3 positions wider than the halo row, rounded to 4.
constexpr int RAW_W = HALO_W + 4;

template <int TD, int TH, int KX, int BN, int WG, int S>
struct Config {
  static constexpr int TW = HALO_W - KX + 1;  // outputs per row
  static constexpr int N = KX * BN;
  static constexpr int MBLOCKS = TD * TH / 4;  // 64-row A tiles (4 output rows each)
  static constexpr int MB = MBLOCKS / WG;      // per warpgroup
  static constexpr int THREADS = 128 * WG;
  static constexpr int GROUP_BYTES = N * ROW_BYTES;  // one (kd, kh) filter block
  static constexpr int SCRATCH_STRIDE = N + 4;       // floats per epilogue row
  // An NCDHW input summed and copied by the ring form's rounders (IN with SUMS), whose producer then keeps
  // RING_SUMS_REGS (104) registers: the consumers' 200 hold up to 160 accumulators in two warpgroups.
  static constexpr bool RING_SUMS = WG == 2 && MB * N / 2 <= 160;
  static_assert(TH % 4 == 0 && MBLOCKS % WG == 0 && MB >= 1, "tile shape");
  // M block m (planes of TH / 4 blocks, m = dd * TH / 4 + h block) of warpgroup w's block mb in the
  // warp-specialized SS form: the same blocks as m = w * MB + mb, ordered h block first, so that in a tile
  // cut by the output's edge along h, or along d where the warpgroup's planes end, the blocks past the edge
  // are the warpgroup's last ones, whose MMAs its consumers skip.
  // M block m's plane in the tile and its first output row along h (4 rows per block, TH / 4 per plane).
  static constexpr __host__ __device__ int block_plane(int m) { return m / (TH / 4); }
  static constexpr __host__ __device__ int block_row(int m) { return (m % (TH / 4)) * 4; }
  static constexpr __host__ __device__ int block_m(int w, int mb) {
    constexpr int HB = TH / 4;
    if (MB % HB != 0) return w * MB + mb;
    return (w * (MB / HB) + mb % (MB / HB)) * HB + mb / (MB / HB);
  }
  static_assert(BN % 8 == 0 && N <= 256 && KX >= 1 && KX <= HALO_W, "N tile");
  // CARRY_REGS: room beside the accumulators for MB x BN / 4 carried floats per thread, the NCDHW epilogue's
  // sector or wcarry's open sums (2x8 n64's 192 accumulators and 32 more spilled 460 bytes; 168 in all compile
  // without spills; v0.70's wcarry forms through the output for the 192-accumulator rows spilled too).
  // CARRY_FITS adds, for the sector, one carried value per lane: the sector a tile shares with the next starts at its position 8 or
  // later wherever a group's tile starts (q0w mod 8 steps by gcd(TW, 8), so TW + gcd(TW, 8) >= 16).
  static constexpr int TW_STEP = TW % 8 == 0 ? 8 : TW % 4 == 0 ? 4 : TW % 2 == 0 ? 2 : 1;  // gcd(TW, 8)
  static constexpr bool CARRY_REGS = MB * N / 2 + MB * BN / 4 <= 176;
  static constexpr bool CARRY_FITS = CARRY_REGS && TW + TW_STEP >= 16;
  // Tiles of HALO_W input positions carrying open sums along w (Geometry::wcarry) compile where the open sums have
  // registers and only second positions are open (g + KX - 1 < 16 for every first position g <= 7). The kernel
  // and the host's wcarry_tiles both ask this, so the host never picks a carry the kernel compiled out.
  static constexpr bool WCARRY = CARRY_REGS && KX <= 9;
  static_assert(S >= 2, "stages");
};

template <int TD, int TH, int KX, int BN, int WG, int S>
__global__ void __launch_bounds__(128 * WG, 1)
    wgmma_kernel(const __grid_constant__ DirectLaunch p, const __grid_constant__ CUtensorMap tmap_in,
                 const __grid_constant__ CUtensorMap tmap_w, const Geometry geo) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = Config<TD, TH, KX, BN, WG, S>;
  using Op = typename Gmma<C::N>::Op;
  constexpr int NA = C::N / 2;  // accumulator floats per thread per A tile
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = smem_1k(smem_raw);
  const int stage_area = geo.stages * geo.stage_bytes;
  const int scratch_area = C::THREADS / 32 * 16 * C::SCRATCH_STRIDE * 4;
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + (stage_area > scratch_area ? stage_area : scratch_area));

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wg = tid >> 7, wl = warp & 3;
  const direct::TileOrigin o = direct::tile_origin(p, geo.tiles_h, geo.tiles_w, TD, TH, C::TW);
  const int n = o.n, q0d = o.q0d, q0h = o.q0h, q0w = o.q0w;
  const DirectPhase& ph = p.phase[o.phase];
  if (q0d >= ph.count[0] || q0h >= ph.count[1] || q0w >= ph.count[2]) return;
  const int co0 = blockIdx.y * BN;
  const int tz = ph.taps[0], ty = ph.taps[1], tx = ph.taps[2];
  const int ntzy = tz * ty;
  const int nchunks = ntzy * tx > 0 ? (p.Cr + KC - 1) / KC : 0;
  const int iz0 = q0d + ph.dmin[0], iy0 = q0h + ph.dmin[1], ix0 = q0w + ph.dmin[2];
  const int tap0 = ntzy * tx > 0 ? (int)(ph.w_offset / ((long long)p.Co * p.Cr)) : 0;
  const uint32_t tx_bytes = geo.halo_bytes + ntzy * C::GROUP_BYTES;
  // Stages in use: the host sized shared memory for geo.stages = min(S, chunks), so layers with few
  // channels keep more CTAs per SM. With three or more, one wgmma batch stays in flight per chunk.
  const int ns = geo.stages;
  const int wait = ns >= 3 ? 1 : 0;

  if (tid == 0) {
    for (int s = 0; s < geo.stages; ++s) cutlass::arch::ClusterTransactionBarrier::init(&full[s], 1);
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();

  // One thread stages a chunk: the halo box and one filter box per (kd, kh). Out-of-range
  // positions, channels >= Cr and output channels >= Co come back as zeros. A phase with fewer than
  // KX taps along w reads its neighbours' taps into the unused kx columns, which the epilogue skips.
  auto issue = [&](int chunk) {
    const int s = chunk % ns;
    uint8_t* st = smem + s * geo.stage_bytes;
    cutlass::arch::ClusterTransactionBarrier::arrive_and_expect_tx(&full[s], tx_bytes);
    constexpr uint64_t hint = static_cast<uint64_t>(cute::TMA::CacheHintSm90::EVICT_NORMAL);
    cute::SM90_TMA_LOAD_5D::copy(&tmap_in, &full[s], hint, st, chunk * KC, ix0, iy0, iz0, n);
    for (int gi = 0; gi < ntzy; ++gi)
      cute::SM90_TMA_LOAD_3D::copy(&tmap_w, &full[s], hint, st + geo.halo_bytes + gi * C::GROUP_BYTES,
                                   chunk * KC, co0, tap0 + gi * tx);
  };

  float acc[C::MB][NA];
#pragma unroll
  for (int mb = 0; mb < C::MB; ++mb)
#pragma unroll
    for (int i = 0; i < NA; ++i) acc[mb][i] = 0.f;

  // A phase without taps (k < stride) loads nothing: a TMA still in flight when the CTA exits would
  // land in the shared memory of the next CTA on this SM.
  if (tid == 0)
    for (int c = 0; c < ns && c < nchunks; ++c) issue(c);

  const uint32_t smem_addr = cute::cast_smem_ptr_to_uint(smem);
  for (int c = 0; c < nchunks; ++c) {
    const int s = c % ns;
    cutlass::arch::ClusterTransactionBarrier::wait(&full[s], (c / ns) & 1);
    float4* halo = reinterpret_cast<float4*>(smem + s * geo.stage_bytes);
    for (int i = tid; i < geo.halo_bytes / 16; i += C::THREADS) {
      float4 v = halo[i];
      v.x = __uint_as_float(direct::to_tf32(v.x));
      v.y = __uint_as_float(direct::to_tf32(v.y));
      v.z = __uint_as_float(direct::to_tf32(v.z));
      v.w = __uint_as_float(direct::to_tf32(v.w));
      halo[i] = v;
    }
    // The rounded halo is read by the async proxy (wgmma) and later overwritten by TMA.
    cutlass::arch::fence_view_async_shared();
    __syncthreads();
    // Every warpgroup has waited for the MMAs of chunk c - 1 - wait: its stage can be refilled.
    if (tid == 0) {
      const int done = c - 1 - wait;
      if (done >= 0 && done + ns < nchunks) issue(done + ns);
    }

    const uint32_t st = smem_addr + s * geo.stage_bytes;
    fence_acc(acc);
    cute::warpgroup_arrive();
    // Not unrolled: a remainder path would make ptxas move accumulators between wgmmas.
#pragma unroll 1
    for (int kd = 0; kd < tz; ++kd)
#pragma unroll 1
      for (int kh = 0; kh < ty; ++kh) {
        const uint64_t db = sw32_desc(st + geo.halo_bytes + (kd * ty + kh) * C::GROUP_BYTES);
#pragma unroll
        for (int mb = 0; mb < C::MB; ++mb) {
          const int m = wg * C::MB + mb;
          const int dd = C::block_plane(m), hb = C::block_row(m);
          const int row = ((dd + kd) * geo.HH + hb + kh) * HALO_W;
          gmma<Op>(sw32_desc(st + row * ROW_BYTES), db, acc[mb], std::make_index_sequence<NA>{});
        }
      }
    cute::warpgroup_commit_batch();
    if (wait)
      cute::warpgroup_wait<1>();
    else
      cute::warpgroup_wait<0>();
    fence_acc(acc);
  }
  cute::warpgroup_wait<0>();
  fence_acc(acc);
  __syncthreads();  // the stages become the epilogue's scratch

  // Epilogue: each warp holds 16 halo positions (one output row) x N; through shared memory, lanes
  // add the kx-shifted partial sums and write whole 16-byte channel groups.
  float* scratch = reinterpret_cast<float*>(smem) + warp * 16 * C::SCRATCH_STRIDE;
  const int g = lane >> 2, tq = lane & 3;
  constexpr int C4 = BN / 4;
#pragma unroll
  for (int mb = 0; mb < C::MB; ++mb) {
    const int m = wg * C::MB + mb;
    const int qd = q0d + C::block_plane(m), qh = q0h + C::block_row(m) + wl;
#pragma unroll
    for (int j = 0; j < C::N / 8; ++j)
#pragma unroll
      for (int r = 0; r < 2; ++r)
        *reinterpret_cast<float2*>(scratch + (g + 8 * r) * C::SCRATCH_STRIDE + 8 * j + 2 * tq) =
            make_float2(acc[mb][4 * j + 2 * r], acc[mb][4 * j + 2 * r + 1]);
    __syncwarp();
    if (qd < ph.count[0] && qh < ph.count[1]) {
      const int od = ph.first[0] + p.s_out * qd, oh = ph.first[1] + p.s_out * qh;
      float* row_out = p.out + (((int64_t)n * p.Do + od) * p.Ho + oh) * p.Wo * p.Co;
      for (int item = lane; item < C::TW * C4; item += 32) {
        const int w = item / C4, c4 = item % C4;
        const int qw = q0w + w, co = co0 + 4 * c4;
        if (qw >= ph.count[2] || co >= p.Co) continue;
        float4 v = p.bias != nullptr ? *reinterpret_cast<const float4*>(p.bias + co) : make_float4(0.f, 0.f, 0.f, 0.f);
        for (int kx = 0; kx < tx; ++kx) {
          const float4 a = *reinterpret_cast<const float4*>(scratch + (w + kx) * C::SCRATCH_STRIDE + kx * BN + 4 * c4);
          v.x += a.x;
          v.y += a.y;
          v.z += a.z;
          v.w += a.w;
        }
        const int ow = ph.first[2] + p.s_out * qw;
        *reinterpret_cast<float4*>(row_out + (int64_t)ow * p.Co + co) = v;
      }
    }
    __syncwarp();
  }
#endif
}

// A warp shuffle on an f32 register. __shfl_sync's int round trip lets the compiler carry the
// accumulators through the MMA loop as b32 registers; ptxas then copies them around every wgmma and
// serialises the MMAs (C7517: warpgroup.wait injected).
__device__ __forceinline__ float shfl_f32(float v, int src) {
  float r;
  asm volatile("shfl.sync.idx.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=f"(r) : "f"(v), "r"(src));
  return r;
}

// The ring form's rounders: position i's 4 channels of half h, rounded to tf32, into the stage's K-major row
// (SW32: the row's 16-byte halves swap where bit 2 of i is set); SPLIT adds the rounded remainder halo_bytes on.
// ROUND false: x came rounded (a TFLOAT32 map, f32_map_type), stored as it is.
template <bool SPLIT, bool ROUND = true>
__device__ __forceinline__ void store_rounded(uint8_t* st, int halo_bytes, int i, int h, const float (&x)[4]) {
  float4 v = make_float4(x[0], x[1], x[2], x[3]);
  if (ROUND) {
    v.x = __uint_as_float(direct::to_tf32(x[0]));
    v.y = __uint_as_float(direct::to_tf32(x[1]));
    v.z = __uint_as_float(direct::to_tf32(x[2]));
    v.w = __uint_as_float(direct::to_tf32(x[3]));
  }
  const int off = i * ROW_BYTES + 16 * (h ^ ((i >> 2) & 1));
  *reinterpret_cast<float4*>(st + off) = v;
  if (SPLIT)
    *reinterpret_cast<float4*>(st + halo_bytes + off) =
        make_float4(__uint_as_float(direct::to_tf32(x[0] - v.x)), __uint_as_float(direct::to_tf32(x[1] - v.y)),
                    __uint_as_float(direct::to_tf32(x[2] - v.z)), __uint_as_float(direct::to_tf32(x[3] - v.w)));
}

// Register split of the warp-specialized kernel: the producer warpgroup gives back what the
// consumers' accumulators need (setmaxnreg; the CTA's budget is 64K / threads).
template <int WG, int PRODUCER = 56>
struct WsRegs {
  static constexpr int base = (65536 / (128 * (WG + 1))) / 8 * 8 > 256 ? 256 : (65536 / (128 * (WG + 1))) / 8 * 8;
  static constexpr int producer = PRODUCER;
  static constexpr int c = (base * (WG + 1) - producer) / WG / 8 * 8;
  static constexpr int consumer = c > 256 ? 256 : c;
};

// The warp-specialized, persistent form of wgmma_kernel (same math, same tiles and stages). Why: the
// one-warpgroup-per-role-everything form above stops the tensor cores at a CTA-wide barrier per
// 8-channel chunk and at every tile's prologue and epilogue (38% of the TF32 rate on the headline,
// ncu: latency-bound). Here:
//  - warp 0 of the producer warpgroup issues the TMA loads, running up to `stages` chunks ahead,
//    across tile boundaries (full / empty mbarriers);
//  - its warps 1-3 round each arrived halo to tf32 in place and release it to the MMAs (ready), where TMA
//    has not rounded it already (MAP_ROUNDS: tf32 without input sums; then the MMAs wait for TMA itself);
//  - the consumer warpgroups only issue wgmmas, release each stage when its MMAs retire, and run the
//    epilogue in registers (the kx shift-add by warp shuffles) while the next tile's stages load;
//  - each CTA walks work units (tile, C_out block, sample x phase) with a grid-wide stride, one CTA
//    per SM.
// ON: the output is NCDHW (p.out_ncdhw), a separate instantiation that leaves the NDHWC kernel as it was.
// IN: the input is NCDHW (p.in_ncdhw). TMA cannot transpose, so it lands [channel][positions] boxes of
// 4 channels in a ring of their own, and the producer's rounder warps write each position's channels
// into the stage's K-major rows as they round them: the same halo bytes the NDHWC form's TMA writes,
// read by the same MMAs, without a transposed copy of the input in global memory (0.94 ms and 1.36 GB
// on the headline). Needs the resident filter (the raw ring takes a stage's place).
// IN with RS: no transposing pass at all. The A fragments come from registers, so the consumers load them
// straight from the [channel][positions] boxes as TMA lands them (rounding in registers); the stages are
// those boxes, two per chunk, and the producer's warps 1-3 idle. The boxes' channel pitch is padded off
// 0 mod 32 words, so the four channels a warp's lanes read at once meet at most two-way (raw_box_dims).
// SUMS: the rounders also sum the input per channel (p.in_sums), a separate instantiation: the rounders
// are close to the forward's critical path (a runtime branch in their loop cost it 6%), so the kernels
// that do not sum keep exactly the code they had.
// RS: A from registers (RS-wgmma). Why: with SS-wgmma the headline forward moves about 25 shared-memory
// element accesses per output position and channel (A re-read for all 9 (kd, kh) taps, B, the rounders'
// read and write of the halo); ncu puts L1/shared at 72% of its peak with the tensor pipe near 60% busy
// (docs/performance.md v0.28). Each consumer warpgroup owns one 4-row h block through all TD planes, so
// an A fragment of halo plane d' serves the taps kd of output planes d' - kd: loaded (and rounded) once
// for up to KX MMAs. The halo then needs no rounding in place: the MMA warps wait for the TMA itself.
// Needs every phase to have KX taps on each axis (unit stride), TH / 4 == WG, tf32.
template <int TD, int TH, int KX, int BN, int WG, int S, bool SPLIT, bool ON, bool IN, bool SUMS = false,
          bool RS = false, int WF = 0>
__global__ void __launch_bounds__(128 * (WG + 1), 1)
    wgmma_ws_kernel(const __grid_constant__ DirectLaunch p, const __grid_constant__ CUtensorMap tmap_in,
                    const __grid_constant__ CUtensorMap tmap_w, const Geometry geo, const int units) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = Config<TD, TH, KX, BN, WG, S>;
  using Op = typename Gmma<C::N>::Op;
  using Barrier = cutlass::arch::ClusterBarrier;
  using TxBarrier = cutlass::arch::ClusterTransactionBarrier;
  constexpr int NA = C::N / 2;
  constexpr int ROUNDERS = 96;  // producer warps 1-3
  static_assert(!RS || (!SPLIT && TH / 4 == WG && C::MB == TD), "RS: tf32, one 4-row h block per warpgroup");
  static_assert(WF == 0 || (!ON && !IN && !SUMS && !RS), "the w fold: NDHWC in and out, SS form");
  // Tiles of HALO_W input positions along w carrying partial sums to the next (Geometry::wcarry): where the
  // carried values have registers (C::CARRY_REGS) and no input sums (whose ownership rule assumes TW tiles).
  constexpr bool WC = C::WCARRY && !SUMS && WF == 0;
  // tf32 without input sums: the host's map of the input is TFLOAT32 (run(): map_rounds), so TMA lands the
  // halo (IN: the raw boxes) rounded to tf32 (f32_map_type) and nothing here rounds it again. SPLIT needs the
  // unrounded input for its low part, SUMS for the bias gradient.
  constexpr bool MAP_ROUNDS = input_map_rounds(SPLIT, SUMS);
  // RS without a summing (SUMS) rounder pass: the MMA warps take the halo (IN: the raw boxes) as TMA lands it.
  constexpr bool RAW_TO_MMA = RS && !SUMS;
  // IN without RS: the raw boxes land in a ring of their own, and the rounders transpose them into stages.
  constexpr bool RING = IN && !RS;
  // The MMA warps wait for TMA itself, not for a rounder pass: RS without sums, or an NDHWC halo that TMA
  // rounds (the SS form's rounder warps then have nothing to do). v0.55: the rounders' in-place read and write
  // of every halo element was 16% of the SS forward's shared-memory wavefronts.
  constexpr bool HALO_TO_MMA = RAW_TO_MMA || (MAP_ROUNDS && !IN);
  // SUMS: the rounders load each chunk's running sums ahead of its halo (below), which takes 64 producer
  // registers (56 spill); the consumers then get 216 instead of 224, enough for up to 160 accumulators
  // without spills (ptxas, every ws row). Rows with more accumulators load the sums after the release:
  // that stall costs less than spilled accumulators (sr-head's step, 64 everywhere: 2.29 ms, not 1.05).
  constexpr bool SUMS_AHEAD = SUMS && !IN && C::MB * NA <= 160;
  // IN with SUMS (rows with C::RING_SUMS only): RING_SUMS_REGS for the ring rounders' sums and copy stores.
  static_assert(!(IN && SUMS) || C::RING_SUMS, "sums of an NCDHW input: two warpgroups, up to 160 accumulators");
  using Regs = WsRegs<WG, IN && SUMS ? RING_SUMS_REGS : SUMS_AHEAD ? 64 : 56>;
  // 3xtf32 (SPLIT): every operand as hi + lo tf32 parts, a * b ~ a_lo b_hi + a_hi b_lo + a_hi b_hi. The
  // halo's lo part sits halo_bytes after its hi part; each (kd, kh) filter block is [hi][lo].
  constexpr int P = SPLIT ? 2 : 1;
  constexpr int GB = P * C::GROUP_BYTES;
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = smem_1k(smem_raw);
  const int ns = geo.stages;
  uint8_t* filter = smem + ns * geo.stage_bytes;  // resident filter: [chunk][(kd, kh)] blocks
  uint8_t* raw = smem + geo.raw_offset;           // RING: RAW_BUFFERS boxes, raw_stride apart
  uint64_t* full = reinterpret_cast<uint64_t*>(RING ? raw + RAW_BUFFERS * geo.raw_stride : filter + geo.filter_bytes);
  uint64_t* ready = full + ns;
  uint64_t* empty = ready + ns;
  uint64_t* ffull = empty + ns;   // the resident filter has arrived
  uint64_t* fempty = ffull + 1;   // every consumer is done with the previous one
  uint64_t* rfull = fempty + 1;   // RING: a raw box has landed
  uint64_t* rempty = rfull + RAW_BUFFERS;  // RING: the rounders are done with it

  const int tid = threadIdx.x, lane = tid & 31, wg = tid >> 7;
  if (tid == 0) {
    for (int s = 0; s < ns; ++s) {
      TxBarrier::init(&full[s], 1);
      Barrier::init(&ready[s], ROUNDERS);
      Barrier::init(&empty[s], 128 * WG);
    }
    TxBarrier::init(ffull, 1);
    Barrier::init(fempty, 128 * WG);
    if constexpr (RING)
      for (int r = 0; r < RAW_BUFFERS; ++r) {
        TxBarrier::init(&rfull[r], 1);
        Barrier::init(&rempty[r], ROUNDERS);
      }
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();

  const int coblocks = (p.Co + BN - 1) / BN;
  // Every role walks the same units and chunks, so the stage index and barrier phase of chunk `it`
  // (counted over the CTA's whole walk) agree between them.
  struct Unit {
    direct::TileOrigin o;
    int co0, nchunks, tap0, tz, ty, tx, wt;  // wt: the tile's index along w
  };
  // Unit u: tile u % G of group u / G; a group is G w-neighbour tiles of one (d, h) tile row (G = 1: the
  // tiles w fastest, as before), then C_out blocks, then sample x phase.
  const int G = geo.wgroup, gpr = (geo.tiles_w + G - 1) / G, rows = geo.tiles_d * geo.tiles_h;
  auto unit_at = [&](int u, Unit& t) -> bool {
    const int gi = u / G, wt = (gi % gpr) * G + u % G, rg = gi / gpr;
    if (wt >= geo.tiles_w) return false;  // a row's last group is short
    const int tile = (rg % rows) * geo.tiles_w + wt, rest = rg / rows;
    t.o = direct::tile_origin_at(p, tile, rest / coblocks, geo.tiles_h, geo.tiles_w, TD, TH, WF ? geo.tw : C::TW);
    t.co0 = (rest % coblocks) * BN;
    t.wt = wt;
    const DirectPhase& ph = p.phase[t.o.phase];
    t.tz = ph.taps[0];
    t.ty = ph.taps[1];
    t.tx = ph.taps[2];
    // wcarry: halo positions from input qoff + dmin + HALO_W * wt (qoff: the first tile's halo starts on input
    // 0, or on dmin where that is positive); a tile also stores the outputs the previous one carried, up to
    // tx - 1 positions left of q0w, so a last tile may start past the row's outputs.
    if (geo.wcarry) t.o.q0w = HALO_W * wt + (ph.dmin[2] < 0 ? -ph.dmin[2] : 0);
    if (t.o.q0d >= ph.count[0] || t.o.q0h >= ph.count[1] ||
        (geo.wcarry ? t.o.q0w - (t.tx > 0 ? t.tx - 1 : 0) : t.o.q0w) >= ph.count[2])
      return false;
    const bool any = t.tz * t.ty * t.tx > 0;
    t.nchunks = any ? (p.Cr + KC - 1) / KC : 0;
    t.tap0 = any ? (int)(ph.w_offset / ((long long)p.Co * p.Cr)) : 0;
    return true;
  };

  if (wg == 0) {
    cutlass::arch::warpgroup_reg_dealloc<Regs::producer>();
    if (tid == 0) {
      // TMA issue. A phase without taps loads nothing (its tiles are bias only).
      constexpr uint64_t hint = static_cast<uint64_t>(cute::TMA::CacheHintSm90::EVICT_NORMAL);
      int it = 0, fkey = -1, loads = 0;
      for (int u = blockIdx.x * G; u < units; u = walk_next<ON>(u, G)) {
        Unit t;
        if (!unit_at(u, t) || t.nchunks == 0) continue;
        const DirectPhase& ph = p.phase[t.o.phase];
        const int ntzy = t.tz * t.ty;
        const int key = t.o.phase * coblocks + t.co0 / BN;
        if (geo.resident && key != fkey) {
          // Refill once every consumer has left the previous filter's last tile.
          if (loads > 0) Barrier::wait(fempty, (loads - 1) & 1);
          TxBarrier::arrive_and_expect_tx(ffull, t.nchunks * ntzy * GB);
          for (int c = 0; c < t.nchunks; ++c)
            for (int gi = 0; gi < ntzy; ++gi)
              for (int h = 0; h < P; ++h)
                cute::SM90_TMA_LOAD_3D::copy(&tmap_w, ffull, hint, filter + (c * ntzy + gi) * GB + h * C::GROUP_BYTES,
                                             c * KC, t.co0, t.tap0 + gi * t.tx + h * geo.lo_tap);
          fkey = key;
          ++loads;
        }
        const uint32_t tx_bytes = geo.halo_bytes + (geo.resident ? 0 : ntzy * GB);
        const int iz0 = t.o.q0d + ph.dmin[0], iy0 = t.o.q0h + ph.dmin[1], ix0 = t.o.q0w + ph.dmin[2];
        for (int c = 0; c < t.nchunks; ++c, ++it) {
          if constexpr (RING) {
            // Only the raw ring: the rounders wait for the stage they write (the filter is resident).
            for (int h = 0; h < 2; ++h) {
              const int j = 2 * it + h, r = j % RAW_BUFFERS;
              Barrier::wait(&rempty[r], ((j / RAW_BUFFERS) & 1) ^ 1);
              TxBarrier::arrive_and_expect_tx(&rfull[r], geo.raw_bytes);
              if (SUMS && geo.raw_rows) {
                // A row outside [0, H) starts a whole row before or after the plane: TMA fills it with zeros
                // at every position the rounders keep (inside [0, W)).
                for (int hh = 0; hh < geo.HH; ++hh)
                  cute::SM90_TMA_LOAD_5D::copy(&tmap_in, &rfull[r], hint,
                                               raw + r * geo.raw_stride + hh * geo.raw_row_pitch,
                                               ((iy0 + hh) * p.Wi + ix0) & ~3, 0, iz0, c * KC + 4 * h, t.o.n);
              } else {
                cute::SM90_TMA_LOAD_5D::copy(&tmap_in, &rfull[r], hint, raw + r * geo.raw_stride, ix0 & ~3, iy0,
                                             iz0, c * KC + 4 * h, t.o.n);
              }
            }
            continue;
          }
          const int s = it % ns;
          Barrier::wait(&empty[s], ((it / ns) & 1) ^ 1);
          uint8_t* st = smem + s * geo.stage_bytes;
          if constexpr (IN) {  // RS: the chunk's two raw boxes are the stage
            TxBarrier::arrive_and_expect_tx(&full[s], 2 * geo.raw_bytes);
            for (int h = 0; h < 2; ++h)
              cute::SM90_TMA_LOAD_5D::copy(&tmap_in, &full[s], hint, st + h * geo.raw_stride, ix0 & ~3, iy0, iz0,
                                           c * KC + 4 * h, t.o.n);
            continue;
          }
          TxBarrier::arrive_and_expect_tx(&full[s], tx_bytes);
          cute::SM90_TMA_LOAD_5D::copy(&tmap_in, &full[s], hint, st, c * KC, ix0, iy0, iz0, t.o.n);
          if (!geo.resident)
            for (int gi = 0; gi < ntzy; ++gi)
              for (int h = 0; h < P; ++h)
                cute::SM90_TMA_LOAD_3D::copy(&tmap_w, &full[s], hint,
                                             st + P * geo.halo_bytes + gi * GB + h * C::GROUP_BYTES, c * KC, t.co0,
                                             t.tap0 + gi * t.tx + h * geo.lo_tap);
        }
      }
    } else if (tid >= 32 && !HALO_TO_MMA) {
      // Round each arrived halo to tf32 in place (the host pre-rounds the weight), then hand it to the
      // MMAs: the writes are made visible to the async proxy (wgmma) before the release.
      const int r = tid - 32;
      int it = 0;
      // Input sums (p.in_sums): the rounders read every halo element anyway, so grad_input's bias
      // gradient costs no pass of its own over grad_y (0.27 ms on the headline). Each rounder warp owns
      // one row of the buffer; lanes 0 and 1 are its only writers, so its sums are added in one fixed
      // order, and the caller adds the rows in a fixed order: bitwise reproducible.
      static_assert(!(SUMS && IN && !RING), "input sums on an NCDHW input in the ring form only");
      static_assert(ROUNDERS == 32 * SUM_ROWS, "a row of input sums per rounder warp");
      float* srow = nullptr;
      if constexpr (SUMS) {
        const float4 zero = make_float4(0.f, 0.f, 0.f, 0.f);
        srow = p.in_sums + ((size_t)blockIdx.x * SUM_ROWS + (r >> 5)) * p.Cr;
        for (int c = lane * 4; c < p.Cr; c += 128) *reinterpret_cast<float4*>(srow + c) = zero;
        if (blockIdx.x == 0)  // the rows of CTAs that this grid does not have
          for (int row = SUM_ROWS * gridDim.x + (r >> 5); row < p.in_sums_rows; row += SUM_ROWS)
            for (int c = lane * 4; c < p.Cr; c += 128)
              *reinterpret_cast<float4*>(p.in_sums + (size_t)row * p.Cr + c) = zero;
        __syncwarp();
      }
      for (int u = blockIdx.x * G; u < units; u = walk_next<ON>(u, G)) {
        Unit t;
        if (!unit_at(u, t)) continue;
        for (int c = 0; c < t.nchunks; ++c, ++it) {
          const int s = it % ns;
          if constexpr (RING) {
            // SUMS: lane 4v, which holds channel v's total after the reduce-scatter at the chunk's end, loads
            // that channel's running sum before anything else, so that the load's latency hides behind the
            // chunk's rounding instead of stalling the warp at its end (v0.52: 0.6 ms of the headline's
            // grad_input, gyparts.py; the same lane stored it last).
            [[maybe_unused]] float run = 0.f;
            [[maybe_unused]] const bool swriter = SUMS && t.co0 == 0 && (lane & 3) == 0 && c * KC + (lane >> 2) < p.Cr;
            if constexpr (SUMS)
              if (swriter) run = srow[c * KC + (lane >> 2)];
            Barrier::wait(&empty[s], ((it / ns) & 1) ^ 1);
            uint8_t* st = smem + s * geo.stage_bytes;
            if constexpr (!SUMS) {  // one box per half (the rows form comes with sums only): the code as it was
              const int npos = geo.halo_bytes / ROW_BYTES, plane = npos / HALO_W * RAW_W;
              const int shift = (t.o.q0w + p.phase[t.o.phase].dmin[2]) & 3;  // the row's start in the box
              for (int h = 0; h < 2; ++h) {
                const int j = 2 * it + h, rb = j % RAW_BUFFERS;
                TxBarrier::wait(&rfull[rb], (j / RAW_BUFFERS) & 1);
                const float* src = reinterpret_cast<const float*>(raw + rb * geo.raw_stride) + shift;
                // Lanes take consecutive positions: the channel loads are unit-stride, and the 16-byte
                // stores of 8 lanes cover all banks (SW32: a row's halves swap when bit 2 of the row is set).
                // Four positions per thread are loaded before any is stored: the compiler cannot move a load
                // above a store to the same shared array, and one position at a time left the rounders
                // waiting on load latency (the forward measured 3.01 ms against 2.11 on channels_last x).
                constexpr int B = 4;
                for (int i0 = r; i0 < npos; i0 += B * ROUNDERS) {
                  float x[B][4];
#pragma unroll
                  for (int u = 0; u < B; ++u) {
                    const int i = i0 + u * ROUNDERS;
                    const float* q0 = src + (i / HALO_W) * RAW_W + i % HALO_W;
#pragma unroll
                    for (int q = 0; q < 4; ++q) x[u][q] = i < npos ? q0[q * plane] : 0.f;
                  }
#pragma unroll
                  for (int u = 0; u < B; ++u) {
                    const int i = i0 + u * ROUNDERS;
                    if (i >= npos) break;
                    store_rounded<SPLIT, !MAP_ROUNDS>(st, geo.halo_bytes, i, h, x[u]);
                  }
                }
                Barrier::arrive(&rempty[rb]);
              }
              cutlass::arch::fence_view_async_shared();
              Barrier::arrive(&ready[s]);
              continue;
            }
            const int npos = geo.halo_bytes / ROW_BYTES, plane = npos / HALO_W * RAW_W;
            const DirectPhase& ph = p.phase[t.o.phase];
            const int ix0 = t.o.q0w + ph.dmin[2], iy0 = t.o.q0h + ph.dmin[1], iz0 = t.o.q0d + ph.dmin[0];
            const int shift = ix0 & 3;  // the row's start in the box
            // Thread r's position along w is always r % HALO_W (ROUNDERS and the step are multiples of it).
            const int wpos = r % HALO_W, wg_in = ix0 + wpos;
            const bool w_in = wg_in >= 0 && wg_in < p.Wi;
            // SUMS (with IN: the input sums and the channels_last copy): the positions this tile owns (the
            // NDHWC form's rule below), inside the input, for the first C_out block only.
            // Owned: halo planes [dlo, dlo + dn), rows [hlo, hlo + hn), inside the input (two unsigned compares
            // a position: v0.53 measured the rounders bound by their instructions, ncu).
            const bool own_w = t.co0 == 0 && w_in && wpos < (t.o.q0w + C::TW >= ph.count[2] ? HALO_W : C::TW);
            const int hl = t.o.q0h + TH >= ph.count[1] ? geo.HH : TH;
            const int dl = t.o.q0d + TD >= ph.count[0] ? geo.HD : TD;
            const int dlo = max(0, -iz0), dn = max(0, min(dl, p.Di - iz0) - dlo);
            const int hlo = max(0, -iy0), hn = max(0, min(hl, p.Hi - iy0) - hlo);
            // the copy's offset of halo row (hd, hh) at w: g0 + hd * gd + hh * gh (32-bit: host checks the size)
            const int gh = p.Wi * p.Cr, gd = p.Hi * gh, g0 = iz0 * gd + iy0 * gh;
            float sm0[4] = {}, sm1[4] = {};  // the two halves' sums (registers, not an array by h)
            // Rows form (geo.raw_rows): box hh holds [c][raw_hd][RAW_W] from its own start.
            const int rpitch = geo.raw_row_pitch / 4, cpitch = geo.raw_rows ? geo.raw_hd * RAW_W : plane;
            const float inv_hh = 1.f / (float)geo.HH, inv_hd = 1.f / (float)geo.HD;
            for (int h = 0; h < 2; ++h) {
              const int j = 2 * it + h, rb = j % RAW_BUFFERS;
              TxBarrier::wait(&rfull[rb], (j / RAW_BUFFERS) & 1);
              const float* box = reinterpret_cast<const float*>(raw + rb * geo.raw_stride);
              const float* src = box + shift;
              // Lanes take consecutive positions: the channel loads are unit-stride, and the 16-byte
              // stores of 8 lanes cover all banks (SW32: a row's halves swap when bit 2 of the row is set).
              // Four positions per thread are loaded before any is stored: the compiler cannot move a load
              // above a store to the same shared array, and one position at a time left the rounders
              // waiting on load latency (the forward measured 3.01 ms against 2.11 on channels_last x).
              [[maybe_unused]] float sq[4] = {};
              // SUMS: the copy's channels of this half at the thread's w in the sample (null: no copy)
              float* const copy_w = p.in_copy != nullptr && c * KC + 4 * h < p.Cr
                                        ? p.in_copy + ((size_t)t.o.n * p.Di * p.Hi * p.Wi + wg_in) * p.Cr + c * KC + 4 * h
                                        : nullptr;
              constexpr int B = RING_B;
              // ROWS: geo.raw_rows, a compile-time copy of the loop each, so that the one-box form keeps its code.
              auto convert = [&](auto rows_c) {
              constexpr bool ROWS = decltype(rows_c)::value;
              // ROWS: the halo rows taken hd fastest, so that a warp's two halves (two rows) read box rows
              // RAW_W words apart; hh fastest, they would be a row pitch apart (0 mod 32 words) and shifted by
              // W % 4 from each other: two-way bank conflicts on most lanes.
              const int per = ROWS ? geo.HD : geo.HH;
              const float inv = ROWS ? inv_hd : inv_hh;
              for (int j0 = r; j0 < npos; j0 += B * ROUNDERS) {
                float x[B][4];
                int at[B];
                int gpos[B];  // the copy's offset of the position this thread owns (past the halo: never read), or -1
#pragma unroll
                for (int u = 0; u < B; ++u) {
                  const int j = j0 + u * ROUNDERS, row = j / HALO_W;
                  // (row + 0.5) / per in float: exact for the few hundred rows a halo has.
                  const int a = __float2int_rz(((float)row + 0.5f) * inv), b = row - a * per;
                  const int hd = ROWS ? b : a, hh = ROWS ? a : b;
                  at[u] = ROWS ? (hd * geo.HH + hh) * HALO_W + wpos : j;
                  const float* q0 = ROWS ? box + hh * rpitch + hd * RAW_W + wpos + (((iy0 + hh) * p.Wi + ix0) & 3)
                                         : src + row * RAW_W + wpos;
                  const bool ok = j < npos && (w_in || !ROWS);
#pragma unroll
                  for (int q = 0; q < 4; ++q) x[u][q] = ok ? q0[q * cpitch] : 0.f;
                  gpos[u] = own_w && (unsigned)(hd - dlo) < (unsigned)dn && (unsigned)(hh - hlo) < (unsigned)hn
                                ? g0 + hd * gd + hh * gh
                                : -1;
                }
#pragma unroll
                for (int u = 0; u < B; ++u) {
                  if (j0 + u * ROUNDERS >= npos) break;
                  const int i = at[u];
                  store_rounded<SPLIT>(st, geo.halo_bytes, i, h, x[u]);
                  if (gpos[u] >= 0) {
#pragma unroll
                    for (int q = 0; q < 4; ++q) sq[q] += x[u][q];
                    if (copy_w != nullptr)
                      *reinterpret_cast<float4*>(copy_w + gpos[u]) = make_float4(x[u][0], x[u][1], x[u][2], x[u][3]);
                  }
                }
              }
              };
              if (geo.raw_rows)
                convert(std::true_type{});
              else
                convert(std::false_type{});
              Barrier::arrive(&rempty[rb]);
              if constexpr (SUMS)
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                  sm0[q] = h == 0 ? sq[q] : sm0[q];
                  sm1[q] = h == 0 ? sm1[q] : sq[q];
                }
            }
            cutlass::arch::fence_view_async_shared();
            Barrier::arrive(&ready[s]);
            if (t.co0 == 0) {
              // After the release, the MMAs do not wait for it. Each warp's 32 lanes hold partial sums of the
              // same 8 channels, reduced by halving exchanges (lane bit 4 keeps half 1, bit 3 the upper
              // channel pair, bit 2 the odd channel: 9 shuffles, not 40), so that lane 4v holds channel v's
              // total and adds it to its row (one writer per channel, a fixed order: bitwise reproducible).
              const bool b4 = lane & 16, b3 = lane & 8, b2 = lane & 4;
              float k4[4], k2[2];
#pragma unroll
              for (int q = 0; q < 4; ++q)
                k4[q] = (b4 ? sm1[q] : sm0[q]) + __shfl_xor_sync(0xffffffffu, b4 ? sm0[q] : sm1[q], 16);
#pragma unroll
              for (int q = 0; q < 2; ++q)
                k2[q] = (b3 ? k4[q + 2] : k4[q]) + __shfl_xor_sync(0xffffffffu, b3 ? k4[q] : k4[q + 2], 8);
              float k1 = (b2 ? k2[1] : k2[0]) + __shfl_xor_sync(0xffffffffu, b2 ? k2[0] : k2[1], 4);
              k1 += __shfl_xor_sync(0xffffffffu, k1, 2);
              k1 += __shfl_xor_sync(0xffffffffu, k1, 1);
              if (swriter) srow[c * KC + (lane >> 2)] = run + k1;
            }
            continue;
          }
          // SUMS: lanes 0 and 1 load their running sums of this chunk's channels before the halo arrives,
          // so that the load's latency hides behind the wait and the rounding instead of stalling the
          // warp after the release (the same thread stored them last, so the load sees its own store).
          [[maybe_unused]] const bool swriter = SUMS && t.co0 == 0 && lane < 2 && c * KC + 4 * lane < p.Cr;
          [[maybe_unused]] float4 srun;
          if constexpr (SUMS_AHEAD)
            if (swriter) srun = *reinterpret_cast<const float4*>(srow + c * KC + 4 * lane);
          TxBarrier::wait(&full[s], (it / ns) & 1);
          float4* halo = reinterpret_cast<float4*>(smem + s * geo.stage_bytes);
          auto round_at = [&](int i) -> float4 {
            const float4 x = halo[i];
            float4 v;
            v.x = __uint_as_float(direct::to_tf32(x.x));
            v.y = __uint_as_float(direct::to_tf32(x.y));
            v.z = __uint_as_float(direct::to_tf32(x.z));
            v.w = __uint_as_float(direct::to_tf32(x.w));
            halo[i] = v;
            if (SPLIT)  // the remainder, itself rounded (a truncated split loses an order of magnitude)
              halo[i + geo.halo_bytes / 16] =
                  make_float4(__uint_as_float(direct::to_tf32(x.x - v.x)), __uint_as_float(direct::to_tf32(x.y - v.y)),
                              __uint_as_float(direct::to_tf32(x.z - v.z)), __uint_as_float(direct::to_tf32(x.w - v.w)));
            return x;
          };
          if constexpr (!SUMS) {
#pragma unroll 4
            for (int i = r; i < geo.halo_bytes / 16; i += ROUNDERS) round_at(i);
            cutlass::arch::fence_view_async_shared();
            Barrier::arrive(&ready[s]);
          } else {
            // Each input element once, so the first C_out block only, and per tile the halo positions
            // before the next tile's halo starts (all of it for the last tile along an axis; the host
            // checks that these cover the input). Thread r always holds the same position along w,
            // (r >> 1) & 15, and the same 4 channels of the chunk: half r & 1 of the 32-byte row, swapped
            // (SW32) where bit 2 of the position is set. Its halo row (d, h) advances by 3 per step.
            const bool sum = t.co0 == 0;
            float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
            if (sum) {
              const DirectPhase& ph = p.phase[t.o.phase];
              const int wl = t.o.q0w + C::TW >= ph.count[2] ? HALO_W : C::TW;
              const int hl = t.o.q0h + TH >= ph.count[1] ? geo.HH : TH;
              const int dl = ((r >> 1) & 15) >= wl ? 0 : t.o.q0d + TD >= ph.count[0] ? geo.HD : TD;
              int hh = r >> 5, hd = 0;
#pragma unroll 2
              for (int i = r; i < geo.halo_bytes / 16; i += ROUNDERS) {
                const float4 x = round_at(i);
                if (hh < hl && hd < dl) {
                  s0 += x.x;
                  s1 += x.y;
                  s2 += x.z;
                  s3 += x.w;
                }
                hh += 3;
                if (hh >= geo.HH) {
                  hh -= geo.HH;
                  ++hd;
                }
              }
            } else {
#pragma unroll 4
              for (int i = r; i < geo.halo_bytes / 16; i += ROUNDERS) round_at(i);
            }
            cutlass::arch::fence_view_async_shared();
            Barrier::arrive(&ready[s]);
            if (sum) {  // after the release: the MMAs do not wait for it
              // Over the 16 lanes holding the same channels, (lane & 1) ^ ((lane >> 3) & 1): lane masks 2,
              // 4, 9 and 16 keep that bit. Lanes 0 and 1 end with the two halves' sums.
              constexpr int masks[4] = {2, 4, 9, 16};
#pragma unroll
              for (int o : masks) {
                s0 += __shfl_xor_sync(0xffffffffu, s0, o);
                s1 += __shfl_xor_sync(0xffffffffu, s1, o);
                s2 += __shfl_xor_sync(0xffffffffu, s2, o);
                s3 += __shfl_xor_sync(0xffffffffu, s3, o);
              }
              if (swriter) {
                if constexpr (!SUMS_AHEAD) srun = *reinterpret_cast<const float4*>(srow + c * KC + 4 * lane);
                srun.x += s0;
                srun.y += s1;
                srun.z += s2;
                srun.w += s3;
                *reinterpret_cast<float4*>(srow + c * KC + 4 * lane) = srun;
              }
            }
          }
        }
      }
    }
    return;
  }

  cutlass::arch::warpgroup_reg_alloc<Regs::consumer>();
  const int cw = wg - 1, wl = (tid >> 5) & 3;
  const int g = lane >> 2, tq = lane & 3;
  const uint32_t smem_addr = cute::cast_smem_ptr_to_uint(smem);
  const uint32_t filter_addr = cute::cast_smem_ptr_to_uint(filter);
  // Each M block's first halo row, as a descriptor offset. The warpgroup index comes through a
  // broadcast so that the compiler knows it is warp-uniform (as CUTLASS's canonical_warp_group_idx):
  // the descriptor arithmetic then stays in uniform registers.
  constexpr uint32_t ROW16 = HALO_W * ROW_BYTES / 16;
  const int cwu = __shfl_sync(0xffffffffu, cw, 0);
  uint32_t a_mb[C::MB];
#pragma unroll
  for (int mb = 0; mb < C::MB; ++mb) {
    const int m = C::block_m(cwu, mb);
    a_mb[mb] = (C::block_plane(m) * geo.HH + C::block_row(m)) * ROW16;
  }
  int it = 0, fkey = -1, loads = 0;
  // ON with w-groups: the sector a tile shares with the next one, as this thread would store it (see the
  // epilogue), kept until the next tile adds its part.
  // wcarry: the partial sums of this thread's second positions whose taps reach into the next tile's halo.
  [[maybe_unused]] float carry[(ON && C::CARRY_FITS) || WC ? C::MB : 1][BN / 8][2] = {};
  for (int u = blockIdx.x * G; u < units; u = walk_next<ON>(u, G)) {
    Unit t;
    if (!unit_at(u, t)) continue;
    const int ntzy = t.tz * t.ty;
    if (geo.resident && t.nchunks > 0) {
      const int key = t.o.phase * coblocks + t.co0 / BN;
      if (key != fkey) {
        if (loads > 0) Barrier::arrive(fempty);  // this thread's MMAs on the old filter have retired
        TxBarrier::wait(ffull, loads & 1);
        fkey = key;
        ++loads;
      }
    }
    // This thread's bias values, loaded before the MMAs: the epilogue's stores may alias p.bias, so a
    // load there waits behind every earlier store, and the headline forward's consumers spent a fifth of
    // their time in the epilogue (ncu source counters, v0.29), with the tensor pipe idle.
    constexpr int J = BN / 8;
    float2 bias[J];
#pragma unroll
    for (int j = 0; j < J; ++j) {
      const int co = t.co0 + 8 * j + 2 * tq;
      bias[j] = p.bias != nullptr && co < p.Co ? __ldg(reinterpret_cast<const float2*>(p.bias + co))
                                                : make_float2(0.f, 0.f);
    }
    float acc[C::MB][NA];
#pragma unroll
    for (int mb = 0; mb < C::MB; ++mb)
#pragma unroll
      for (int i = 0; i < NA; ++i) acc[mb][i] = 0.f;

    if constexpr (RS) {
      // Groups of MMAs on one A fragment (a halo row block of plane dp, tap kh), NBUF fragments in
      // flight; the groups per kh are a multiple of NBUF so that every kh (a runtime loop: unrolled, the
      // k5 row's TU compiled in 46 s) starts on fragment 0.
      constexpr int DP = TD + KX - 1;
      constexpr int NBUF = DP % 3 == 0 ? 3 : DP % 2 == 0 ? 2 : 1;
      using OpRS = typename GmmaRS<C::N>::Op;
      // Rows g and g + 8 of warp wl's 16 positions, columns tq and tq + 4: SW32 swaps a row's 16-byte
      // halves where bit 2 of the position is set, which also spreads the 8 rows over all 32 banks.
      const uint32_t a_pos = (16 * wl + g) * ROW_BYTES + 4 * tq;
      const uint32_t c_lo = 16 * ((g >> 2) & 1), c_hi = 16 - c_lo;
      // IN: element (channel tq of box h, plane, row, w) of the raw boxes; rows g and g + 8 are 8 words apart.
      const int pitch = geo.raw_hd * geo.raw_hh * RAW_W;
      const uint32_t raw_pos =
          4 * (tq * pitch + (4 * cw + wl) * RAW_W + g + ((t.o.q0w + p.phase[t.o.phase].dmin[2]) & 3));
      uint32_t a[NBUF][4];
      for (int c = 0; c < t.nchunks; ++c, ++it) {
        const int s = it % ns;
        if constexpr (HALO_TO_MMA)
          TxBarrier::wait(&full[s], (it / ns) & 1);
        else
          Barrier::wait(&ready[s], (it / ns) & 1);
        const uint32_t st = smem_addr + s * geo.stage_bytes;
        const uint32_t fb = geo.resident ? filter_addr + c * ntzy * GB : st + geo.halo_bytes;
        const uint32_t hb = IN ? st + raw_pos : st + 4 * cw * HALO_W * ROW_BYTES + a_pos;
#pragma unroll 1
        for (int kh = 0; kh < KX; ++kh)
#pragma unroll
          for (int dp = 0; dp < DP; ++dp) {
            uint32_t(&ab)[4] = a[dp % NBUF];
            uint32_t x[4];
            if constexpr (IN) {
              const uint32_t at = hb + 4 * (dp * geo.raw_hh + kh) * RAW_W;
              x[0] = lds(at);
              x[1] = lds(at + 32);
              x[2] = lds(at + geo.raw_stride);
              x[3] = lds(at + geo.raw_stride + 32);
            } else {
              const uint32_t at = hb + (dp * geo.HH + kh) * HALO_W * ROW_BYTES;
              x[0] = lds(at + c_lo);
              x[1] = lds(at + 8 * ROW_BYTES + c_lo);
              x[2] = lds(at + c_hi);
              x[3] = lds(at + 8 * ROW_BYTES + c_hi);
            }
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              ab[e] = MAP_ROUNDS ? x[e] : direct::to_tf32(__uint_as_float(x[e]));
              cute::warpgroup_fence_operand(ab[e]);
            }
            // The resident filter holds B: the stage's last A values are in registers, so it goes back now.
            if (kh == KX - 1 && dp == DP - 1 && geo.resident) Barrier::arrive(&empty[s]);
            fence_acc(acc);
            cute::warpgroup_arrive();
#pragma unroll
            for (int kd = 0; kd < KX; ++kd)
              if (dp - kd >= 0 && dp - kd < TD)
                gmma_rs<OpRS>(ab, sw32_desc(fb + (kd * KX + kh) * GB), acc[dp - kd], std::make_index_sequence<NA>{});
            cute::warpgroup_commit_batch();
            cute::warpgroup_wait<NBUF - 1>();
            fence_acc(acc);
          }
        if (!geo.resident) {  // B came from the stage: its MMAs must retire first
          cute::warpgroup_wait<0>();
          fence_acc(acc);
          Barrier::arrive(&empty[s]);
        }
      }
      cute::warpgroup_wait<0>();
      fence_acc(acc);
    } else {
    // MMAs for this warpgroup's M blocks up to its last one with an output row: where the output's edge
    // cuts the tile (the headline forward's 98 = 12 x 8 + 2 rows along h, 24 x 4 + 2 along d), the blocks
    // past it cost no tensor-core time (v0.30).
    int nv = 0;
    {
      const DirectPhase& pv = p.phase[t.o.phase];
#pragma unroll
      for (int mb = 0; mb < C::MB; ++mb) {
        const int m = C::block_m(cwu, mb);
        if (t.o.q0d + C::block_plane(m) < pv.count[0] && t.o.q0h + C::block_row(m) < pv.count[1]) nv = mb + 1;
      }
    }
    int held = -1;  // the stage whose MMAs may still be in flight
    auto chunks = [&](auto nv_const) {
    constexpr int NV = decltype(nv_const)::value;
    for (int c = 0; c < t.nchunks; ++c, ++it) {
      const int s = it % ns;
      if constexpr (HALO_TO_MMA)
        TxBarrier::wait(&full[s], (it / ns) & 1);
      else
        Barrier::wait(&ready[s], (it / ns) & 1);
      const uint32_t st = smem_addr + s * geo.stage_bytes;
      const uint32_t fb = geo.resident ? filter_addr + c * ntzy * GB : st + P * geo.halo_bytes;
      fence_acc(acc);
      cute::warpgroup_arrive();
      // Descriptors by offset from the chunk's two bases (16-byte units; the start-address field never
      // carries, shared addresses being below 2^18): per tap a few uniform adds instead of rebuilding
      // five descriptors from addresses (54 instructions per tap of four MMAs before, ncu v0.29).
      const uint64_t da0 = sw32_desc(st), db0 = sw32_desc(fb);
#pragma unroll 1
      for (int kd = 0; kd < t.tz; ++kd)
#pragma unroll 1
        for (int kh = 0; kh < t.ty; ++kh) {
          const uint64_t db = db0 + (uint32_t)((kd * t.ty + kh) * (GB / 16));
          const uint32_t tap = (kd * geo.HH + kh) * ROW16;
#pragma unroll
          for (int mb = 0; mb < NV; ++mb) {
            const uint64_t da = da0 + (tap + a_mb[mb]);
            if (SPLIT) {  // small terms first
              gmma<Op>(da + (uint32_t)(geo.halo_bytes / 16), db, acc[mb], std::make_index_sequence<NA>{});
              gmma<Op>(da, db + (uint32_t)(C::GROUP_BYTES / 16), acc[mb], std::make_index_sequence<NA>{});
            }
            gmma<Op>(da, db, acc[mb], std::make_index_sequence<NA>{});
          }
        }
      cute::warpgroup_commit_batch();
      // The previous chunk's MMAs have retired: its stage goes back to the producer.
      cute::warpgroup_wait<1>();
      fence_acc(acc);
      if (held >= 0) Barrier::arrive(&empty[held]);
      held = s;
    }
    };
    dispatch_upto<C::MB, 0>(nv, chunks);
    if (held >= 0) {
      cute::warpgroup_wait<0>();
      fence_acc(acc);
      Barrier::arrive(&empty[held]);
    }
    }

    // Epilogue in registers. Thread (g, tq) of warp wl holds halo positions g and g + 8 of output row
    // wl, columns 8j + 2tq + {0, 1} of every kx block; out[w] = sum_kx P[w + kx][kx block], so the
    // kx > 0 terms come from lane ((g + kx) mod 8, tq), from its first or second position.
    const DirectPhase& ph = p.phase[t.o.phase];
    if constexpr (WF > 0) {
      // The w fold (a forward at stride WF, phases along d and h only, every kw tap in N): halo position u
      // holds input m0 + u, whose kw column block goes to output WF (m0 + u) - pad + kw. So output
      // WF (m0 + u) + tt - pad (tt < WF) sums P[u - r][tt + WF r] over r: complete where u >= R =
      // (taps - 1) / WF, the positions this tile stores (geo.tw = HALO_W - R of them; the tiles overlap by
      // R halo positions). Terms r > 0 come from lane ((g - r) mod 8, tq): its first position for this
      // lane's second where g < r. Every output of a row is stored by the one CTA, whole 32-byte sectors.
      const int R = (t.tx - 1) / WF, m0 = t.o.q0w + ph.dmin[2];
#pragma unroll
      for (int mb = 0; mb < C::MB; ++mb) {
        const int m = C::block_m(cw, mb);
        const int qd = t.o.q0d + C::block_plane(m), qh = t.o.q0h + C::block_row(m) + wl;
        const bool row_ok = qd < ph.count[0] && qh < ph.count[1];
        const int od = ph.first[0] + p.s_out * qd, oh = ph.first[1] + p.s_out * qh;
        float* row_out = p.out + (((int64_t)t.o.n * p.Do + od) * p.Ho + oh) * p.Wo * p.Co;
#pragma unroll
        for (int tt = 0; tt < WF; ++tt) {
          float lo[J][2], hi[J][2];
#pragma unroll
          for (int j = 0; j < J; ++j)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const float b = e ? bias[j].y : bias[j].x;
              lo[j][e] = acc[mb][4 * (j + tt * J) + e] + b;
              hi[j][e] = acc[mb][4 * (j + tt * J) + 2 + e] + b;
            }
#pragma unroll
          for (int r = 1; tt + WF * r < KX; ++r) {
            const int kw = tt + WF * r;
            if (kw >= t.tx) break;
            const int src = (((g - r) & 7) << 2) | tq;
            const bool same = g >= r;
#pragma unroll
            for (int j = 0; j < J; ++j)
#pragma unroll
              for (int e = 0; e < 2; ++e) {
                const float v0 = shfl_f32(acc[mb][4 * (j + kw * J) + e], src);
                const float v1 = shfl_f32(acc[mb][4 * (j + kw * J) + 2 + e], src);
                lo[j][e] += v0;  // valid where g >= r, which every stored first position (u >= R) is
                hi[j][e] += same ? v1 : v0;
              }
          }
#pragma unroll
          for (int h2 = 0; h2 < 2; ++h2) {
            const int u = g + 8 * h2, o = WF * (m0 + u) + tt + ph.first[2];
            if (!row_ok || u < R || t.o.q0w + u - R >= ph.count[2] || o < 0 || o >= p.Wo) continue;
            float* pos = row_out + (int64_t)o * p.Co;
#pragma unroll
            for (int j = 0; j < J; ++j) {
              const int co = t.co0 + 8 * j + 2 * tq;
              if (co >= p.Co) continue;  // Co % 4 == 0: co + 1 < Co as well
              *reinterpret_cast<float2*>(pos + co) =
                  h2 ? make_float2(hi[j][0], hi[j][1]) : make_float2(lo[j][0], lo[j][1]);
            }
          }
        }
      }
    } else {
    // wcarry: a second position g + 8 whose taps reach past the halo (g + 8 + kx >= 16) is open: its sum so far
    // waits in carry, and the next tile adds its terms P[g + kx - 8][kx], the first positions of the same
    // source lanes (v0 where wrap), in the same kx order, so the sums are the TW tiles' bits.
    const bool wcr = WC && geo.wcarry;
    const bool open = wcr && g + 8 + t.tx - 1 >= HALO_W;
#pragma unroll
    for (int mb = 0; mb < C::MB; ++mb) {
      float cin[WC ? J : 1][2];  // the previous tile's open position, q0w + g - 8
      if constexpr (WC)
#pragma unroll
        for (int j = 0; j < J; ++j)
#pragma unroll
          for (int e = 0; e < 2; ++e) cin[j][e] = wcr && t.wt > 0 ? carry[mb][j][e] : 0.f;
#pragma unroll
      for (int kx = 1; kx < KX; ++kx) {
        if (kx >= t.tx) break;
        const int src = (((g + kx) & 7) << 2) | tq;
        const bool wrap = g + kx >= 8;
#pragma unroll
        for (int j = 0; j < J; ++j)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const float v0 = shfl_f32(acc[mb][4 * (j + kx * J) + e], src);
            const float v1 = shfl_f32(acc[mb][4 * (j + kx * J) + 2 + e], src);
            acc[mb][4 * j + e] += wrap ? v1 : v0;
            if constexpr (WC) {
              if (wcr && wrap) {
                cin[j][e] += v0;
                continue;  // the second position's term is in the next tile
              }
            }
            acc[mb][4 * j + 2 + e] += v1;  // only valid where g + 8 + kx < 16, i.e. w < TW (or wcarry)
          }
      }
      const int m = RS ? mb * WG + cw : C::block_m(cw, mb);  // RS: warpgroup cw holds h block cw of every plane
      const int qd = t.o.q0d + C::block_plane(m), qh = t.o.q0h + C::block_row(m) + wl;
      const bool row_ok = qd < ph.count[0] && qh < ph.count[1];
      if (!ON && !row_ok) continue;
      const int od = ph.first[0] + p.s_out * qd, oh = ph.first[1] + p.s_out * qh;
      // NDHWC: a row of positions x Co. NCDHW (ON, s_out 1): channel planes.
      const int64_t plane = (int64_t)p.Do * p.Ho * p.Wo;
      float* row_out = ON ? p.out + (int64_t)t.o.n * p.Co * plane + ((int64_t)od * p.Ho + oh) * p.Wo
                          : p.out + (((int64_t)t.o.n * p.Do + od) * p.Ho + oh) * p.Wo * p.Co;
      if constexpr (WC) {
        if (wcr) {
          // This tile's first positions are whole (g + tx - 1 < 16); its second ones where not open, or where
          // no tile follows (the host's wcarry_tiles: the next halo would start past the input); and the
          // previous tile's open position (none left of the row's first tile's q0w: no outputs, or inputs < 0).
          const int cnt = ph.count[2], q0w = t.o.q0w;
          const bool keep = open && t.wt + 1 < geo.tiles_w;
          const bool ok[3] = {row_ok && q0w + g < cnt, row_ok && !keep && q0w + g + 8 < cnt,
                              row_ok && open && q0w + g >= 8 && q0w + g - 8 < cnt};
          const int at[3] = {q0w + g, q0w + g + 8, q0w + g - 8};
#pragma unroll
          for (int j = 0; j < J; ++j) {
            const int co = t.co0 + 8 * j + 2 * tq;
            float v[3][2];
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const float b = e ? bias[j].y : bias[j].x;
              v[0][e] = acc[mb][4 * j + e] + b;
              v[1][e] = acc[mb][4 * j + 2 + e] + b;
              v[2][e] = cin[j][e] + b;
              carry[mb][j][e] = acc[mb][4 * j + 2 + e];
            }
            if (co >= p.Co) continue;  // Co % 4 == 0: co + 1 < Co as well
#pragma unroll
            for (int r = 0; r < 3; ++r) {
              if (!ok[r]) continue;
              if constexpr (ON) {
                float* q = row_out + ph.first[2] + at[r];
                q[co * plane] = v[r][0];
                q[(co + 1) * plane] = v[r][1];
              } else {
                *reinterpret_cast<float2*>(row_out + (int64_t)(ph.first[2] + p.s_out * at[r]) * p.Co + co) =
                    make_float2(v[r][0], v[r][1]);
              }
            }
          }
          continue;
        }
      }
      if constexpr (ON) {
        // Channel planes. A 14-wide tile's rows start off sector boundaries, and the two parts of a 32-byte
        // sector written by neighbouring tiles at different times cost DRAM fills and second write-backs
        // (v0.15: grad_input 3.45 against 1.88 ms). Where rows start on sectors (G > 1), a sector the next
        // tile of the group ends waits in carry, and the next tile stores it with its own part; else (G = 1)
        // each tile stores its part of a shared sector.
        const int cnt = ph.count[2], q0w = t.o.q0w, tj = (q0w / C::TW) % G;
        const bool group_end = tj == G - 1 || q0w + C::TW >= cnt;
        float* row = row_out + ph.first[2];
        if (!C::CARRY_FITS || G == 1) {
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            const int w = g + 8 * r;
            if (!row_ok || w >= C::TW || q0w + w >= cnt) continue;
#pragma unroll
            for (int j = 0; j < J; ++j) {
              const int co = t.co0 + 8 * j + 2 * tq;
              if (co >= p.Co) continue;
              row[co * plane + q0w + w] = acc[mb][4 * j + 2 * r] + bias[j].x;
              row[(co + 1) * plane + q0w + w] = acc[mb][4 * j + 2 * r + 1] + bias[j].y;
            }
          }
          continue;
        }
        if constexpr (C::CARRY_FITS) {
          // Each lane stores the positions it holds (g and g + 8 of the tile), with no shuffle: the four or
          // eight lanes writing one sector do so in the same few instructions, so L2 has the whole sector
          // before it could write it back, wherever the tile starts. What has to wait is the sector the next
          // tile of the group shares (its positions from tail on): this tile keeps its part in carry, and
          // the next tile stores it in its own epilogue, from the same lane, beside its first sector.
          // v0.31-v0.49 rotated each sector into place instead (a shuffle per value, then per sector two
          // selects and a predicated store per value: +32% instructions over the channels_last_3d kernel).
          // The shared sector starts at tile position tail >= 8 (CARRY_FITS): second positions only.
          const int tail = ((q0w + C::TW) & ~7) - q0w;
          const bool keep = !group_end && ((q0w + C::TW) & 7) != 0 && g + 8 >= tail;
          // Where this tile starts off a sector (tj > 0), the previous one of the group kept lane g's second
          // position, q0w - TW + g + 8, if that lay in the sector they share.
          const bool carried =
              row_ok && tj > 0 && (q0w & 7) != 0 && g + 8 < C::TW && q0w - C::TW + g + 8 >= (q0w & ~7);
          const bool lo_ok = row_ok && g < C::TW && q0w + g < cnt;
          const bool hi_ok = row_ok && g + 8 < C::TW && q0w + g + 8 < cnt && !keep;
          float* pos = row + q0w + g;
#pragma unroll
          for (int j = 0; j < J; ++j)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int co = t.co0 + 8 * j + 2 * tq + e;
              if (co >= p.Co) continue;
              float* at = pos + co * plane;
              const float b = e ? bias[j].y : bias[j].x;
              const float hi = acc[mb][4 * j + 2 + e] + b;
              if (carried) at[8 - C::TW] = carry[mb][j][e];
              if (lo_ok) at[0] = acc[mb][4 * j + e] + b;
              if (hi_ok) at[8] = hi;
              carry[mb][j][e] = hi;  // read by the next tile only where it was kept (carried)
            }
        }
      } else {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int w = g + 8 * r, qw = t.o.q0w + w;
          if (w >= C::TW || qw >= ph.count[2]) continue;
          float* pos = row_out + (int64_t)(ph.first[2] + p.s_out * qw) * p.Co;
#pragma unroll
          for (int j = 0; j < J; ++j) {
            const int co = t.co0 + 8 * j + 2 * tq;
            if (co >= p.Co) continue;  // Co % 4 == 0: co + 1 < Co as well
            *reinterpret_cast<float2*>(pos + co) =
                make_float2(acc[mb][4 * j + 2 * r] + bias[j].x, acc[mb][4 * j + 2 * r + 1] + bias[j].y);
          }
        }
      }
    }
    }
  }
#endif
}

// CONVT3D_WS_STAGES_BEYOND=n: the ws rows hold at most n halo stages beyond a unit's chunks (0: v0.68's
// rows, capped by the chunks); unset: as many as fit, up to S. Read at every launch (a getenv is 0.1 us,
// v0.62), so that bench/tools/wsstages.py and envab.py can switch it within one process. direct.py's
// mirror assumes it unset: it only lowers the stages, never below v0.68's count.
inline int ws_stages_beyond_env() {
  const char* v = std::getenv("CONVT3D_WS_STAGES_BEYOND");
  return v != nullptr && v[0] >= '0' && v[0] <= '9' ? std::atoi(v) : -1;
}

// The carried tiles where they are at most 4/5 of the TW tiles. A CTA then walks whole rows along w, and the halos
// its row shares with the rows other CTAs walk at other times fall out of L2: the TW tiles walked by rows
// (CONVT3D_WS_WCARRY=3) cost the headline forward 3.4% channels_last_3d and 28% NCDHW (DRAM reads 1.43 -> 5.8 GB
// there, ncu), SR head's 2.5% / 8%. So the carry's 14% fewer tiles on the headline forward (6 for 7) measured
// 0.985x channels_last_3d and 1.38x NCDHW, and SR head's 20% (8 for 10) 0.870x / 0.896x, V-Net refine's 33%
// (4 for 6, k5) 0.732x / 0.785x, its NCDHW grad_input 0.773x (GPU time, bench/tools/wsstages.py, v0.70).
constexpr int WCARRY_MAX_TILES_PER_5 = 4;

// CONVT3D_WS_WCARRY: 0 keeps the ws rows' tiles of TW outputs everywhere; 2 takes wcarry's tiles wherever the row
// can (tests: the same bits either way); 3 walks the TW tiles by whole rows as the carry does, without it (the
// walk's own cost); unset or 1: where they are at most WCARRY_MAX_TILES_PER_5 / 5 of the TW tiles
// (WgmmaKernel::geometry). Read at every launch, as ws_stages_beyond_env, for A/B runs in one process.
inline int ws_wcarry_env() {
  const char* v = std::getenv("CONVT3D_WS_WCARRY");
  return v != nullptr && (v[0] == '0' || v[0] == '2' || v[0] == '3') ? v[0] - '0' : 1;
}

// WF > 0: the w fold, a forward at stride WF whose phase table splits d and h only (direct.py,
// forward_plan_wfold): along w, count[2] inputs m from first input m_lo, dmin[2] = m_lo - R, first[2] = -pad,
// taps[2] = k, every kw tap in N in its natural order; see the kernel's epilogue.
template <int TD, int TH, int KX, int BN, int WG, int S, bool WS = false, bool SPLIT = false, bool RS = false,
          int WF = 0>
struct WgmmaKernel {
  static_assert(WS || !SPLIT, "3xtf32 is in the warp-specialized form only");
  static_assert(!RS || (WS && !SPLIT), "RS: the warp-specialized tf32 form");
  static_assert(WF == 0 || (WS && !RS), "the w fold: the warp-specialized SS form");
  static constexpr int P = SPLIT ? 2 : 1;
  using C = Config<TD, TH, KX, BN, WG, S>;

  // The NCDHW input's box planes and rows for a halo of hd x hh: as is for the ring, whose rounders read
  // positions along w; for the RS form's fragment loads, whose lanes read four channels at once, padded
  // only where the channel pitch (hd * hh * RAW_W words) is 0 mod 32, i.e. hd * hh = 0 mod 8 (RAW_W = 20):
  // four-way bank conflicts. Two-way ones (pitch 16 mod 32, the headline's 6 x 10 halo) cost less than the
  // bytes through L2 that padding them away adds: same-process A/B (v0.49), padded to 8 or 24 mod 32 against
  // this, NCDHW forward 2.345 against 2.290 ms on the headline, 0.378 against 0.368 on SR head.
  static void raw_box_dims(int hd, int hh, bool pad, int& raw_hd, int& raw_hh) {
    static_assert(RAW_W % 32 == 20, "the pitch rule below");
    raw_hd = hd;
    raw_hh = hh;
    if (!pad) return;
    int best = 0;
    for (int d = hd; d < hd + 2; ++d)
      for (int h = hh; h < hh + 4; ++h)
        if ((d * h) % 8 != 0 && (best == 0 || d * h < best)) {
          best = d * h;
          raw_hd = d;
          raw_hh = h;
        }
  }

  // 0 or a cutlass::Status value; fills geo's box and stage sizes.
  static int geometry(const DirectLaunch& p, Geometry& geo) {
    int tz = 0, ty = 0, tx = 0, cd = 0, ch = 0, cw = 0;
    for (int i = 0; i < p.num_phases; ++i) {
      const DirectPhase& ph = p.phase[i];
      cd = ph.count[0] > cd ? ph.count[0] : cd;
      ch = ph.count[1] > ch ? ph.count[1] : ch;
      cw = ph.count[2] > cw ? ph.count[2] : cw;
      if (ph.count[0] <= 0 || ph.count[1] <= 0 || ph.count[2] <= 0) continue;
      if (ph.taps[2] > KX) return 5;
      if (WF > 0 && ph.taps[2] < 1) return 5;  // every input position feeds outputs along w
      tz = ph.taps[0] > tz ? ph.taps[0] : tz;
      ty = ph.taps[1] > ty ? ph.taps[1] : ty;
      tx = ph.taps[2] > tx ? ph.taps[2] : tx;
    }
    geo.tw = WF > 0 ? HALO_W - (tx > 0 ? (tx - 1) / WF : 0) : C::TW;
    geo.tiles_d = (cd + TD - 1) / TD;
    geo.tiles_h = (ch + TH - 1) / TH;
    geo.tiles_w = (cw + geo.tw - 1) / geo.tw;
    geo.HD = TD + (tz > 0 ? tz - 1 : 0);
    geo.HH = TH + (ty > 0 ? ty - 1 : 0);
    geo.halo_bytes = geo.HD * geo.HH * HALO_W * ROW_BYTES;
    geo.stage_bytes = (P * (geo.halo_bytes + tz * ty * C::GROUP_BYTES) + 1023) / 1024 * 1024;
    geo.lo_tap = 0;
    geo.raw_bytes = geo.raw_stride = geo.raw_offset = 0;
    geo.raw_hd = geo.HD;
    geo.raw_hh = geo.HH;
    geo.raw_rows = geo.raw_row_pitch = 0;
    geo.wgroup = 1;
    for (int i = 0; i < p.num_phases; ++i) geo.lo_tap += p.phase[i].taps[0] * p.phase[i].taps[1] * p.phase[i].taps[2];
    const int chunks = (p.Cr + KC - 1) / KC;
    geo.stages = chunks < S ? (chunks > 0 ? chunks : 1) : S;
    geo.resident = 0;
    geo.filter_bytes = 0;
    if (WS) {
      // The filter is half of each stage's bytes and the same for every tile of a (phase, C_out block):
      // where all of it fits beside two halo stages, it is loaded once per CTA and switch, not per
      // chunk and tile (L2 ran at 78% of its throughput on the headline forward, ncu).
      const size_t halo_stage = (P * geo.halo_bytes + 1023) / 1024 * 1024;
      const size_t fbytes = (size_t)chunks * tz * ty * P * C::GROUP_BYTES;
      const size_t two = geo.stages < 2 ? geo.stages : 2;
      // NCDHW input: its raw ring (1 KiB aligned, like every TMA destination here) and two barriers per
      // buffer besides; in the RS form the stages are a chunk's two raw boxes, and there is no ring.
      raw_box_dims(geo.HD, geo.HH, RS, geo.raw_hd, geo.raw_hh);
      const int raw_box = geo.raw_hd * geo.raw_hh * RAW_W * 4 * 4;
      const bool rows = p.in_ncdhw && !RS && p.in_sums != nullptr && p.Wi % 4 != 0;
      const int row_pitch = (geo.raw_hd * RAW_W * 4 * 4 + 127) / 128 * 128;
      const int raw_stride = ((rows ? geo.raw_hh * row_pitch : raw_box) + 1023) / 1024 * 1024;
      const size_t raw = p.in_ncdhw && !RS ? (size_t)RAW_BUFFERS * (raw_stride + 16) + 1024 : 0;
      const size_t stage = p.in_ncdhw && RS ? 2 * (size_t)raw_stride : halo_stage;
      if (fbytes > 0 && 1024 + fbytes + raw + two * (stage + 24) + 16 <= kSm90SmemOptin) {
        geo.resident = 1;
        geo.filter_bytes = (int)fbytes;
        geo.stage_bytes = (int)stage;
      }
      if (p.in_ncdhw) {
        if (!geo.resident) return 5;
        geo.raw_bytes = raw_box;
        geo.raw_stride = raw_stride;
        geo.raw_rows = rows ? 1 : 0;
        geo.raw_row_pitch = rows ? row_pitch : 0;
      }
      // As many stages as Hopper's 227 KiB hold, up to S: strided phases (1-2 taps per axis) have small
      // stages and little MMA work per chunk, so their pipeline is bound by load latency, not space.
      // Not capped by the chunks of a unit: the ring runs across units (stage it % stages over the CTA's whole
      // walk), so where a unit has few chunks (SR head's grad_input: one of 8 grad_y channels) more stages
      // let TMA fetch the next units' halos ahead of their MMAs (v0.69).
      const int fit = (int)((kSm90SmemOptin - 1024 - 16 - geo.filter_bytes - raw) / (geo.stage_bytes + 24));
      const int beyond = ws_stages_beyond_env();
      const int want = beyond < 0 || chunks + beyond > S ? S : (chunks > 0 ? chunks : 1) + beyond;
      geo.stages = want < fit ? want : (fit > 0 ? fit : 1);
      if (p.in_ncdhw && !RS) geo.raw_offset = (geo.stages * geo.stage_bytes + geo.filter_bytes + 1023) / 1024 * 1024;
    }
    geo.wcarry = 0;
    if (WS) {
      // The walk is decided here, once per launch: the knob is one getenv, and run() launches what this says.
      const int mode = ws_wcarry_env();
      // Whole-sector NCDHW stores (asked by out_sectors, where rows start on 32-byte sectors and the carried
      // sector has registers): groups of w-neighbour tiles (see walk_next), each starting on a sector. That walk
      // has the groups and the carry registers, so it takes no wcarry.
      const bool sectors = p.out_sectors && p.out_ncdhw && C::CARRY_FITS && p.num_phases == 1 && p.s_out == 1 &&
                           p.Wo % 8 == 0 && p.phase[0].first[2] % 8 == 0;
      const int wt = p.out_ncdhw && p.out_sectors ? 0 : wcarry_tiles(p);
      if (wt > 0 && (mode == 2 || (mode == 1 && WCARRY_MAX_TILES_PER_5 * geo.tiles_w >= 5 * wt))) {
        geo.wcarry = 1;
        geo.tiles_w = wt;
      }
      constexpr int GW = 8 / C::TW_STEP;  // the fewest tiles that end on a sector
      geo.wgroup = geo.wcarry || mode == 3 ? geo.tiles_w : sectors ? GW : 1;  // 3: walk rows, TW tiles
    }
    if (geo.raw_hd > 256 || geo.raw_hh > 256) return 5;  // TMA box limit (raw_hd >= HD, raw_hh >= HH)
    return 0;
  }

  // Tiles along w with wcarry (0: the row cannot). The TW tiles overlap by tx - 1 halo positions: 16 for 14
  // outputs at k3, and a row of Wo outputs takes ceil(Wo / 14) of them, 112 halo positions for the headline
  // forward's 96 inputs (98 outputs), 80 for video-gen's 64 (k3 p1), 48 for medium's 32; tiles of 16 inputs
  // need 96, 64 and 32. Tile t holds inputs i0 + 16 t (i0 = max(dmin, 0)), so output q0w + w (q0w = i0 - dmin
  // + 16 t) sums halo positions w .. w + tx - 1: whole for w <= 16 - tx, else open until the next tile. The
  // fewest tiles T such that the last one stores every output to count (by its open positions too, where no
  // input lies past its halo) or else one more whose carried positions reach count.
  static int wcarry_tiles(const DirectLaunch& p) {
    if (!(WS && WF == 0 && C::WCARRY) || p.num_phases != 1 || p.in_sums != nullptr ||
        p.s_in != 1 || p.s_out != 1)
      return 0;
    const DirectPhase& ph = p.phase[0];
    const int tx = ph.taps[2], cnt = ph.count[2], dmin = ph.dmin[2], qoff = dmin < 0 ? -dmin : 0;
    if (tx < 1 || cnt <= 0) return 0;
    int t = (cnt + tx - 1 - qoff + HALO_W - 1) / HALO_W;
    if (t < 1) t = 1;
    const int end = qoff + HALO_W * (t - 1);  // where tile t - 1 ends (and a tile t would start)
    if (t > 1 && end >= cnt && end + dmin >= p.Wi) --t;
    return t;
  }

  // The warp-specialized form keeps its epilogue in registers (no scratch), three barriers per stage
  // and two for the resident filter.
  static size_t smem_bytes(const Geometry& geo) {
    const size_t stages = (size_t)geo.stages * geo.stage_bytes;
    if (WS && geo.raw_bytes > 0 && !RS)
      return 1024 + geo.raw_offset + (size_t)RAW_BUFFERS * geo.raw_stride +
             (3 * geo.stages + 2 + 2 * RAW_BUFFERS) * sizeof(uint64_t);
    if (WS) return 1024 + stages + geo.filter_bytes + (3 * geo.stages + 2) * sizeof(uint64_t);
    const size_t scratch = (size_t)C::THREADS / 32 * 16 * C::SCRATCH_STRIDE * 4;
    return 1024 + (stages > scratch ? stages : scratch) + geo.stages * sizeof(uint64_t);
  }

  static int can_implement(const DirectLaunch& p) {
    Geometry geo;
    return checked_geometry(p, geo);
  }

  // can_implement's checks, leaving the launch's geometry in geo where they pass (0): run() launches that one,
  // so the environment knobs that geometry() reads are read once per launch.
  static int checked_geometry(const DirectLaunch& p, Geometry& geo) {
    if (p.Cr % 4 != 0 || p.Co % 4 != 0) return 1;  // 16-byte TMA strides and epilogue stores
    if (p.out_ncdhw && (!WS || p.s_out != 1)) return 5;  // NCDHW rows: unit output stride, ws form
    // NCDHW input: ws form, 16-byte TMA row strides, or (the ring form with sums, whose rounders mask each
    // row) 16-byte plane strides and a box per row
    if (p.in_ncdhw && (!WS || (p.Wi % 4 != 0 && (RS || p.in_sums == nullptr || (long long)p.Hi * p.Wi % 4 != 0))))
      return 5;
    // Sums and the channels_last copy of an NCDHW input: the ring form's rounders (RS has none)
    if (p.in_ncdhw && p.in_sums != nullptr && (RS || !C::RING_SUMS)) return 5;
    if (p.in_copy != nullptr && (!WS || RS || !p.in_ncdhw || p.in_sums == nullptr)) return 5;
    // the rounders' copy offsets within a sample are 32-bit
    if (p.in_copy != nullptr && (long long)p.Di * p.Hi * p.Wi * p.Cr >= (1LL << 31)) return 5;
    if (p.s_in != 1) return 5;                      // the halo rows must be dense along w
    if (WF > 0 && (p.s_out != WF || p.out_ncdhw || p.in_ncdhw || p.in_sums != nullptr)) return 5;
    if (RS)  // A fragments shared across kd by compile-time tap counts: every phase has KX taps per axis
      for (int i = 0; i < p.num_phases; ++i) {
        const DirectPhase& ph = p.phase[i];
        if (ph.count[0] > 0 && ph.count[1] > 0 && ph.count[2] > 0 &&
            (ph.taps[0] != KX || ph.taps[1] != KX || ph.taps[2] != KX))
          return 5;
      }
    if (p.num_phases < 1 || p.num_phases > kDirectMaxPhases || p.s_out < 1) return 4;
    if ((long long)p.N * p.num_phases > 65535 || (p.Co + BN - 1) / BN > 65535) return 5;
    int code = geometry(p, geo);
    if (code != 0) return code;
    if (p.in_sums != nullptr && !sums_cover(p, geo)) return 5;
    return sm90_fits(smem_bytes(geo));
  }

  // Input sums (p.in_sums, and p.in_copy): the ws form (an NCDHW input: the ring form) and one phase whose tiles' halos, each cut at
  // the next tile's first halo position, cover the whole input (the kernel's ownership rule).
  static bool sums_cover(const DirectLaunch& p, const Geometry& geo) {
    if (!WS || (p.in_ncdhw && RS) || p.num_phases != 1) return false;
    const DirectPhase& ph = p.phase[0];
    const int tile[3] = {TD, TH, C::TW}, halo[3] = {geo.HD, geo.HH, HALO_W}, extent[3] = {p.Di, p.Hi, p.Wi};
    for (int a = 0; a < 3; ++a) {
      const int tiles = (ph.count[a] + tile[a] - 1) / tile[a];
      if (ph.count[a] <= 0 || ph.dmin[a] > 0 || (tiles - 1) * tile[a] + ph.dmin[a] + halo[a] < extent[a]) return false;
    }
    return true;
  }

  static int run(const DirectLaunch& p) {
    Geometry geo;
    int code = checked_geometry(p, geo);
    if (code != 0) return code;
    if (geo.tiles_d == 0 || geo.tiles_h == 0 || geo.tiles_w == 0 || p.N == 0 || p.Co == 0) return 0;
    const long long tiles = (long long)geo.tiles_d * geo.tiles_h * geo.tiles_w;
    if (tiles > 0x7fffffffLL) return 5;

    auto encode = encode_fn();
    if (encode == nullptr) return 5;
    long long taps = 0;
    for (int i = 0; i < p.num_phases; ++i)
      taps += (long long)p.phase[i].taps[0] * p.phase[i].taps[1] * p.phase[i].taps[2];
    CUtensorMap tin, tw;
    // The ws kernel's MAP_ROUNDS: TMA rounds the input to tf32 as it lands it. The one-warpgroup form rounds
    // it again in place (the same bits: rounding a tf32 value is exact).
    const bool map_rounds = input_map_rounds(SPLIT, p.in_sums != nullptr);
    const cuuint32_t in_box[5] = {KC, HALO_W, (cuuint32_t)geo.HH, (cuuint32_t)geo.HD, 1};
    const cuuint32_t in_box_ncdhw[5] = {RAW_W, (cuuint32_t)geo.raw_hh, (cuuint32_t)geo.raw_hd, 4, 1};
    // Rows form: the plane's H x W positions as one axis, a unit axis in h's place (see Geometry::raw_rows).
    const cuuint64_t rows_dim[5] = {(cuuint64_t)p.Hi * p.Wi, 1, (cuuint64_t)p.Di, (cuuint64_t)p.Cr, (cuuint64_t)p.N};
    const cuuint32_t rows_box[5] = {RAW_W, 1, (cuuint32_t)geo.raw_hd, 4, 1};
    const bool in_ok = geo.raw_rows ? encode_packed5(&tin, p.in, rows_dim, rows_box, CU_TENSOR_MAP_SWIZZLE_NONE,
                                                     CU_TENSOR_MAP_L2_PROMOTION_L2_128B, nullptr, map_rounds)
                       : p.in_ncdhw ? encode_ncdhw(&tin, p.in, p.N, p.Di, p.Hi, p.Wi, p.Cr, in_box_ncdhw,
                                                 CU_TENSOR_MAP_L2_PROMOTION_L2_128B, map_rounds)
                                  : encode_ndhwc(&tin, p.in, p.N, p.Di, p.Hi, p.Wi, p.Cr, in_box, CU_TENSOR_MAP_SWIZZLE_32B,
                                                 CU_TENSOR_MAP_L2_PROMOTION_L2_128B, 1, 0, map_rounds);
    if (!in_ok) return 5;
    const cuuint32_t ones[3] = {1, 1, 1};
    const cuuint64_t w_dim[3] = {(cuuint64_t)p.Cr, (cuuint64_t)p.Co, (cuuint64_t)(taps > 0 ? P * taps : 1)};
    const cuuint64_t w_stride[2] = {(cuuint64_t)p.Cr * 4, (cuuint64_t)p.Co * p.Cr * 4};
    const cuuint32_t w_box[3] = {KC, BN, KX};
    if (encode(&tw, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 3, const_cast<float*>(p.weight), w_dim, w_stride, w_box, ones,
               CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_32B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS)
      return 5;

    const size_t bytes = smem_bytes(geo);
    const unsigned coblocks = (unsigned)((p.Co + BN - 1) / BN), zs = (unsigned)(p.N * p.num_phases);
    if constexpr (WS) {
      const long long groups =
          (long long)geo.tiles_d * geo.tiles_h * ((geo.tiles_w + geo.wgroup - 1) / geo.wgroup) * coblocks * zs;
      const long long units = groups * geo.wgroup;
      const int sms = sm_count();
      if (units > 0x7fffffffLL || sms <= 0) return units > 0x7fffffffLL ? 5 : 1000 + (int)cudaGetLastError();
      const dim3 grid((unsigned)(groups < sms ? groups : sms));
      if (p.in_sums != nullptr && p.in_sums_rows < SUM_ROWS * (int)grid.x) return 5;
      if constexpr (WF > 0) {
        return direct::launch_with_smem(wgmma_ws_kernel<TD, TH, KX, BN, WG, S, SPLIT, false, false, false, false, WF>,
                                        grid, 128 * (WG + 1), bytes, p.stream, p, tin, tw, geo, (int)units);
      } else {
      using Fn = decltype(&wgmma_ws_kernel<TD, TH, KX, BN, WG, S, SPLIT, false, false, false, RS>);
      // An NCDHW input summed (and copied) as the ring form's rounders read it; RS never gets here (can_implement).
      auto ring_sums_kernel = [&]() -> Fn {
        if constexpr (RS || !C::RING_SUMS)
          return nullptr;
        else
          return p.out_ncdhw ? &wgmma_ws_kernel<TD, TH, KX, BN, WG, S, SPLIT, true, true, true, RS>
                             : &wgmma_ws_kernel<TD, TH, KX, BN, WG, S, SPLIT, false, true, true, RS>;
      };
      Fn kernel =
          p.in_ncdhw  ? (p.in_sums != nullptr ? ring_sums_kernel()
                         : p.out_ncdhw ? wgmma_ws_kernel<TD, TH, KX, BN, WG, S, SPLIT, true, true, false, RS>
                                       : wgmma_ws_kernel<TD, TH, KX, BN, WG, S, SPLIT, false, true, false, RS>)
          : p.in_sums ? (p.out_ncdhw ? wgmma_ws_kernel<TD, TH, KX, BN, WG, S, SPLIT, true, false, true, RS>
                                     : wgmma_ws_kernel<TD, TH, KX, BN, WG, S, SPLIT, false, false, true, RS>)
                      : (p.out_ncdhw ? wgmma_ws_kernel<TD, TH, KX, BN, WG, S, SPLIT, true, false, false, RS>
                                     : wgmma_ws_kernel<TD, TH, KX, BN, WG, S, SPLIT, false, false, false, RS>);
      return direct::launch_with_smem(kernel, grid, 128 * (WG + 1), bytes, p.stream, p, tin, tw, geo, (int)units);
      }
    } else {
      const dim3 grid((unsigned)tiles, coblocks, zs);
      return direct::launch_with_smem(wgmma_kernel<TD, TH, KX, BN, WG, S>, grid, C::THREADS, bytes, p.stream, p, tin,
                                      tw, geo);
    }
  }

  static DirectEntry entry(const char* name) { return DirectEntry{name, &can_implement, &run, WF > 0}; }
};

}  // namespace direct90
}  // namespace convt3d
