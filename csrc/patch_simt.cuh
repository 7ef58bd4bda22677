// Exact-fp32 forward, grad_input and grad_weight of a k == stride, padding 0 ConvTranspose3d ("patch" layers:
// the U-Net k2 s2 up) as one FFMA GEMM per pass, no tap reuse and no layout conversion (grad_weight below).
//
// With k == s every output position takes exactly one tap, so each pass is a plain GEMM whose one
// activation operand is pixel-shuffled:
//   forward     C[q, (a, co)]  = sum_ci x[q, ci] * B[ci, (a, co)],   q over x's positions, a over the s^3 parities,
//               written to y[n, co, s*d + ad, s*h + ah, s*w + aw] (+ bias[co]);
//   grad_input  C[q, ci] = sum_(a, co) grad_y[n, co, s*d + ad, ...] * B[(a, co), ci], q over grad_x's positions.
// B is the weight itself, [C_in][C_out][s^3] as nn.ConvTranspose3d keeps it (no filter to prepare). Every
// activation address is base(q) + offset(k) (or offset(col) for the output), whichever layout each tensor
// has (NCDHW or channels_last_3d), so one loader serves every form.
//
// Why not the tap-reuse or stock kernels: on the U-Net k2 up (2 x 64->32, 32^3) they ran the forward at
// 27% of the FP32 rate (one tap per phase leaves tap reuse nothing to reuse) and grad_input on a stock
// tile behind grad_y's channels_last_3d copy (0.200 ms against cuDNN's 0.063, NCDHW); cuBLAS runs the same
// GEMMs at 32-34 TFLOP/s (bench/tools/patchprobe.py).
//
// CTA: BM positions x BN columns, BM * BN / 64 threads, 8 x 8 outputs each as 2 x 2 blocks of 4 x 4 (the
// FFMA grad_weight's compute roles, ffma_wgrad.cuh), BK = 8 per stage, two stages in shared memory with the
// next stage's global loads held in registers across the current stage's FFMAs.
//
// PatchShape's Math 1 (tf32) and 2 (3xtf32) run the same stages on the tensor cores (mma_stage) and hand the
// accumulators through shared memory to the same epilogue, so the loader and every layout pair are shared; the
// selector takes them for NCDHW forwards only (selector.PATCH_TENSOR_CORE_PASSES: their grad_input lost to the
// implicit GEMM, v0.75). grad_weight is exact fp32 only.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cute/arch/mma.hpp"
#include "cutlass/fast_math.h"
#include "direct_atoms.cuh"
#include "direct_launch.h"

