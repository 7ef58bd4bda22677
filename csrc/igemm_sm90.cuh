// Hopper implicit GEMM per filter tap, on the tap-reuse contract (direct_launch.h): for every phase,
//   out[n, first + s_out*q, co] = bias[co] + sum_j sum_cr in[n, s_in*q + dmin + j, cr] * w[ph][j][co][cr].
//
// Why beside the tap-reuse kernels: those fold kw into GEMM N and reuse a halo across every tap, which
// pays where channels are narrow and taps many. Strided layers with wide channels have 1-2 taps per
// axis in each forward phase (the kw fold idles a third to two thirds of N) and a stride-times wider
// halo in grad_input; there the plain implicit GEMM, one tap after another, keeps the tensor cores fed:
// GEMM M = 128 output positions of one phase (a TD x TH x TW box), N = a BN block of output channels,
// K = taps x reduction channels in chunks of 32 (one 128-byte row).
//
// Per (tap, chunk), one TMA box of the input (the tile's positions shifted by the tap, every s_in-th
// position: TMA's traversal stride; out-of-range positions and channels zero-filled) and one box of
// the filter's [BN][32] block, both 128-byte swizzled. An NCDHW input (IN_NC: the 3xtf32 rows' unit-stride
// grad_input) comes as one box of TW + 8 positions along w per channel instead, unswizzled; the consumers pick
// the same A elements from it, so the result is the same bits, without the channels_last_3d copy of the input
// that the caller would otherwise make. Warp-specialized and persistent: one producer
// thread issues the loads into a ring of stages; two consumer warpgroups (64 rows each) load their A
// fragments from shared memory, round them to tf32 (direct::to_tf32) in registers, and run RS-wgmma with B by
// descriptor (the host pre-rounds the filter). 3xtf32 (SPLIT): each A element splits into rounded hi and
// lo parts in registers, the filter's lo part is a second B box (the host stacks [hi; lo]), and each k8
// step runs a_lo b_hi + a_hi b_lo + a_hi b_hi; the tensor cores' accumulators are added into fp32
// registers after every tap (their own accumulation over a whole reduction loses an order of magnitude,
// docs/performance.md v0.7). The epilogue stores from registers while the producer
// already fills the next unit's stages.
//
// The walk. Units (phase, sample, C_out block, tile) go round robin to the persistent CTAs, u = b, b + G,
// ..., heaviest phase first, so that the round robin ends with the light ones. A strided forward
// (several phases) whose groups (sample, C_out block, tile) fill the grid walks by groups instead: CTA b
// takes groups b, b + G, ... and runs each group's phases in a row. The phases of a tile read the same
// input box, so its later phases find it in L2; walked phase after phase, an input larger than L2 came
// from DRAM once per phase (U-Net 64->32's forward: 1.18 GB read, 0.14 GB by groups; 4% faster, since the
// kernel is not DRAM-bound). Every group carries the same taps, so the round robin stays balanced.
//
// SUMS (grad_input's bias gradient, DirectLaunch::in_sums): the kernel also sums its input over
// positions, per channel, from the stages it loads anyway, instead of a pass of its own over grad_y
// (a 64^3 U-Net decoder's grad_y is 134 MB: 75 us). Each input element must be counted once although up
// to k^3 taps read it: per axis a window of s consecutive taps [a, a + s) does that, since tile position q
// at tap t reads s*q + dmin + t, and over q these windows tile [dmin + a, s*count + dmin + a) without
// overlap; the host picks a (IgemmGeometry::sum_a) so that the span covers the input (positions past it
// are TMA's zero fill). Only the units of the first channel block sum. The consumer warps do it from the
// A values they load for their MMAs anyway: each thread adds its two rows of each of its eight channels of
// a summed stage into registers (IgemmConfig::SUM_CHUNKS chunks of 32 channels, so C_r <= 128), and only
// after its last unit reduces them over lanes and warps (shuffles, then eight shared rows added in order)
// into the CTA's global row: the same bits run after run. Why there: the kernel is bound by shared memory
// on its n64 and n32 rows, and v0.27-v0.39's summing producer warps read each summed stage from it once
// more (U-Net 64->32's grad_input 0.417 ms with them against 0.289 without sums on the H200); v0.27's first
// form in the MMA warps reduced over lanes at every stage and lost (0.112 -> 0.142 ms on U-Net 128->64).
// Registers cost no shared-memory bandwidth; the adds are 16 FADDs per summed stage per thread.
//
// Built from CuTe/CUTLASS parts: SM90_TMA_LOAD_{3,5}D, the SM90 GMMA TF32 RS atoms, GmmaDescriptor,
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

constexpr int IG_KC = 32;     // reduction channels per stage: one 128-byte, SW128 row per position
constexpr int IG_ROWS = 128;  // output positions per unit: two consumer warpgroups of 64 rows

// Per-launch sizes the host derives (the Python mirror is direct.igemm_smem_bytes / igemm_units).
struct IgemmGeometry {
  int tiles_d, tiles_h, tiles_w;  // tiles per phase, over the largest phase's counts
  int coblocks;                   // BN blocks of output channels
  int per_phase;                  // units per phase: N x tiles x coblocks
  int units;                      // per_phase x phases
  int lo_tap;                     // 3xtf32: the filter's lo parts start this many taps after its hi parts
  int order[kDirectMaxPhases];    // phase indices, most taps first
  int phase_runs;                 // 1: each CTA walks whole groups, a group's phases in a row (below)
  int sum_a[3];                   // SUMS: the first tap of the window that counts each input element once
};