namespace convt3d {
namespace patch {

struct PatchArgs {
  const float* act;   // forward: x; grad_input: grad_y
  const float* b;     // the weight [C_in][C_out][s^3]
  const float* bias;  // forward only, [C_out] or null
  float* out;         // forward: y; grad_input: grad_x
  int n, d, h, w;     // the q grid: x's positions (forward) or grad_x's (grad_input)
  int s;              // k == stride, 1..4
  int c_act;          // channels of act (forward C_in, grad_input C_out)
  int c_out;          // channels of out (forward C_out, grad_input C_in)
  int K, Ncol;        // forward: C_in, s^3 C_out; grad_input: s^3 C_out, C_in
  int M;              // n * d * h * w (every tensor under 2^31 elements: can_implement)
  cutlass::FastDivmod taps_div;  // by s^3: an NCDHW grad_y's k = (c, a)
  cutlass::FastDivmod cact_div;  // by c_act: a channels_last_3d grad_y's k = (a, c)
  bool vec;                      // out is 16-byte aligned: the 16-byte store forms
};

// The parity dimension a = (ad, ah, aw) rides with a channel c in K (grad_input) or in the columns
// (forward). NCDHW orders the pair (c, a), a fastest, so that a thread's neighbouring columns or k are
// neighbours along w in memory; channels_last_3d orders it (a, c), c fastest, for the same reason.
template <bool kNcdhw>
__device__ __forceinline__ void split_pair(int idx, int c_count, int taps, int& a, int& c) {
  if (kNcdhw) { c = idx / taps; a = idx - c * taps; }
  else { a = idx / c_count; c = idx - a * c_count; }
}
template <bool kNcdhw>
__device__ __forceinline__ void split_k(const PatchArgs& p, int k, int& a, int& c) {
  if (kNcdhw) p.taps_div(c, a, k);
  else p.cact_div(a, c, k);
}

// Math: 0 FFMA (exact fp32), 1 tf32 mma.sync, 2 3xtf32 mma.sync (hi/lo parts, three MMAs).
template <int BM_, int BN_, int Math_ = 0>
struct PatchShape {
  static constexpr int BM = BM_, BN = BN_, BK = 8, kThreads = BM * BN / 64, Math = Math_;
  static constexpr int kLanesM = 8, kWarpsM = BM / (8 * kLanesM);
  // 128 registers a thread: 16 warps an SM, whose loads for the next stage hide each other's latency.
#ifdef CONVT3D_PATCH_MIN_BLOCKS  // bench/tools/patchsimt.cu's A/B
  static constexpr int kMinBlocks = CONVT3D_PATCH_MIN_BLOCKS;
#else
  static constexpr int kMinBlocks = 2048 / kThreads / 4;
#endif
  // Loads per thread per stage.
  static constexpr int kLoadsA = BM * BK / kThreads, kLoadsB = BN * BK / kThreads;
  // A rows padded by 4 floats: a channels_last_3d operand is stored with lanes along k (8 rows apart),
  // which would put 4 positions' 8 channels in one bank.
  static constexpr int LDA = BM + 4;
  // The MMA forms read B fragments with lanes along k (rows 4 apart) too: padded the same way.
  static constexpr int LDB = BN + (Math ? 4 : 0);
  static constexpr int kStageFloats = BK * (LDA + LDB);
  // The MMA forms hand their accumulators to the FFMA layout's epilogue through shared memory.
  static constexpr int LDC = BN + 4;
  static constexpr int kCtileFloats = Math ? BM * LDC : 0;
  static constexpr int kMainFloats = 2 * kStageFloats > kCtileFloats ? 2 * kStageFloats : kCtileFloats;
  static constexpr int kMaxTaps = 64;  // s <= 4
  static constexpr size_t kSmemBytes = size_t(kMainFloats) * sizeof(float) + kMaxTaps * sizeof(int);
  static_assert(BM == 64 || BM == 128, "64 or 128 positions");
  static_assert(BN == 64 || BN == 128, "64 or 128 columns");
  static_assert(!Math || (BM == 128 && (BN / 32) * 2 * 32 == kThreads), "MMA forms: warps of 64 x 32");
  static_assert(kLoadsA >= 1 && kLoadsB >= 1, "every thread loads");
};

// Position q of the q grid: its sample and coordinates.
struct Pos { int nb, dd, hh, ww, local; };

__device__ __forceinline__ Pos decode(const PatchArgs& p, int q) {
  Pos r;
  const int vol = p.d * p.h * p.w, plane = p.h * p.w;
  r.nb = q / vol;
  r.local = q - r.nb * vol;
  r.dd = r.local / plane;
  const int rem = r.local - r.dd * plane;
  r.hh = rem / p.w;
  r.ww = rem - r.hh * p.w;
  return r;
}

// One stage's FFMAs, shared by the three kernels: acc[8][8] += A[k][4 tm .. (+half)] x B[k][4 tn .. (+half)] over
// the stage's BK k, each read as two 16-byte pairs (a quarter warp's A reads distinct, its B reads broadcast).
template <int BK, int LDA, int BM, int BN, int LDB = BN>
__device__ __forceinline__ void ffma_stage(const float* as, const float* bs, int tm, int tn, float (&acc)[8][8]) {
  using Fma = cute::UniversalFMA<float, float, float, float>;
#pragma unroll
  for (int kk = 0; kk < BK; ++kk) {
    float av[8], bv[8];
    *reinterpret_cast<float4*>(av) = *reinterpret_cast<const float4*>(as + kk * LDA + 4 * tm);
    *reinterpret_cast<float4*>(av + 4) = *reinterpret_cast<const float4*>(as + kk * LDA + BM / 2 + 4 * tm);
    *reinterpret_cast<float4*>(bv) = *reinterpret_cast<const float4*>(bs + kk * LDB + 4 * tn);
    *reinterpret_cast<float4*>(bv + 4) = *reinterpret_cast<const float4*>(bs + kk * LDB + BN / 2 + 4 * tn);
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) Fma::fma(acc[i][j], av[i], bv[j], acc[i][j]);
  }
}

// One stage of 8 k on the tensor cores (CuTe's SM80 m16n8k8 TF32 atom): a warp's 64 x 32 tile as 4 x 4 MMAs.
// A[m][k] is as[k * LDA + m] and B[k][n] is bs[k * LDB + n]: fragments with lanes along m (or n) and k, the rows
// padded so that the 32 lanes hit 32 banks. Math 1 rounds each operand to tf32; Math 2 adds the products of the
// low parts (x - hi) with the high parts first, as CUTLASS's 3xTF32.
template <int LDA, int LDB, int Math>
__device__ __forceinline__ void mma_stage(const float* as, const float* bs, int m0, int n0, int lane,
                                          float (&c)[4][4][4]) {
  const int g = lane >> 2, t = lane & 3;
  // B's fragments (and their low parts) for the whole stage, A's one m16 block at a time: 3xtf32 holds 24
  // registers of A fewer than with every block's hi/lo parts live (the sm_80 build spilled 216-292 bytes).
  // Each accumulator sees the same products in the same order, so the bits are unchanged.
  uint32_t b[4][2], bl[4][2];
  auto split = [&](float x, uint32_t& hi, uint32_t& lo) {
    hi = direct::to_tf32(x);
    if (Math == 2) lo = direct::to_tf32(x - __uint_as_float(hi));
  };
#pragma unroll
  for (int nt = 0; nt < 4; ++nt) {
    const int n = n0 + 8 * nt + g;
    split(bs[t * LDB + n], b[nt][0], bl[nt][0]);
    split(bs[(t + 4) * LDB + n], b[nt][1], bl[nt][1]);
  }
#pragma unroll
  for (int mt = 0; mt < 4; ++mt) {
    const int m = m0 + 16 * mt + g;
    uint32_t a[4], al[4];
    split(as[t * LDA + m], a[0], al[0]);
    split(as[t * LDA + m + 8], a[1], al[1]);
    split(as[(t + 4) * LDA + m], a[2], al[2]);
    split(as[(t + 4) * LDA + m + 8], a[3], al[3]);
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      if (Math == 2) {
        direct::mma(c[mt][nt], al, b[nt][0], b[nt][1]);
        direct::mma(c[mt][nt], a, bl[nt][0], bl[nt][1]);
      }
      direct::mma(c[mt][nt], a, b[nt][0], b[nt][1]);
    }
  }
}

template <class Sh, bool kGradInput, bool kInNc, bool kOutNc>
__global__ void __launch_bounds__(Sh::kThreads, Sh::kMinBlocks) patch_kernel(PatchArgs p) {
  constexpr int BM = Sh::BM, BN = Sh::BN, BK = Sh::BK, kHalfM = BM / 2, kHalfN = BN / 2;
  extern __shared__ __align__(16) float smem[];
  int* parity_pos = reinterpret_cast<int*>(smem + Sh::kMainFloats);

  const int tid = threadIdx.x;
  const int m0 = blockIdx.x * BM;
  const int n0 = blockIdx.y * BN;
  const int s = p.s, taps = s * s * s;
  // The big tensor (forward: y; grad_input: grad_y) is s times the q grid along each axis.
  const int bh = s * p.h, bw = s * p.w, big_vol = s * p.d * bh * bw, vol = p.d * p.h * p.w;
  // Offset of parity a's position in the big tensor, in positions: (ad * bh + ah) * bw + aw.
  if (tid < taps) parity_pos[tid] = ((tid / (s * s)) * bh + (tid / s) % s) * bw + tid % s;
  __syncthreads();

  // A (act) at (q, k) is act[a_base(q) + a_off(k)]. Forward: x at q, channel k. grad_input: grad_y at
  // parity 0 of q's patch, plus k's parity and channel.
  auto a_base = [&](const Pos& q) -> long long {
    const int pos = kGradInput ? (s * q.dd * bh + s * q.hh) * bw + s * q.ww : q.local;
    const int v = kGradInput ? big_vol : vol;
    return kInNc ? (long long)q.nb * p.c_act * v + pos : ((long long)q.nb * v + pos) * p.c_act;
  };
  auto a_off = [&](int k) -> long long {
    if (!kGradInput) return kInNc ? (long long)k * vol : k;
    int a, c;
    split_k<kInNc>(p, k, a, c);
    return kInNc ? (long long)c * big_vol + parity_pos[a] : (long long)parity_pos[a] * p.c_act + c;
  };

  // A loads: an NCDHW operand runs along positions (lanes along m); a channels_last_3d one along its
  // channels (lanes along k, 32-byte rows). Each thread keeps its rows' bases for the whole K loop.
  const int a_k = kInNc ? tid / BM : tid % BK;
  const int a_m = kInNc ? tid % BM : tid / BK;
  constexpr int kStepK = kInNc ? Sh::kThreads / BM : 0;  // k between one thread's loads (NCDHW)
  constexpr int kStepM = kInNc ? 0 : Sh::kThreads / BK;  // m between one thread's loads (channels_last_3d)
  static_assert(kInNc ? (Sh::kThreads % BM == 0) : (Sh::kThreads % BK == 0), "whole load rows");
  long long a_base_of[Sh::kLoadsA];
#pragma unroll
  for (int i = 0; i < Sh::kLoadsA; ++i) {
    const int q = m0 + a_m + i * kStepM;
    a_base_of[i] = q < p.M ? a_base(decode(p, q)) : -1;
  }
  // B loads: lanes along the columns. B (k, col) is the weight at (ci, co, a): forward k = ci and col = the
  // output's pair (co, a); grad_input k = grad_y's pair and col = ci.
  const int b_n = tid % BN, b_k = tid / BN;
  constexpr int kStepKB = Sh::kThreads / BN;
  const bool b_ok = n0 + b_n < p.Ncol;
  const int co_taps = (kGradInput ? p.c_act : p.c_out) * taps;
  long long b_col = 0;  // the column's part of a B offset
  if (b_ok) {
    if (kGradInput) {
      b_col = (long long)(n0 + b_n) * co_taps;
    } else {
      int a, c;
      split_pair<kOutNc>(n0 + b_n, p.c_out, taps, a, c);
      b_col = c * taps + a;
    }
  }
  auto b_off = [&](int k) -> long long {
    if (!kGradInput) return (long long)k * co_taps + b_col;
    if (kInNc) return b_col + k;  // k = c * s^3 + a, the weight's own order
    int a, c;
    split_k<false>(p, k, a, c);
    return b_col + c * taps + a;
  };

  float ra[Sh::kLoadsA], rb[Sh::kLoadsB];
  auto load = [&](int k0) {
    if (kInNc) {  // one k per load slot: its offset once
#pragma unroll
      for (int i = 0; i < Sh::kLoadsA; ++i) {
        const int k = k0 + a_k + i * kStepK;
        ra[i] = (a_base_of[i] >= 0 && k < p.K) ? __ldg(p.act + a_base_of[i] + a_off(k)) : 0.f;
      }
    } else {  // one k for every slot
      const int k = k0 + a_k;
      const long long off = k < p.K ? a_off(k) : 0;
#pragma unroll
      for (int i = 0; i < Sh::kLoadsA; ++i)
        ra[i] = (a_base_of[i] >= 0 && k < p.K) ? __ldg(p.act + a_base_of[i] + off) : 0.f;
    }
#pragma unroll
    for (int i = 0; i < Sh::kLoadsB; ++i) {
      const int k = k0 + b_k + i * kStepKB;
      rb[i] = (b_ok && k < p.K) ? __ldg(p.b + b_off(k)) : 0.f;
    }
  };
  auto store = [&](int stage) {
    float* as = smem + stage * Sh::kStageFloats;
    float* bs = as + BK * Sh::LDA;
#pragma unroll
    for (int i = 0; i < Sh::kLoadsA; ++i) as[(a_k + i * kStepK) * Sh::LDA + a_m + i * kStepM] = ra[i];
#pragma unroll
    for (int i = 0; i < Sh::kLoadsB; ++i) bs[(b_k + i * kStepKB) * Sh::LDB + b_n] = rb[i];
  };

  const int lane = tid & 31, warp = tid >> 5;
  const int tm = (warp % Sh::kWarpsM) * Sh::kLanesM + lane % Sh::kLanesM;
  const int tn = (warp / Sh::kWarpsM) * (32 / Sh::kLanesM) + lane / Sh::kLanesM;

  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;
  // The MMA forms' accumulators: warp (warp % 2, warp / 2) holds rows 64 (warp % 2) and columns 32 (warp / 2).
  float c[4][4][4];
#pragma unroll
  for (int i = 0; i < 64; ++i) (&c[0][0][0])[i] = 0.f;
  const int wm0 = (warp % 2) * 64, wn0 = (warp / 2) * 32;

  const int k_tiles = (p.K + BK - 1) / BK;
  load(0);
  store(0);
  __syncthreads();
  for (int kt = 0; kt < k_tiles; ++kt) {
    const int stage = kt & 1;
    if (kt + 1 < k_tiles) load((kt + 1) * BK);
    const float* as = smem + stage * Sh::kStageFloats;
    const float* bs = as + BK * Sh::LDA;
    if constexpr (Sh::Math == 0) ffma_stage<BK, Sh::LDA, BM, BN, Sh::LDB>(as, bs, tm, tn, acc);
    else mma_stage<Sh::LDA, Sh::LDB, Sh::Math>(as, bs, wm0, wn0, lane, c);
    if (kt + 1 < k_tiles) {
      // The other stage was last read in iteration kt - 1, before this iteration's barrier below.
      store(stage ^ 1);
      __syncthreads();
    }
  }

  if constexpr (Sh::Math != 0) {
    // Accumulator (mt, nt) holds C[row g (+8)][column 2t (+1)] of its 16 x 8 block: through shared memory (the
    // stages are done) into the FFMA layout the stores below are written for.
    __syncthreads();
    float* ct = smem;
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        const int r = wm0 + 16 * mt + g, col = wn0 + 8 * nt + 2 * t;
        *reinterpret_cast<float2*>(ct + r * Sh::LDC + col) = make_float2(c[mt][nt][0], c[mt][nt][1]);
        *reinterpret_cast<float2*>(ct + (r + 8) * Sh::LDC + col) = make_float2(c[mt][nt][2], c[mt][nt][3]);
      }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int r = (i / 4) * kHalfM + 4 * tm + i % 4;
      const float4 lo = *reinterpret_cast<const float4*>(ct + r * Sh::LDC + 4 * tn);
      const float4 hi = *reinterpret_cast<const float4*>(ct + r * Sh::LDC + kHalfN + 4 * tn);
      acc[i][0] = lo.x; acc[i][1] = lo.y; acc[i][2] = lo.z; acc[i][3] = lo.w;
      acc[i][4] = hi.x; acc[i][5] = hi.y; acc[i][6] = hi.z; acc[i][7] = hi.w;
    }
  }

  // Output (q, col) at out[o_base(q) + o_off(col)]: rows 4*tm + i (+BM/2), columns 4*tn + j (+BN/2).
  // A thread's four rows are neighbouring positions and its four columns neighbouring channels (or, on an
  // NCDHW forward, neighbouring parities: aw fastest), so most forms store 16 bytes at a time.
  long long col_off[8];
  float col_bias[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int col = n0 + (j / 4) * kHalfN + 4 * tn + j % 4;
    col_off[j] = -1;
    col_bias[j] = 0.f;
    if (col < p.Ncol) {
      if (kGradInput) {
        col_off[j] = kOutNc ? (long long)col * vol : col;
      } else {
        int a, c;
        split_pair<kOutNc>(col, p.c_out, taps, a, c);
        col_off[j] = kOutNc ? (long long)c * big_vol + parity_pos[a] : (long long)parity_pos[a] * p.c_out + c;
        if (p.bias) col_bias[j] = __ldg(p.bias + c);
      }
    }
  }
  auto o_base = [&](const Pos& q) -> long long {
    const int pos = kGradInput ? q.local : (s * q.dd * bh + s * q.hh) * bw + s * q.ww;
    const int v = kGradInput ? vol : big_vol;
    return kOutNc ? (long long)q.nb * p.c_out * v + pos : ((long long)q.nb * v + pos) * p.c_out;
  };