template <int TH, int TW, int BN, int S, bool SPLIT = false, bool IN_NC = false>
struct IgemmConfig {
  static constexpr int TD = IG_ROWS / (TH * TW);
  // IN_NC: the A part of a stage is one box of [TD][TH][32 channels][NC_W positions along w], starting at the
  // tap's first position rounded down to 16 bytes (TMA traps on a box start off 16 bytes along the innermost
  // axis): TW + 8 positions cover the tile and the shift of up to 3.
  static constexpr int NC_W = TW + 8;
  static constexpr int A_BYTES = IN_NC ? NC_W * IG_KC * TH * TD * 4 : IG_ROWS * IG_KC * 4;
  static constexpr int B_BYTES = BN * IG_KC * 4;
  static constexpr int P = SPLIT ? 2 : 1;                     // B parts: hi (and lo)
  static constexpr int STAGE_BYTES = A_BYTES + P * B_BYTES;  // 1 KiB multiples: SW128 atoms stay aligned
  static constexpr int THREADS = 384;                     // producer + two consumer warpgroups
  static constexpr int PRODUCER_REGS = 40, CONSUMER_REGS = 232;
  // setmaxnreg only moves registers within the CTA's allocation (168 per thread at 384 threads).
  static_assert(PRODUCER_REGS * 128 + CONSUMER_REGS * 256 <= 168 * THREADS, "register budget");
  static_assert(TD * TH * TW == IG_ROWS, "tile of 128 positions");
  static_assert(BN % 8 == 0 && BN >= 32 && BN <= 256, "N tile");
  static_assert(S >= 2, "stages");
  // The ring's stages: S, or with IN_NC's larger stages as many as fit, up to S.
  static constexpr int FIT = (int)((kSm90SmemOptin - 1024 - 16 * S) / STAGE_BYTES);
  static constexpr int RING = IN_NC && FIT < S ? FIT : S;
  // SUMS: chunks of 32 input channels a consumer thread keeps sums of in registers (8 floats each): C_r <= 128.
  static constexpr int SUM_CHUNKS = 4;
  static constexpr int SUM_ROWS = 8;  // SUMS: a shared row of C_r floats per consumer warp, added in order
  static __host__ __device__ size_t sums_offset() { return (size_t)RING * STAGE_BYTES + 2 * RING * sizeof(uint64_t); }
  // SECTORS (a strided forward's NCDHW output by whole rows, DirectLaunch::out_sectors): the two sibling
  // phases along w of a (d, h) phase pair, [BN channels][2 * 128 outputs] with rows 4 floats longer (the
  // float2 writes from the accumulators then hit 32 distinct banks per half warp), in a ring of as many
  // stages as fit beside it; where fewer than four do (N blocks of 128), the kernel keeps its plain stores.
  static constexpr int OUT_PL = 2 * IG_ROWS + 4;
  static constexpr int OUT_BYTES = BN * OUT_PL * 4;
  static constexpr int SECTOR_FIT = (int)((kSm90SmemOptin - 1024 - OUT_BYTES - 16 * S) / STAGE_BYTES);
  static constexpr int SECTOR_RING = SECTOR_FIT < RING ? SECTOR_FIT : RING;
  static constexpr bool SECTORS_OK = SECTOR_RING >= 4;
  static __host__ __device__ size_t out_offset() {
    return (size_t)SECTOR_RING * STAGE_BYTES + 2 * SECTOR_RING * sizeof(uint64_t);
  }
};

// IN_NC's per-thread walk over a stage's box (IgemmConfig::NC_W). The stage holds a box of an NCDHW input,
// [TD][TH][32 channels][NC_W positions along w] (the map's (w, c, h, d, n) order), from the tap's first position
// rounded down to 16 bytes. Rows of NC_W = 24 positions per channel put channel c of box position w at word
// 24 c + w of its (d, h) row: the A loads' lanes (8 consecutive positions g, shifted alike, and 4 channels tq) hit
// banks 24 tq + shift + g mod 32, four runs of 8 a multiple of 8 apart, all 32 distinct. One box of [32][positions]
// would give every channel the same bank (planes of 128 floats), and TMA places boxes only on 128-byte
// boundaries, so no padding between planes could help. (Boxes of 8 positions, call608: conflict-free too, but 32-byte
// rows, three boxes a stage: forwards 1.4-2.0x slower than channels_last_3d.) Without IN_NC the walk is empty, so
// the channels_last_3d instantiations compile as they did before it.
template <bool ON, int TH, int TW, int NC_W>
struct NcWalk {
  // Never used (the loads take the channels_last_3d addresses); KK and HALF keep the values of the dead branch's
  // offsets before NcWalk, which the 3xtf32 SECTORS instance's register allocation followed (same SASS).
  static constexpr uint32_t a0 = 0, a1 = 0, KK = 256, HALF = 128;
  __device__ NcWalk(int, int) {}
  __device__ void unit(const DirectPhase&) {}
  __device__ void next(int) {}
};