#pragma unroll
  for (int hm = 0; hm < 2; ++hm) {
    const int q0 = m0 + hm * kHalfM + 4 * tm;
    if (q0 >= p.M) continue;
    // Four rows in one sample and one w row, 16-byte aligned: every tensor's rows are whole 4-position
    // groups when w % 4 == 0 (can_implement keeps the vector forms to that).
    const bool quad = p.vec && (p.w & 3) == 0 && q0 + 3 < p.M;
    const Pos q = decode(p, q0);
    const long long ob0 = o_base(q);
    if (kGradInput && kOutNc && quad) {  // four neighbouring positions per column
#pragma unroll
      for (int j = 0; j < 8; ++j)
        if (col_off[j] >= 0)
          *reinterpret_cast<float4*>(p.out + ob0 + col_off[j]) =
              make_float4(acc[hm * 4][j], acc[hm * 4 + 1][j], acc[hm * 4 + 2][j], acc[hm * 4 + 3][j]);
      continue;
    }
    if (!kGradInput && kOutNc && quad && s == 2) {  // columns (aw 0, aw 1) pairs: 8 floats along w per pair
#pragma unroll
      for (int j = 0; j < 8; j += 2)
        if (col_off[j] >= 0) {
          float* o = p.out + ob0 + col_off[j];
          const int r = hm * 4;
          *reinterpret_cast<float4*>(o) = make_float4(acc[r][j] + col_bias[j], acc[r][j + 1] + col_bias[j + 1],
                                                      acc[r + 1][j] + col_bias[j], acc[r + 1][j + 1] + col_bias[j + 1]);
          *reinterpret_cast<float4*>(o + 4) = make_float4(acc[r + 2][j] + col_bias[j], acc[r + 2][j + 1] + col_bias[j + 1],
                                                          acc[r + 3][j] + col_bias[j], acc[r + 3][j + 1] + col_bias[j + 1]);
        }
      continue;
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int qi = q0 + i;
      if (qi >= p.M) continue;
      // Row qi's base: the next position along w unless the row wraps.
      const long long ob = (q.ww + i < p.w) ? ob0 + (long long)i * (kGradInput ? 1 : s) * (kOutNc ? 1 : p.c_out)
                                             : o_base(decode(p, qi));
      if (!kOutNc && p.vec && (p.c_out & 3) == 0) {  // four neighbouring channels (forward: of one parity)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          if (col_off[4 * h] >= 0)
            *reinterpret_cast<float4*>(p.out + ob + col_off[4 * h]) =
                make_float4(acc[hm * 4 + i][4 * h] + col_bias[4 * h], acc[hm * 4 + i][4 * h + 1] + col_bias[4 * h + 1],
                            acc[hm * 4 + i][4 * h + 2] + col_bias[4 * h + 2],
                            acc[hm * 4 + i][4 * h + 3] + col_bias[4 * h + 3]);
        continue;
      }
#pragma unroll
      for (int j = 0; j < 8; ++j)
        if (col_off[j] >= 0) p.out[ob + col_off[j]] = acc[hm * 4 + i][j] + col_bias[j];
    }
  }
}

template <class Sh, bool kGradInput, bool kInNc, bool kOutNc>
int launch_patch(const PatchArgs& p, cudaStream_t stream) {
  const dim3 grid((unsigned)((p.M + Sh::BM - 1) / Sh::BM), (unsigned)((p.Ncol + Sh::BN - 1) / Sh::BN));
  return direct::launch_with_smem(patch_kernel<Sh, kGradInput, kInNc, kOutNc>, grid, dim3(Sh::kThreads),
                                  Sh::kSmemBytes, stream, p);
}

// Host side of both launch checks: whether the big grid (y or grad_y) is the small one (x or grad_x) times s along
// each axis, and every tensor of the layer has under 2^31 elements (the kernels' 32-bit offsets within a sample's
// channel planes; the larger channel count on the larger grid bounds them all).
inline bool patch_grids_fit(int s, int n, const int (&small)[3], const int (&big)[3], int c_a, int c_b) {
  for (int a = 0; a < 3; ++a)
    if (small[a] < 1 || big[a] != s * small[a]) return false;
  const long long big_elems = (long long)n * big[0] * big[1] * big[2], c_max = c_a > c_b ? c_a : c_b;
  return big_elems * c_max < (1ll << 31);
}

// The direct op's contract (direct_launch.h) read as a patch GEMM: the forward is s_in = 1, s_out = s with the
// s^3 one-tap phases (direct.forward_plan at k == s, padding 0), grad_input s_in = s, s_out = 1 with one phase
// of s^3 taps (direct.grad_input_plan). Anything else is refused, as are the extras of other rows (sums,
// copies, phase sums, sector stores).
template <int BM, int BN, int Math = 0>
struct PatchKernel {
  using Sh = PatchShape<BM, BN, Math>;
  static constexpr int kNotSupported = 5;  // cutlass::Status::kErrorNotSupported