template <int TH, int TW, int NC_W>
struct NcWalk<true, TH, TW, NC_W> {
  int row0, row1;                         // the thread's rows m0, m0 + 8: their word at channel tq, w = 0
  int c = 0, jw = 0, dmin = 0, taps = 1;  // the next k-block's chunk and tap along w; the unit phase's dmin and taps
  uint32_t a0 = 0, a1 = 0;                // the k-block's byte offsets of the two rows in a stage
  static constexpr uint32_t KK = 8 * NC_W * 4, HALF = 4 * NC_W * 4;  // 8 and 4 channels on
  __device__ NcWalk(int m0, int tq) {
    const int m1 = m0 + 8;
    row0 = (((m0 / (TH * TW)) * TH + (m0 / TW) % TH) * IG_KC + tq) * NC_W + m0 % TW;
    row1 = (((m1 / (TH * TW)) * TH + (m1 / TW) % TH) * IG_KC + tq) * NC_W + m1 % TW;
  }
  __device__ void unit(const DirectPhase& ph) {
    c = jw = 0;
    dmin = ph.dmin[2];
    taps = ph.taps[2];
  }
  // The k-block's offsets, then on to the next (the producer's order: chunks within taps, kw fastest). The tile's
  // first position is a multiple of 8, so the shift is (dmin + jw) % 4.
  __device__ void next(int chunks) {
    const int sh = (dmin + jw) & 3;
    a0 = (uint32_t)((row0 + sh) * 4);
    a1 = (uint32_t)((row1 + sh) * 4);
    if (++c == chunks) {
      c = 0;
      if (++jw == taps) jw = 0;
    }
  }
};

template <int TH, int TW, int BN, int SN, bool SPLIT, bool SUMS = false, bool SECTORS = false, bool IN_NC = false>
__global__ void __launch_bounds__(384, 1)
    igemm_kernel(const __grid_constant__ DirectLaunch p, const __grid_constant__ CUtensorMap tmap_in,
                 const __grid_constant__ CUtensorMap tmap_w, const IgemmGeometry geo) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = IgemmConfig<TH, TW, BN, SN, SPLIT, IN_NC>;
  constexpr int S = SECTORS ? C::SECTOR_RING : C::RING;  // the ring's stages
  // tf32 without input sums: the input's map is TFLOAT32 (run()), so the stages hold x rounded to tf32 already.
  // SPLIT needs the unrounded x for its low part, SUMS sums it in fp32.
  constexpr bool MAP_ROUNDS = input_map_rounds(SPLIT, SUMS);
  static_assert(!SECTORS || (C::SECTORS_OK && !SUMS), "SECTORS: a ring of four stages or more");
  static_assert(!IN_NC || (!SUMS && TW == 16), "IN_NC: no input sums, tiles 16 wide (rows of 24 positions)");
  using Op = typename GmmaRS<BN>::Op;
  using Barrier = cutlass::arch::ClusterBarrier;
  using TxBarrier = cutlass::arch::ClusterTransactionBarrier;
  constexpr int NA = BN / 2;  // accumulator floats per thread
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = smem_1k(smem_raw);
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + S * C::STAGE_BYTES);
  uint64_t* empty = full + S;

  const int tid = threadIdx.x, wg = tid >> 7;
  if (tid == 0) {
    for (int s = 0; s < S; ++s) {
      TxBarrier::init(&full[s], 1);
      Barrier::init(&empty[s], 256);
    }
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();

  const int tiles = geo.tiles_d * geo.tiles_h * geo.tiles_w;
  const int chunks = (p.Cr + IG_KC - 1) / IG_KC;
  // Every role walks the same units, so the stage and barrier phase of k-block `it` (counted over the
  // CTA's whole walk) agree between them.
  struct Unit {
    int phase, n, co0, q0d, q0h, q0w, taps, tap0;
  };
  const int P = p.num_phases, G = gridDim.x;
  const int first_unit = geo.phase_runs ? (int)blockIdx.x * P : (int)blockIdx.x;
  auto next_unit = [&](int u) -> int {
    return geo.phase_runs ? ((u + 1) % P != 0 ? u + 1 : u + 1 + (G - 1) * P) : u + G;
  };
  auto unit_at = [&](int u, Unit& t) -> bool {
    int r;
    if (geo.phase_runs) {
      t.phase = geo.order[u % P];
      r = u / P;
    } else {
      t.phase = geo.order[u / geo.per_phase];
      r = u % geo.per_phase;
    }
    const int tile = r % tiles;
    r /= tiles;
    t.co0 = (r % geo.coblocks) * BN;
    t.n = r / geo.coblocks;
    t.q0w = (tile % geo.tiles_w) * TW;
    t.q0h = ((tile / geo.tiles_w) % geo.tiles_h) * TH;
    t.q0d = (tile / (geo.tiles_w * geo.tiles_h)) * C::TD;
    const DirectPhase& ph = p.phase[t.phase];
    if (t.q0d >= ph.count[0] || t.q0h >= ph.count[1] || t.q0w >= ph.count[2]) return false;
    t.taps = ph.taps[0] * ph.taps[1] * ph.taps[2];
    t.tap0 = t.taps > 0 ? (int)(ph.w_offset / ((long long)p.Co * p.Cr)) : 0;
    return true;
  };

  constexpr int PWG = 1;  // producer warpgroups
  if (wg == 0) {
    cutlass::arch::warpgroup_reg_dealloc<C::PRODUCER_REGS>();
    if (tid == 0) {
      constexpr uint64_t hint = static_cast<uint64_t>(cute::TMA::CacheHintSm90::EVICT_NORMAL);
      int it = 0;
      for (int u = first_unit; u < geo.units; u = next_unit(u)) {
        Unit t;
        if (!unit_at(u, t) || t.taps == 0) continue;  // a phase without taps: bias only, nothing to load
        const DirectPhase& ph = p.phase[t.phase];
        const int bz = p.s_in * t.q0d + ph.dmin[0], by = p.s_in * t.q0h + ph.dmin[1], bx = p.s_in * t.q0w + ph.dmin[2];
        for (int jd = 0, j = 0; jd < ph.taps[0]; ++jd)
          for (int jh = 0; jh < ph.taps[1]; ++jh)
            for (int jw = 0; jw < ph.taps[2]; ++jw, ++j)
              for (int c = 0; c < chunks; ++c, ++it) {
                const int s = it % S;
                Barrier::wait(&empty[s], ((it / S) & 1) ^ 1);
                uint8_t* st = smem + s * C::STAGE_BYTES;
                TxBarrier::arrive_and_expect_tx(&full[s], C::STAGE_BYTES);
                if constexpr (IN_NC) {  // from 16 bytes (bx + jw rounded down), the consumers shift back
                  cute::SM90_TMA_LOAD_5D::copy(&tmap_in, &full[s], hint, st, (bx + jw) & ~3, c * IG_KC, by + jh,
                                               bz + jd, t.n);
                } else {
                  cute::SM90_TMA_LOAD_5D::copy(&tmap_in, &full[s], hint, st, c * IG_KC, bx + jw, by + jh, bz + jd, t.n);
                }
                cute::SM90_TMA_LOAD_3D::copy(&tmap_w, &full[s], hint, st + C::A_BYTES, c * IG_KC, t.co0, t.tap0 + j);
                if (SPLIT)
                  cute::SM90_TMA_LOAD_3D::copy(&tmap_w, &full[s], hint, st + C::A_BYTES + C::B_BYTES, c * IG_KC, t.co0,
                                               t.tap0 + j + geo.lo_tap);
              }
      }
    }
    return;
  }

  cutlass::arch::warpgroup_reg_alloc<C::CONSUMER_REGS>();
  const int cw = wg - PWG, wl = (tid >> 5) & 3, lane = tid & 31;
  const int g = lane >> 2, tq = lane & 3;
  const uint32_t smem_addr = cute::cast_smem_ptr_to_uint(smem);
  // This thread's A elements in a stage: rows r0 = 64 cw + 16 wl + g and r0 + 8 (both = g mod 8), columns
  // 8 kk + tq and 8 kk + tq + 4. SW128 puts column c of row r at r * 128 + ((c / 4) ^ (r % 8)) * 16 +
  // (c % 4) * 4: the 32 lanes of each load hit 32 distinct banks.
  const uint32_t row0 = (64 * cw + 16 * wl + g) * 128 + 4 * tq;
  uint32_t col[8];
#pragma unroll
  for (int c = 0; c < 8; ++c) col[c] = (uint32_t)((c ^ g) << 4);
  NcWalk<IN_NC, TH, TW, C::NC_W> nc(64 * cw + 16 * wl + g, tq);

  float keep[SECTORS ? NA : 1];  // SECTORS: the first sibling's results, bias added, until the second's
  // SUMS: this thread's sums over the CTA's summed stages, chunk c's slot 2 kk + h holding channel
  // 32 c + 8 kk + tq + 4 h of rows r0 and r0 + 8 (its A elements); reduced after the last unit.
  float isum[SUMS ? C::SUM_CHUNKS : 1][8];
#pragma unroll
  for (int c = 0; c < (SUMS ? C::SUM_CHUNKS : 1); ++c)
#pragma unroll
    for (int i = 0; i < 8; ++i) isum[c][i] = 0.f;
  int it = 0;
  for (int u = first_unit; u < geo.units; u = next_unit(u)) {
    Unit t;
    const bool valid = unit_at(u, t);
    // SECTORS: a tile past one sibling's count still takes part in the pair (nothing loaded, zeros; the
    // stores below skip its positions, which lie past the output).
    if (!SECTORS && !valid) continue;
    if (SPLIT && !valid) t.taps = 0;  // unit_at leaves it unset; 3xtf32 loops over the taps (it hung on garbage)
    const int nk = valid ? t.taps * chunks : 0;
    float acc[NA], tot[SPLIT ? NA : 1];
#pragma unroll
    for (int i = 0; i < NA; ++i) acc[i] = 0.f;
#pragma unroll
    for (int i = 0; i < (SPLIT ? NA : 1); ++i) tot[i] = 0.f;
    uint32_t a0[4][4], a1[4][4];
    constexpr int LO = SPLIT ? 4 : 1;
    uint32_t l0[LO][4], l1[LO][4];  // 3xtf32: the lo parts
    int held = -1;  // the stage whose MMAs may still be in flight
    // SUMS: the next k-block's chunk and tap (kd, kh, kw), in the producer's order; the unit sums where it
    // has the first channel block (one phase: p.phase[0]).
    [[maybe_unused]] const bool sum_unit = SUMS && valid && t.co0 == 0;
    [[maybe_unused]] int cur_c = 0, cur_w = 0, cur_h = 0, cur_d = 0;
    if constexpr (IN_NC) {
      if (valid) nc.unit(p.phase[t.phase]);
    }
    // One k-block: its 4 k8 steps in one batch. Two register sets alternate, so a batch's A registers
    // are rewritten only after it retired (the wait<1> of the next block).
    auto kblock = [&](uint32_t(&a)[4][4], uint32_t(&al)[LO][4]) {
      [[maybe_unused]] bool summing = false;
      [[maybe_unused]] int sc = 0;
      if constexpr (SUMS) {
        const int* taps = p.phase[0].taps;
        summing = sum_unit && (unsigned)(cur_d - geo.sum_a[0]) < (unsigned)p.s_in &&
                  (unsigned)(cur_h - geo.sum_a[1]) < (unsigned)p.s_in &&
                  (unsigned)(cur_w - geo.sum_a[2]) < (unsigned)p.s_in;
        sc = cur_c;
        if (++cur_c == chunks) {
          cur_c = 0;
          if (++cur_w == taps[2]) {
            cur_w = 0;
            if (++cur_h == taps[1]) {
              cur_h = 0;
              ++cur_d;
            }
          }
        }
      }
      if constexpr (IN_NC) nc.next(chunks);
      const int s = it % S;
      TxBarrier::wait(&full[s], (it / S) & 1);
      const uint32_t st = smem_addr + s * C::STAGE_BYTES;
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        // IN_NC: channel 8 kk + tq (+ 4) is NC_W floats per channel on from its row's (above).
        const uint32_t x[4] = {lds(IN_NC ? st + nc.a0 + nc.KK * kk : st + row0 + col[2 * kk]),
                               lds(IN_NC ? st + nc.a1 + nc.KK * kk : st + row0 + 8 * 128 + col[2 * kk]),
                               lds(IN_NC ? st + nc.a0 + nc.KK * kk + nc.HALF : st + row0 + col[2 * kk + 1]),
                               lds(IN_NC ? st + nc.a1 + nc.KK * kk + nc.HALF : st + row0 + 8 * 128 + col[2 * kk + 1])};
        if constexpr (SUMS) {
          if (summing) {
            const float lo = __uint_as_float(x[0]) + __uint_as_float(x[1]);
            const float hi = __uint_as_float(x[2]) + __uint_as_float(x[3]);
#pragma unroll
            for (int c = 0; c < C::SUM_CHUNKS; ++c)
              if (c == sc) {
                isum[c][2 * kk] += lo;
                isum[c][2 * kk + 1] += hi;
              }
          }
        }
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          // MAP_ROUNDS: TMA landed x rounded (the host's TFLOAT32 map); rounding it again would cost the
          // MMA warps an instruction per element for the same bits.
          a[kk][e] = MAP_ROUNDS ? x[e] : direct::to_tf32(__uint_as_float(x[e]));
          if constexpr (SPLIT) {
            al[kk][e] = direct::to_tf32(__uint_as_float(x[e]) - __uint_as_float(a[kk][e]));
            cute::warpgroup_fence_operand(al[kk][e]);
          }
          cute::warpgroup_fence_operand(a[kk][e]);
        }
      }
      fence_acc(acc);
      cute::warpgroup_arrive();
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        const uint64_t bh = sw128_desc(st + C::A_BYTES + 32 * kk);
        if constexpr (SPLIT) {  // small terms first
          gmma_rs<Op>(al[kk], bh, acc, std::make_index_sequence<NA>{});
          gmma_rs<Op>(a[kk], sw128_desc(st + C::A_BYTES + C::B_BYTES + 32 * kk), acc, std::make_index_sequence<NA>{});
        }
        gmma_rs<Op>(a[kk], bh, acc, std::make_index_sequence<NA>{});
      }
      cute::warpgroup_commit_batch();
      cute::warpgroup_wait<1>();  // the previous block's batch has retired: its stage goes back
      fence_acc(acc);
      if (held >= 0) Barrier::arrive(&empty[held]);
      held = s;
      ++it;
    };
    // Blocks in pairs (static register sets); 3xtf32 drains and promotes the accumulators after each tap.
    const int run = SPLIT ? chunks : nk;
    for (int j = 0; j < (SPLIT ? t.taps : 1); ++j) {
      int k = 0;
#pragma unroll 1
      for (; k + 1 < run; k += 2) {
        kblock(a0, l0);
        kblock(a1, l1);
      }
      if (k < run) kblock(a0, l0);
      // Unconditional, so that no path reads the accumulators with a batch in flight (ptxas would
      // serialise every wgmma for it).
      cute::warpgroup_wait<0>();
      fence_acc(acc);
      if (held >= 0) Barrier::arrive(&empty[held]);
      held = -1;
      if constexpr (SPLIT) {
#pragma unroll
        for (int i = 0; i < NA; ++i) {
          tot[i] += acc[i];
          acc[i] = 0.f;
        }
      }
    }
    if constexpr (SPLIT) {
#pragma unroll
      for (int i = 0; i < NA; ++i) acc[i] = tot[i];
    }

    // Epilogue from registers: accumulator 4j + 2r + e is row g + 8r of the warp's 16, column
    // 8j + 2tq + e; NDHWC float2 stores, 32 contiguous bytes per row and j across a quad. NCDHW
    // (out_ncdhw): 4-byte stores, a warp's eight rows along w per channel. At unit s_out a tile row
    // (TW = 8 or 16 positions from a multiple of TW) covers whole sectors where Wo % 8 == 0; strided,
    // each phase fills every s_out-th float of a sector and its sibling phases the rest, in the same
    // CTA's run of the group where the walk is by groups (above), so the parts meet in L2. Where rows do
    // not start on sectors, ncu counted most such sectors filled from DRAM and written twice (v0.32), so
    // direct.writes_ncdhw keeps channels_last_3d there.
    const DirectPhase& ph = p.phase[t.phase];
    // The bias before any store: a load after a store waits behind it (the stores may alias p.bias).
    float2 bias[BN / 8];
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
      const int co = t.co0 + 8 * j + 2 * tq;
      bias[j] = p.bias != nullptr && co < p.Co ? __ldg(reinterpret_cast<const float2*>(p.bias + co))
                                                : make_float2(0.f, 0.f);
    }
    if constexpr (SECTORS) {
      // The host ordered each group's phases as the table (w fastest) and checked that phases 2i and 2i + 1
      // are w-siblings sharing d and h, one starting at w = 0 and one at 1: the pair's outputs along w are
      // the 2 * TW consecutive positions from 2 * q0w.
      if ((t.phase & 1) == 0) {
#pragma unroll
        for (int j = 0; j < BN / 8; ++j)
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            keep[4 * j + 2 * r] = acc[4 * j + 2 * r] + bias[j].x;
            keep[4 * j + 2 * r + 1] = acc[4 * j + 2 * r + 1] + bias[j].y;
          }
        continue;
      }
      constexpr int W2 = 2 * TW;
      static_assert(C::TD * TH * W2 == 256, "a pair's rows: one output per consumer thread per channel");
      float* buf = reinterpret_cast<float*>(smem + C::out_offset());
      const bool kept_first = ph.first[2] == 1;  // the kept sibling starts at w = 0
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int m = 64 * cw + 16 * wl + g + 8 * r;
        float* at = buf + (m / TW) * W2 + 2 * (m % TW);
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
          const int c = 8 * j + 2 * tq;
          const float k0 = keep[4 * j + 2 * r], k1 = keep[4 * j + 2 * r + 1];
          const float a0 = acc[4 * j + 2 * r] + bias[j].x, a1 = acc[4 * j + 2 * r + 1] + bias[j].y;
          *reinterpret_cast<float2*>(at + c * C::OUT_PL) = kept_first ? make_float2(k0, a0) : make_float2(a0, k0);
          *reinterpret_cast<float2*>(at + (c + 1) * C::OUT_PL) = kept_first ? make_float2(k1, a1) : make_float2(a1, k1);
        }
      }
      asm volatile("bar.sync 2, 256;" ::: "memory");  // the consumer warpgroups
      // Rows of 2 * TW consecutive outputs along w per (channel, d, h): thread ct takes output ct % W2 of row
      // ct / W2 in every channel, so a warp stores whole 64- or 128-byte runs, and all
      // its index arithmetic is done once per pair (per element, it measured half again the kernel's
      // instructions: U-Net 64->32 1.15 ms against 0.76 for channels_last_3d, ncu).
      const int ct = tid - 128 * PWG, row = ct / W2, i = ct % W2;
      const int od = ph.first[0] + p.s_out * (t.q0d + row / TH), oh = ph.first[1] + p.s_out * (t.q0h + row % TH);
      const int ow = 2 * t.q0w + i, cn = p.Co - t.co0 < BN ? p.Co - t.co0 : BN;
      if (od < p.Do && oh < p.Ho && ow < p.Wo) {
        const int64_t plane = (int64_t)p.Do * p.Ho * p.Wo;
        float* dst = p.out + ((int64_t)t.n * p.Co + t.co0) * plane + ((int64_t)od * p.Ho + oh) * p.Wo + ow;
        const float* src = buf + row * W2 + i;
#pragma unroll 8
        for (int c = 0; c < BN; ++c)
          if (c < cn) dst[c * plane] = src[c * C::OUT_PL];
      }
      asm volatile("bar.sync 2, 256;" ::: "memory");  // the buffer is free for the next pair
    } else {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int m = 64 * cw + 16 * wl + g + 8 * r;
        const int qd = t.q0d + m / (TH * TW), qh = t.q0h + (m / TW) % TH, qw = t.q0w + m % TW;
        if (qd >= ph.count[0] || qh >= ph.count[1] || qw >= ph.count[2]) continue;
        const int od = ph.first[0] + p.s_out * qd, oh = ph.first[1] + p.s_out * qh, ow = ph.first[2] + p.s_out * qw;
        if (p.out_ncdhw) {
          const int64_t plane = (int64_t)p.Do * p.Ho * p.Wo;
          float* pos = p.out + (int64_t)t.n * p.Co * plane + ((int64_t)od * p.Ho + oh) * p.Wo + ow;
#pragma unroll
          for (int j = 0; j < BN / 8; ++j) {
            const int co = t.co0 + 8 * j + 2 * tq;
            if (co >= p.Co) continue;  // Co % 4 == 0: co + 1 < Co as well
            pos[co * plane] = acc[4 * j + 2 * r] + bias[j].x;
            pos[(co + 1) * plane] = acc[4 * j + 2 * r + 1] + bias[j].y;
          }
          continue;
        }
        float* pos = p.out + ((((int64_t)t.n * p.Do + od) * p.Ho + oh) * p.Wo + ow) * p.Co;
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
          const int co = t.co0 + 8 * j + 2 * tq;
          if (co >= p.Co) continue;  // Co % 4 == 0: co + 1 < Co as well
          *reinterpret_cast<float2*>(pos + co) =
              make_float2(acc[4 * j + 2 * r] + bias[j].x, acc[4 * j + 2 * r + 1] + bias[j].y);
        }
      }
    }
  }
  if constexpr (SUMS) {
    // The lanes of a tq hold the same channels: reduce over g, then the eight warps' rows in order.
#pragma unroll
    for (int c = 0; c < C::SUM_CHUNKS; ++c)
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int m = 4; m <= 16; m *= 2) isum[c][i] += __shfl_xor_sync(0xffffffffu, isum[c][i], m);
    float* rows = reinterpret_cast<float*>(smem + C::sums_offset());
    if (g == 0) {
#pragma unroll
      for (int c = 0; c < C::SUM_CHUNKS; ++c)
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          const int ch = IG_KC * c + 8 * (i >> 1) + 4 * (i & 1) + tq;
          if (ch < p.Cr) rows[(4 * cw + wl) * p.Cr + ch] = isum[c][i];
        }
    }
    asm volatile("bar.sync 3, 256;" ::: "memory");  // the consumer warpgroups
    const int ct = tid - 128 * PWG;
    for (int c = ct; c < p.Cr; c += 256) {
      float v = rows[c];
#pragma unroll
      for (int w = 1; w < C::SUM_ROWS; ++w) v += rows[w * p.Cr + c];
      p.in_sums[(size_t)blockIdx.x * p.Cr + c] = v;
    }
    // The rows of CTAs the grid lacks are zeroed by the CTAs it has.
    for (int row = blockIdx.x + gridDim.x; row < p.in_sums_rows; row += gridDim.x)
      for (int c = ct; c < p.Cr; c += 256) p.in_sums[(size_t)row * p.Cr + c] = 0.f;
  }