  static int geometry(const DirectLaunch& L, PatchArgs& p, bool& grad_input) {
    if (L.sum_phases || L.in_sums || L.in_copy || L.out_sectors || L.N < 1 || L.Cr < 1 || L.Co < 1)
      return kNotSupported;
    grad_input = L.s_out == 1 && L.num_phases == 1 && L.s_in > 1;
    const int s = grad_input ? L.s_in : L.s_out;
    if (s < 1 || s > 4 || (grad_input ? L.s_out : L.s_in) != 1) return kNotSupported;
    const int taps = s * s * s;
    // The small grid (x, or grad_x) and the big one (y, or grad_y), s times as large per axis.
    const int sd = grad_input ? L.Do : L.Di, sh = grad_input ? L.Ho : L.Hi, sw = grad_input ? L.Wo : L.Wi;
    const int bd = grad_input ? L.Di : L.Do, bh = grad_input ? L.Hi : L.Ho, bw = grad_input ? L.Wi : L.Wo;
    if (!patch_grids_fit(s, L.N, {sd, sh, sw}, {bd, bh, bw}, L.Cr, L.Co)) return kNotSupported;
    if (grad_input) {
      const DirectPhase& ph = L.phase[0];
      for (int a = 0; a < 3; ++a)
        if (ph.taps[a] != s || ph.dmin[a] != 0 || ph.first[a] != 0 || ph.count[a] != (a == 0 ? sd : a == 1 ? sh : sw))
          return kNotSupported;
      if (L.bias) return kNotSupported;
    } else {
      if (L.num_phases != taps) return kNotSupported;
      unsigned long long seen = 0;
      for (int i = 0; i < L.num_phases; ++i) {
        const DirectPhase& ph = L.phase[i];
        for (int a = 0; a < 3; ++a)
          if (ph.taps[a] != 1 || ph.dmin[a] != 0 || ph.first[a] < 0 || ph.first[a] >= s ||
              ph.count[a] != (a == 0 ? sd : a == 1 ? sh : sw))
            return kNotSupported;
        seen |= 1ull << ((ph.first[0] * s + ph.first[1]) * s + ph.first[2]);
      }
      if (seen != (taps == 64 ? ~0ull : (1ull << taps) - 1)) return kNotSupported;  // every residue once
    }
    const long long small = (long long)L.N * sd * sh * sw;
    p = PatchArgs{};
    p.act = L.in;
    p.b = L.weight;
    p.bias = grad_input ? nullptr : L.bias;
    p.out = L.out;
    p.n = L.N; p.d = sd; p.h = sh; p.w = sw; p.s = s;
    p.c_act = L.Cr;
    p.c_out = L.Co;
    p.K = grad_input ? taps * L.Cr : L.Cr;
    p.Ncol = grad_input ? L.Co : taps * L.Co;
    p.M = (int)small;
    p.taps_div = cutlass::FastDivmod(taps);
    p.cact_div = cutlass::FastDivmod(L.Cr);
    p.vec = (reinterpret_cast<uintptr_t>(L.out) & 15) == 0;
    return 0;
  }

  static int can_implement(const DirectLaunch& L) {
    PatchArgs p;
    bool gi;
    return geometry(L, p, gi);
  }

  template <bool kGradInput>
  static int dispatch(const DirectLaunch& L, const PatchArgs& p) {
    if (L.in_ncdhw)
      return L.out_ncdhw ? launch_patch<Sh, kGradInput, true, true>(p, L.stream)
                         : launch_patch<Sh, kGradInput, true, false>(p, L.stream);
    return L.out_ncdhw ? launch_patch<Sh, kGradInput, false, true>(p, L.stream)
                       : launch_patch<Sh, kGradInput, false, false>(p, L.stream);
  }

  static int run(const DirectLaunch& L) {
    PatchArgs p;
    bool gi;
    if (const int rc = geometry(L, p, gi)) return rc;
    return gi ? dispatch<true>(L, p) : dispatch<false>(L, p);
  }

  static DirectEntry entry(const char* name) { return DirectEntry{name, &can_implement, &run}; }
};

// grad_weight at k == stride: partials[z][a][ci][co] = sum over slice z's positions q of x[q, ci] *
// grad_y[n, co, s*d + ad, s*h + ah, s*w + aw]; the caller sums the slices in a fixed order (launch._finish).
// GEMM M = C_in, N = (a, C_out) (C_out fastest: the partials' order), K = x's positions. A thread's rows are
// C_in and its columns (a, co); operands are staged [k][m] and [k][n] as in the passes above, with lanes along
// positions where a tensor is NCDHW and along channels where it is channels_last_3d.
struct PatchWgradArgs {
  const float* x;     // [N, C_in, D, H, W] or channels_last_3d
  const float* gy;    // [N, C_out, sD, sH, sW] or channels_last_3d
  float* partials;    // [slices, s^3, C_in, C_out]
  int n, d, h, w, s, ci, co;
  int positions, per_slice;  // n * d * h * w; positions per slice (a multiple of the stage's)
  cutlass::FastDivmod vol_div;  // by d * h * w
  cutlass::FastDivmod plane_div, w_div;  // by h * w and w
  bool vec;                      // C_out % 4 == 0: 16-byte partial stores
};

// A position of x's grid, walked one position at a time without divisions.
struct Walk {
  int nb, dd, hh, ww;
  __device__ __forceinline__ void set(const PatchWgradArgs& p, int q) {
    int local, rem;
    p.vol_div(nb, local, q);
    p.plane_div(dd, rem, local);
    p.w_div(hh, ww, rem);
  }
  __device__ __forceinline__ void step(const PatchWgradArgs& p) {
    if (++ww == p.w) {
      ww = 0;
      if (++hh == p.h) {
        hh = 0;
        if (++dd == p.d) { dd = 0; ++nb; }
      }
    }
  }
};

template <int BM_, int BN_, int BK_>
struct PatchWgradShape {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, kThreads = BM * BN / 64;
  static constexpr int kLanesM = 8, kWarpsM = BM / (8 * kLanesM);
  static constexpr int kMinBlocks = 2048 / kThreads / 4;
  static constexpr int kLoadsA = BM * BK / kThreads, kLoadsB = BN * BK / kThreads;
  static constexpr int LDA = BM + 4;
  static constexpr int kStageFloats = BK * (LDA + BN);
  static constexpr int kMaxTaps = 64;
  // The parity table, then each column's offset in grad_y (-1 past the columns).
  static constexpr size_t kSmemBytes = 2 * size_t(kStageFloats) * sizeof(float) + (kMaxTaps + BN) * sizeof(int);
  static_assert(BM == 64 || BM == 128, "64 or 128 rows of C_in");
  static_assert(BN == 64 || BN == 128, "64 or 128 columns");
  static_assert(kThreads % BK == 0 && kThreads % BM == 0 && kThreads % BN == 0, "whole load rows");
};