#endif
}

// The phase table's part of the SECTORS rule (host-only, no device query; direct.igemm_sibling_pairs mirrors
// it): stride 2 with eight phases in table order (w fastest), phases 2i and 2i + 1 sharing d and h and their
// counts there, one starting at w = 0 and the other at 1.
inline bool igemm_sibling_pairs(const DirectLaunch& p) {
  if (p.s_out != 2 || p.num_phases != 8) return false;
  for (int i = 0; i < 8; ++i) {
    const DirectPhase &a = p.phase[i], &b = p.phase[i ^ 1];
    if ((unsigned)a.first[2] > 1u || a.first[2] + b.first[2] != 1 || a.first[0] != b.first[0] ||
        a.first[1] != b.first[1] || a.count[0] != b.count[0] || a.count[1] != b.count[1])
      return false;
  }
  return true;
}

template <int TH, int TW, int BN, int S, bool SPLIT = false>
struct IgemmKernel {
  using C = IgemmConfig<TH, TW, BN, S, SPLIT>;

  // 0 or a cutlass::Status value; fills geo.
  static int geometry(const DirectLaunch& p, IgemmGeometry& geo) {
    int cd = 0, ch = 0, cw = 0;
    for (int i = 0; i < p.num_phases; ++i) {
      cd = p.phase[i].count[0] > cd ? p.phase[i].count[0] : cd;
      ch = p.phase[i].count[1] > ch ? p.phase[i].count[1] : ch;
      cw = p.phase[i].count[2] > cw ? p.phase[i].count[2] : cw;
    }
    geo.tiles_d = (cd + C::TD - 1) / C::TD;
    geo.tiles_h = (ch + TH - 1) / TH;
    geo.tiles_w = (cw + TW - 1) / TW;
    geo.coblocks = (p.Co + BN - 1) / BN;
    const long long per_phase = (long long)p.N * geo.tiles_d * geo.tiles_h * geo.tiles_w * geo.coblocks;
    if (per_phase * p.num_phases > 0x7fffffffLL) return 5;
    geo.per_phase = (int)per_phase;
    geo.units = (int)(per_phase * p.num_phases);
    geo.phase_runs = 0;  // run() decides, with the grid
    geo.lo_tap = 0;
    for (int i = 0; i < p.num_phases; ++i) geo.lo_tap += p.phase[i].taps[0] * p.phase[i].taps[1] * p.phase[i].taps[2];
    // SUMS (direct.igemm_sum_window mirrors it): per axis the tap window [a, a + s_in) whose reads, over
    // the phase's positions, span the input [0, extent) once; -1 where no window does.
    const int extent[3] = {p.Di, p.Hi, p.Wi};
    for (int a = 0; a < 3; ++a) {
      const DirectPhase& ph = p.phase[0];
      const int lo = extent[a] - p.s_in * ph.count[a] - ph.dmin[a], first = lo > 0 ? lo : 0;
      geo.sum_a[a] = (p.num_phases == 1 && first <= -ph.dmin[a] && first + p.s_in <= ph.taps[a]) ? first : -1;
    }
    // Phases by taps, most first (insertion sort: at most 64, ties in table order).
    for (int i = 0; i < p.num_phases; ++i) {
      const auto& a = p.phase[i].taps;
      const int ta = a[0] * a[1] * a[2];
      int j = i;
      for (; j > 0; --j) {
        const auto& b = p.phase[geo.order[j - 1]].taps;
        if (b[0] * b[1] * b[2] >= ta) break;
        geo.order[j] = geo.order[j - 1];
      }
      geo.order[j] = i;
    }
    return 0;
  }

  using CN = IgemmConfig<TH, TW, BN, S, SPLIT, true>;  // IN_NC

  static size_t smem_bytes(int sums_cr = 0, bool nc = false) {
    return 1024 + (nc ? CN::sums_offset() : C::sums_offset()) + (size_t)C::SUM_ROWS * sums_cr * sizeof(float);
  }

  static size_t sector_smem_bytes() { return 1024 + C::out_offset() + C::OUT_BYTES; }

  // out_sectors on a strided forward (direct.igemm_sector_pairs mirrors it): the SECTORS epilogue where the
  // walk is by groups and the phases along w come in sibling pairs (igemm_sibling_pairs).
  static bool sector_pairs(const DirectLaunch& p, const IgemmGeometry& geo) {
    return C::SECTORS_OK && p.out_ncdhw && p.out_sectors && geo.phase_runs && p.in_sums == nullptr &&
           !p.in_ncdhw && igemm_sibling_pairs(p) && sm90_fits(sector_smem_bytes()) == 0;
  }

  static int can_implement(const DirectLaunch& p) {
    if (p.Cr % 4 != 0 || p.Co % 4 != 0) return 1;  // 16-byte TMA strides and float2 stores
    // An NCDHW input (IN_NC; direct.reads_ncdhw_shape has the policy): the 3xtf32 rows, whose three MMAs per
    // product hide the form's twice as many box rows as the channels_last_3d boxes (call609: tf32 forwards
    // 1.13-1.27x slower, the TMA unit's rows per stage about a stage's MMA time), tiles 16 wide, unit s_in (TMA's
    // traversal stride does not skip along the innermost axis, w), 16-byte row strides, no input sums, plain stores.
    if (p.in_ncdhw && (!SPLIT || TW != 16 || p.s_in != 1 || p.Wi % 4 != 0 || p.in_sums != nullptr || CN::RING < 2))
      return 5;
    // Input sums: tf32, one phase, C_r within the consumers' sum registers, a tap window on every axis, a row
    // per CTA.
    if (p.in_sums != nullptr && (SPLIT || p.num_phases != 1 || p.in_sums_rows < 1 || p.Cr > IG_KC * C::SUM_CHUNKS))
      return 5;
    // TMA: traversal strides up to 8, boxes up to 256 elements per dimension.
    if (p.s_in < 1 || p.s_in > 8 || p.s_in * TW > 256 || p.s_in * TH > 256 || p.s_in * C::TD > 256) return 5;
    if (p.num_phases < 1 || p.num_phases > kDirectMaxPhases || p.s_out < 1) return 4;
    IgemmGeometry geo;
    const int code = geometry(p, geo);
    if (code != 0) return code;
    if (p.in_sums != nullptr) {
      if (geo.sum_a[0] < 0 || geo.sum_a[1] < 0 || geo.sum_a[2] < 0) return 5;
      const int sms = sm_count();
      if (sms <= 0) return 1000 + (int)cudaGetLastError();
      if (p.in_sums_rows < (geo.units < sms ? geo.units : sms)) return 5;
    }
    return sm90_fits(smem_bytes(p.in_sums != nullptr ? p.Cr : 0, p.in_ncdhw));
  }