template <class Sh, bool kXNc, bool kGyNc>
__global__ void __launch_bounds__(Sh::kThreads, Sh::kMinBlocks) patch_wgrad_kernel(PatchWgradArgs p) {
  constexpr int BM = Sh::BM, BN = Sh::BN, BK = Sh::BK, kHalfM = BM / 2, kHalfN = BN / 2, T = Sh::kThreads;
  extern __shared__ __align__(16) float smem[];
  int* parity_pos = reinterpret_cast<int*>(smem + 2 * Sh::kStageFloats);

  const int tid = threadIdx.x;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const int s = p.s, taps = s * s * s, ncol = taps * p.co;
  const int bh = s * p.h, bw = s * p.w, big_vol = s * p.d * bh * bw, vol = p.d * p.h * p.w;
  int* col_tab = parity_pos + Sh::kMaxTaps;
  if (tid < taps) parity_pos[tid] = ((tid / (s * s)) * bh + (tid / s) % s) * bw + tid % s;
  __syncthreads();
  // Column (a, co)'s offset in grad_y (its parity's position and its channel; under 2^31 by geometry()).
  for (int n = tid; n < BN; n += T) {
    const int col = n0 + n, a = col / p.co, c = col - a * p.co;
    col_tab[n] = col < ncol ? (kGyNc ? c * big_vol + parity_pos[a] : parity_pos[a] * p.co + c) : -1;
  }
  __syncthreads();
  const int q_begin = blockIdx.z * p.per_slice;
  const int q_end = min(q_begin + p.per_slice, p.positions);

  // A = x^T: lanes along positions (NCDHW) or along C_in (channels_last_3d).
  constexpr int kAStepK = kXNc ? 0 : T / BM, kAStepM = kXNc ? T / BK : 0;
  const int a_k = kXNc ? tid % BK : tid / BM, a_m = kXNc ? tid / BK : tid % BM;
  // B = grad_y at (position, (a, co)): lanes along positions (NCDHW) or along the columns (channels_last_3d).
  constexpr int kBStepK = kGyNc ? 0 : T / BN, kBStepN = kGyNc ? T / BK : 0;
  const int b_k = kGyNc ? tid % BK : tid / BN, b_n = kGyNc ? tid / BK : tid % BN;
  float ra[Sh::kLoadsA], rb[Sh::kLoadsB];
  auto load = [&](int k0) {
    // A: x at (q, ci).
    if (kXNc) {  // one position per thread: k0 + a_k
      const int q = k0 + a_k;
      int nb = 0, local = 0;
      if (q < q_end) p.vol_div(nb, local, q);
      const long long base = (long long)nb * p.ci * vol + local;
#pragma unroll
      for (int i = 0; i < Sh::kLoadsA; ++i) {
        const int ci = m0 + a_m + i * kAStepM;
        ra[i] = (q < q_end && ci < p.ci) ? __ldg(p.x + base + (long long)ci * vol) : 0.f;
      }
    } else {  // channels_last_3d: x[q][ci], no decode
      const int ci = m0 + a_m;
#pragma unroll
      for (int i = 0; i < Sh::kLoadsA; ++i) {
        const int q = k0 + a_k + i * kAStepK;
        ra[i] = (q < q_end && ci < p.ci) ? __ldg(p.x + (long long)q * p.ci + ci) : 0.f;
      }
    }
    // B: grad_y at the position's patch plus the column's parity and channel.
    if (kGyNc) {  // one position per thread
      const int q = k0 + b_k;
      Walk at{0, 0, 0, 0};
      if (q < q_end) at.set(p, q);
      const long long base = (long long)at.nb * p.co * big_vol + ((long long)s * at.dd * bh + s * at.hh) * bw + s * at.ww;
#pragma unroll
      for (int i = 0; i < Sh::kLoadsB; ++i) {
        const int off = col_tab[b_n + i * kBStepN];
        rb[i] = (q < q_end && off >= 0) ? __ldg(p.gy + base + off) : 0.f;
      }
    } else {  // the thread's positions are kBStepK apart: one decode, then steps
      Walk at{0, 0, 0, 0};
      const int q0 = k0 + b_k, off = col_tab[b_n];
      if (q0 < q_end) at.set(p, q0);
#pragma unroll
      for (int i = 0; i < Sh::kLoadsB; ++i) {
        const int q = q0 + i * kBStepK;
        const long long base =
            ((long long)at.nb * big_vol + ((long long)s * at.dd * bh + s * at.hh) * bw + s * at.ww) * p.co;
        rb[i] = (q < q_end && off >= 0) ? __ldg(p.gy + base + off) : 0.f;
        if (i + 1 < Sh::kLoadsB)
#pragma unroll
          for (int j = 0; j < kBStepK; ++j) at.step(p);
      }
    }
  };
  auto store = [&](int stage) {
    float* as = smem + stage * Sh::kStageFloats;
    float* bs = as + BK * Sh::LDA;
#pragma unroll
    for (int i = 0; i < Sh::kLoadsA; ++i) as[(a_k + i * kAStepK) * Sh::LDA + a_m + i * kAStepM] = ra[i];
#pragma unroll
    for (int i = 0; i < Sh::kLoadsB; ++i) bs[(b_k + i * kBStepK) * BN + b_n + i * kBStepN] = rb[i];
  };

  const int lane = tid & 31, warp = tid >> 5;
  const int tm = (warp % Sh::kWarpsM) * Sh::kLanesM + lane % Sh::kLanesM;
  const int tn = (warp / Sh::kWarpsM) * (32 / Sh::kLanesM) + lane / Sh::kLanesM;
  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;

  const int k_tiles = q_end > q_begin ? (q_end - q_begin + BK - 1) / BK : 0;
  if (k_tiles > 0) {
    load(q_begin);
    store(0);
    __syncthreads();
  }
  for (int kt = 0; kt < k_tiles; ++kt) {
    const int stage = kt & 1;
    if (kt + 1 < k_tiles) load(q_begin + (kt + 1) * BK);
    const float* as = smem + stage * Sh::kStageFloats;
    const float* bs = as + BK * Sh::LDA;
    ffma_stage<BK, Sh::LDA, BM, BN>(as, bs, tm, tn, acc);
    if (kt + 1 < k_tiles) {
      store(stage ^ 1);
      __syncthreads();
    }
  }

  // partials[z][a][ci][co]: a thread's four columns are four channels of one parity where C_out % 4 == 0.
  float* out = p.partials + (long long)blockIdx.z * ncol * p.ci;
#pragma unroll
  for (int hm = 0; hm < 2; ++hm)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int ci = m0 + hm * kHalfM + 4 * tm + i;
      if (ci >= p.ci) continue;
#pragma unroll
      for (int hn = 0; hn < 2; ++hn) {
        const int col = n0 + hn * kHalfN + 4 * tn;
        if (col >= ncol) continue;
        const int a = col / p.co, c = col - a * p.co;
        float* o = out + ((long long)a * p.ci + ci) * p.co + c;
        const float* v = &acc[hm * 4 + i][hn * 4];
        if (p.vec) {
          *reinterpret_cast<float4*>(o) = make_float4(v[0], v[1], v[2], v[3]);
        } else {
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const int cj = col + j;
            if (cj >= ncol) break;
            const int aj = cj / p.co, c2 = cj - aj * p.co;
            out[((long long)aj * p.ci + ci) * p.co + c2] = v[j];
          }
        }
      }
    }
}

// The direct_wgrad op's contract (direct_launch.h) at k == stride, padding 0: x's grid s times smaller than
// grad_y's, partials [slices, s^3, C_in, C_out]; taps_per_group and tap_groups are not used.
template <int BM, int BN, int BK>
struct PatchWgradKernel {
  using Sh = PatchWgradShape<BM, BN, BK>;
  static constexpr int kNotSupported = 5;

  static int geometry(const DirectWgradLaunch& L, PatchWgradArgs& p) {
    const int s = L.k;
    if (L.stride != s || L.pad != 0 || s < 2 || s > 4 || L.slices < 1 || L.N < 1 || L.Ci < 1 || L.Co < 1)
      return kNotSupported;
    if (!patch_grids_fit(s, L.N, {L.Di, L.Hi, L.Wi}, {L.Do, L.Ho, L.Wo}, L.Ci, L.Co) ||
        (long long)L.slices * s * s * s * L.Ci * L.Co >= (1ll << 31))
      return kNotSupported;
    const long long small = (long long)L.N * L.Di * L.Hi * L.Wi;
    p = PatchWgradArgs{};
    p.x = L.x;
    p.gy = L.gy;
    p.partials = L.partials;
    p.n = L.N; p.d = L.Di; p.h = L.Hi; p.w = L.Wi; p.s = s; p.ci = L.Ci; p.co = L.Co;
    p.positions = (int)small;
    const int per = (int)((small + L.slices - 1) / L.slices);
    p.per_slice = (per + BK - 1) / BK * BK;
    p.vol_div = cutlass::FastDivmod(L.Di * L.Hi * L.Wi);
    p.plane_div = cutlass::FastDivmod(L.Hi * L.Wi);
    p.w_div = cutlass::FastDivmod(L.Wi);
    p.vec = (L.Co & 3) == 0 && (reinterpret_cast<uintptr_t>(L.partials) & 15) == 0;
    return 0;
  }

  static int can_implement(const DirectWgradLaunch& L) {
    PatchWgradArgs p;
    return geometry(L, p);
  }

  template <bool kXNc, bool kGyNc>
  static int launch(const PatchWgradArgs& p, int slices, cudaStream_t stream) {
    const dim3 grid((unsigned)((p.ci + BM - 1) / BM), (unsigned)((p.s * p.s * p.s * p.co + BN - 1) / BN),
                    (unsigned)slices);
    patch_wgrad_kernel<Sh, kXNc, kGyNc><<<grid, Sh::kThreads, Sh::kSmemBytes, stream>>>(p);
    const cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? 0 : 1000 + (int)e;
  }

  static int run(const DirectWgradLaunch& L) {
    PatchWgradArgs p;
    if (const int rc = geometry(L, p)) return rc;
    if (L.slices > 65535) return kNotSupported;
    if (L.x_ncdhw)
      return L.gy_ncdhw ? launch<true, true>(p, L.slices, L.stream) : launch<true, false>(p, L.slices, L.stream);
    return L.gy_ncdhw ? launch<false, true>(p, L.slices, L.stream) : launch<false, false>(p, L.slices, L.stream);
  }

  static DirectWgradEntry entry(const char* name) { return DirectWgradEntry{name, &can_implement, &run}; }
};

}  // namespace patch
}  // namespace convt3d