  static int run(const DirectLaunch& p) {
    int code = can_implement(p);
    if (code != 0) return code;
    IgemmGeometry geo;
    geometry(p, geo);
    if (geo.units == 0 || p.Co == 0) {  // nothing to compute; the sums of an input that no unit reads are 0
      if (p.in_sums == nullptr) return 0;
      const cudaError_t err = cudaMemsetAsync(p.in_sums, 0, (size_t)p.in_sums_rows * p.Cr * sizeof(float), p.stream);
      return err == cudaSuccess ? 0 : 1000 + (int)err;
    }
    auto encode = encode_fn();
    if (encode == nullptr) return 5;
    const long long taps = (long long)C::P * geo.lo_tap;
    CUtensorMap tin, tw;
    const cuuint32_t s = (cuuint32_t)p.s_in;
    const cuuint32_t in_box[5] = {IG_KC, s * TW, s * TH, s * C::TD, 1};
    const cuuint32_t nc_box[5] = {CN::NC_W, IG_KC, TH, C::TD, 1};  // IN_NC: (w, c, h, d, n)
    // The kernel's MAP_ROUNDS (tf32 without sums): TMA rounds x to tf32 as it lands it (f32_map_type).
    const bool map_ok =
        p.in_ncdhw ? encode_ncdhw_wchd(&tin, p.in, p.N, p.Di, p.Hi, p.Wi, p.Cr, nc_box, CU_TENSOR_MAP_SWIZZLE_NONE,
                                       CU_TENSOR_MAP_L2_PROMOTION_L2_128B, input_map_rounds(SPLIT, false))
                   : encode_ndhwc(&tin, p.in, p.N, p.Di, p.Hi, p.Wi, p.Cr, in_box, CU_TENSOR_MAP_SWIZZLE_128B,
                                  CU_TENSOR_MAP_L2_PROMOTION_L2_128B, s, 0,
                                  input_map_rounds(SPLIT, p.in_sums != nullptr));
    if (!map_ok) return 5;
    const cuuint32_t ones[3] = {1, 1, 1};
    const cuuint64_t w_dim[3] = {(cuuint64_t)p.Cr, (cuuint64_t)p.Co, (cuuint64_t)(taps > 0 ? taps : 1)};
    const cuuint64_t w_stride[2] = {(cuuint64_t)p.Cr * 4, (cuuint64_t)p.Co * p.Cr * 4};
    const cuuint32_t w_box[3] = {IG_KC, BN, 1};
    if (encode(&tw, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 3, const_cast<float*>(p.weight), w_dim, w_stride, w_box, ones,
               CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS)
      return 5;
    const int sms = sm_count();
    if (sms <= 0) return 1000 + (int)cudaGetLastError();
    const dim3 grid((unsigned)(geo.units < sms ? geo.units : sms));
    // By groups where they fill the grid (direct.igemm_cost mirrors the rule); next_unit's step stays in int.
    geo.phase_runs = p.num_phases > 1 && geo.per_phase >= sms &&
                     (long long)geo.units + (long long)sms * p.num_phases <= 0x7fffffffLL;
    if constexpr (!SPLIT) {
      if (p.in_sums != nullptr)
        return direct::launch_with_smem(igemm_kernel<TH, TW, BN, S, false, true>, grid, C::THREADS,
                                        smem_bytes(p.Cr), p.stream, p, tin, tw, geo);
    }
    if constexpr (C::SECTORS_OK) {
      if (sector_pairs(p, geo)) {
        for (int i = 0; i < p.num_phases; ++i) geo.order[i] = i;  // table order: siblings back to back
        return direct::launch_with_smem(igemm_kernel<TH, TW, BN, S, SPLIT, false, true>, grid, C::THREADS,
                                        sector_smem_bytes(), p.stream, p, tin, tw, geo);
      }
    }
    if constexpr (SPLIT && TW == 16) {
      if (p.in_ncdhw)
        return direct::launch_with_smem(igemm_kernel<TH, TW, BN, S, SPLIT, false, false, true>, grid, C::THREADS,
                                        smem_bytes(0, true), p.stream, p, tin, tw, geo);
    }
    return direct::launch_with_smem(igemm_kernel<TH, TW, BN, S, SPLIT>, grid, C::THREADS, smem_bytes(), p.stream, p, tin,
                                    tw, geo);
  }

  static DirectEntry entry(const char* name) { return DirectEntry{name, &can_implement, &run}; }
};

}  // namespace direct90
}  // namespace convt3d
