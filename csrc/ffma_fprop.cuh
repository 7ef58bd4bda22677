// Exact-fp32 Fprop (grad_input of a strided ConvTranspose3d, a stride-s Conv3d over grad_y) as an implicit GEMM
// on FFMA, behind the stock kernels' ConvLaunch contract (conv_launch.h, Fprop):
//     result[n, z, p, q, k] = sum over (t, r, s', c) of activation[n, z*st - pad + t, p*st - pad + r, q*st - pad + s', c]
//                                                      * filter[k, t, r, s', c]  (+ bias[k])
// GEMM: M = result positions, N = K, K = (t, r, s', c), c fastest; both operands NDHWC / KTRSC.
//
// Why: the stock SIMT Fprop (conv_kernel.cuh) copies A one 4-byte element per cp.async and transposes it into
// shared memory (CUTLASS's SIMT cores read A as [k][m]), and ran the strided layers' grad_input at 54-73% of the
// FP32 matmul rate against cuDNN's 80% (H200, v0.73). Both operands here are K-major in memory (channels
// contiguous), so every stage row is 16-byte cp.async straight from global memory, and the FFMAs read both
// operands K-major from shared memory: per 4 k a thread reads its 8 rows of A and 8 columns of B as 16 bytes
// each (16 reads for 256 FFMA, the count a [k][m] layout needs too).
//
// Bank conflicts: a quarter warp's 8 lanes hold 8 consecutive rows of A (rows tm + BM/8 i), whose 16-byte reads
// at a row pitch of BK + 4 floats land on 8 distinct groups of 4 banks; they share their B columns (broadcast).
//
// NC (ConvLaunch::ncdhw): activation (grad_y) packed [N, C, D, H, W] and result (grad_x) packed [N, K, Z, P, Q], so
// that an NCDHW layer's backward converts neither. Positions, GEMM M, are then the inner axis of both: A's stage is
// [k][m], filled by 4-byte cp.async with a warp's lanes on 32 consecutive positions (stride apart in grad_y) and no
// transpose, each thread's four positions decoded once per CTA; the FFMAs read A as 16 bytes of 4 positions per k
// (rows 4 tm + i, + BM / 2: a quarter warp's 8 lanes on 128 consecutive bytes) and B as before; grad_x leaves as
// 16 bytes of 4 positions per channel (Z P Q % 4 == 0, so 4 positions never straddle two samples).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "conv_launch.h"
#include "cute/arch/copy_sm80.hpp"
#include "cute/arch/mma.hpp"
#include "cutlass/fast_math.h"
#include "direct_atoms.cuh"
#include "fprop_args.h"

namespace convt3d {
namespace ffma {

struct FpropArgs {
  const float* act;   // [N, D, H, W, C]
  const float* flt;   // [K, T, R, S, C]
  const float* bias;  // [K] or null
  float* out;         // [N, Z, P, Q, K]
  int C, K, ktot;     // ktot = T*R*S*C
  int D, H, W;
  int stride, pad_d, pad_h, pad_w;
  int M;              // N*Z*P*Q
  cutlass::FastDivmod div_q, div_p, div_z;  // result position -> (n, z, p, q)
  cutlass::FastDivmod div_c, div_s, div_r;  // k -> (tap, c); tap -> (t, r, s')
  int T, R, S;                               // NC: taps along d, h, w
  int dhw, zpq;                              // NC: grad_y's and grad_x's positions per channel
  cutlass::FastDivmod div_zpq;               // NC: result position -> (n, position in the sample)
};

template <int BM_, int BN_, int BK_, int Stages_>
struct FpropShape {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, Stages = Stages_;
  static constexpr int kThreads = BM * BN / 64;
  // Compute roles: 8 lanes of a warp along M, 4 along N; thread (tm, tn) holds rows tm + kRowStep i and
  // columns 4 tn + j (+ BN / 2).
  static constexpr int kRowStep = BM / 8, kColThreads = BN / 8;
  static constexpr int kWarpsM = kRowStep / 8;
  static constexpr int LDK = BK + 4;  // row pitch in floats: 8 consecutive rows on 8 distinct bank groups
  static constexpr int kStageFloats = (BM + BN) * LDK;
  static constexpr size_t kSmemBytes = size_t(Stages) * kStageFloats * sizeof(float);
  // Copy roles: a thread keeps one 16-byte chunk column (k) and takes every kRowsPerPass-th row.
  static constexpr int kChunks = BK / 4, kRowsPerPass = kThreads / kChunks;
  static constexpr int kCopiesA = BM / kRowsPerPass, kCopiesB = BN / kRowsPerPass;
#ifdef CONVT3D_FPROP_MIN_BLOCKS  // bench/tools/ffmafprop.cu's A/B
  static constexpr int kMinBlocks = CONVT3D_FPROP_MIN_BLOCKS * 256 / kThreads;
#else
  static constexpr int kMinBlocks = kThreads >= 256 ? 1 : 2;
#endif
  static_assert(BM % 64 == 0 && BN % 32 == 0 && kWarpsM >= 1, "tile");
  static_assert(kThreads % kChunks == 0 && BM % kRowsPerPass == 0 && BN % kRowsPerPass == 0, "whole copy rows");
  static_assert(BK % 4 == 0, "16-byte chunks");
};

// B, both kernels' filter rows of a stage (K-major, FpropShape's copy roles): rows n0 + row0 + kRowsPerPass i,
// 16-byte chunk k of each.
template <class Sh>
__device__ __forceinline__ void copy_filter_rows(const FpropArgs& a, float* bs, int n0, int row0, int chunk, int k,
                                                 bool k_ok) {
#pragma unroll
  for (int i = 0; i < Sh::kCopiesB; ++i) {
    const int n = n0 + row0 + i * Sh::kRowsPerPass;
    const bool ok = k_ok && n < a.K;
    const float* src = ok ? a.flt + (long long)n * a.ktot + k : a.flt;
    direct::copy16(src, bs + (row0 + i * Sh::kRowsPerPass) * Sh::LDK + 4 * chunk, ok);
  }
}

template <class Sh>
__global__ void __launch_bounds__(Sh::kThreads, Sh::kMinBlocks) ffma_fprop_kernel(const __grid_constant__ FpropArgs a) {
  constexpr int BM = Sh::BM, BN = Sh::BN, BK = Sh::BK, Stages = Sh::Stages, LDK = Sh::LDK;
  using Fma = cute::UniversalFMA<float, float, float, float>;
  extern __shared__ __align__(16) float smem[];

  const int tid = threadIdx.x;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const int k_tiles = (a.ktot + BK - 1) / BK;

  // A rows: each copy row's result position, decoded once: grad_y's corner index (tap 0) and its coordinates.
  const int chunk = tid % Sh::kChunks, row0 = tid / Sh::kChunks;
  int a_base[Sh::kCopiesA], a_z[Sh::kCopiesA], a_y[Sh::kCopiesA], a_x[Sh::kCopiesA];
#pragma unroll
  for (int i = 0; i < Sh::kCopiesA; ++i) {
    const int m = m0 + row0 + i * Sh::kRowsPerPass;
    if (m < a.M) {
      const int4 c = direct::tap_corner(a, m);
      a_z[i] = c.y;
      a_y[i] = c.z;
      a_x[i] = c.w;
      a_base[i] = ((c.x * a.D + a_z[i]) * a.H + a_y[i]) * a.W + a_x[i];
    } else {
      a_z[i] = -(1 << 28);  // never inside
      a_y[i] = a_x[i] = a_base[i] = 0;
    }
  }

  auto load = [&](int stage, int kt) {
    float* as = smem + stage * Sh::kStageFloats;
    float* bs = as + BM * LDK;
    const int k = kt * BK + 4 * chunk;
    const bool k_ok = k < a.ktot;
    int tap = 0, c = 0, t = 0, r = 0, s = 0;
    if (k_ok) {
      a.div_c(tap, c, k);
      int rest;
      a.div_s(rest, s, tap);
      a.div_r(t, r, rest);
    }
    const int tap_pos = (t * a.H + r) * a.W + s;
#pragma unroll
    for (int i = 0; i < Sh::kCopiesA; ++i) {
      const bool ok = k_ok && (unsigned)(a_z[i] + t) < (unsigned)a.D && (unsigned)(a_y[i] + r) < (unsigned)a.H &&
                      (unsigned)(a_x[i] + s) < (unsigned)a.W;
      const float* src = a.act + (long long)(a_base[i] + tap_pos) * a.C + c;
      direct::copy16(ok ? src : a.act, as + (row0 + i * Sh::kRowsPerPass) * LDK + 4 * chunk, ok);
    }
    copy_filter_rows<Sh>(a, bs, n0, row0, chunk, k, k_ok);
  };

  const int lane = tid & 31, warp = tid >> 5;
  const int tm = (warp % Sh::kWarpsM) * 8 + (lane & 7);
  const int tn = (warp / Sh::kWarpsM) * 4 + (lane >> 3);

  float acc[8][8];
  direct::zero_acc(acc);

  auto compute = [&](int stage) {
    const float* as = smem + stage * Sh::kStageFloats + tm * LDK;
    const float* bs = smem + stage * Sh::kStageFloats + BM * LDK + 4 * tn * LDK;
#pragma unroll
    for (int kq = 0; kq < BK; kq += 4) {
      direct::ffma_kmajor_step<Fma, Sh::kRowStep, BN, LDK>(acc, as, bs, kq);
    }
  };

  direct::run_stages<Stages>(k_tiles, load, compute);

  // Rows tm + kRowStep i, columns 4 tn (+ BN / 2): 16-byte stores of four channels (K % 4 == 0).
#pragma unroll
  for (int hc = 0; hc < 2; ++hc) {
    const int n = n0 + hc * (BN / 2) + 4 * tn;
    if (n >= a.K) continue;
    float4 b = make_float4(0.f, 0.f, 0.f, 0.f);
    if (a.bias) b = *reinterpret_cast<const float4*>(a.bias + n);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int m = m0 + tm + i * Sh::kRowStep;
      if (m >= a.M) continue;
      *reinterpret_cast<float4*>(a.out + (long long)m * a.K + n) =
          make_float4(acc[i][4 * hc] + b.x, acc[i][4 * hc + 1] + b.y, acc[i][4 * hc + 2] + b.z, acc[i][4 * hc + 3] + b.w);
    }
  }
}


// The NC kernel's k loop not unrolled (BK / 4 = 8 steps of 4 k, each 256 FFMA): ncu put its excess over the
// channels_last_3d kernel in fetch (no_instruction 0.55 against 0.13 per issue) and dispatch stalls (0.69 against 0.27),
// with only 5% more instructions, three CTAs of its 4 warps per SM running the fully unrolled loop (about 40 KB of code a
// stage). Its kernel time against the channels_last_3d kernel's (H200, v0.84, bench/tools/ffmanc.py, same process):
// fully unrolled 1.20-1.40x, by 4 1.15-1.19x, by 2 1.12-1.28x, not at all 1.04-1.19x (U-Net outpad 0.251-0.276 -> 0.210
// ms, U-Net 64->32 1.69-1.81 -> 1.55-1.68, SR x2 1.45-1.52 -> 1.33-1.44). Four stages (two CTAs per SM) were level
// except on outpad.
// CONVT3D_FPROP_NC_STAGES (0: the tile's) and CONVT3D_FPROP_NC_KQ_UNROLL are the A/B macros (CUDAFLAGS at build time).
#ifndef CONVT3D_FPROP_NC_STAGES
#define CONVT3D_FPROP_NC_STAGES 0
#endif
#ifndef CONVT3D_FPROP_NC_KQ_UNROLL
#define CONVT3D_FPROP_NC_KQ_UNROLL 1
#endif
constexpr int kNcKqUnroll = CONVT3D_FPROP_NC_KQ_UNROLL;

// The NC kernel (see the header): FpropShape's tile and B roles, A and the result in NCDHW storage.
template <class Sh>
__global__ void __launch_bounds__(Sh::kThreads, Sh::kMinBlocks) ffma_fprop_nc_kernel(const __grid_constant__ FpropArgs a) {
  constexpr int BM = Sh::BM, BN = Sh::BN, BK = Sh::BK, Stages = Sh::Stages, LDK = Sh::LDK;
  constexpr int kWarps = Sh::kThreads / 32, kPos = BM / 32, kRows = BK / kWarps;
  constexpr int kStage = BK * BM + BN * LDK;  // A [BK][BM], then B [BN][LDK]
  static_assert(BM % 32 == 0 && BK % kWarps == 0, "copy roles");
  using Fma = cute::UniversalFMA<float, float, float, float>;
  extern __shared__ __align__(16) float smem[];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const int k_tiles = (a.ktot + BK - 1) / BK;

  // A copy roles: positions m0 + lane + 32 i, rows (k) warp + kWarps j. Each position's grad_y index of its tap-0
  // corner and the taps along d, h, w that land inside grad_y (one byte of bits per axis).
  // The corner as a pointer, so that an element's address is one wide multiply-add of its row's offset; a copy
  // predicated off reads nothing (cp.async's source size 0), so its address may fall outside grad_y.
  const float* a_ptr[kPos];
  int a_bits[kPos];
#pragma unroll
  for (int i = 0; i < kPos; ++i) {
    const int m = m0 + lane + 32 * i;
    a_ptr[i] = a.act;
    a_bits[i] = 0;  // past M: no tap inside
    if (m < a.M) {
      const int4 c = direct::tap_corner(a, m);
      const int gz = c.y, gh = c.z, gw = c.w;
      a_ptr[i] = a.act + (c.x * a.C * a.dhw + (gz * a.H + gh) * a.W + gw);
      a_bits[i] = direct::tap_range_bits(gz, a.T, a.D) | (direct::tap_range_bits(gh, a.R, a.H) << 8) |
                  (direct::tap_range_bits(gw, a.S, a.W) << 16);
    }
  }
  // B copy roles (FpropShape's): one 16-byte chunk column, every kRowsPerPass-th row.
  const int chunk = tid % Sh::kChunks, row0 = tid / Sh::kChunks;

  auto load = [&](int stage, int kt) {
    float* as = smem + stage * kStage;
    float* bs = as + BK * BM;
    const int kb = kt * BK;
    // k = kb + warp + kWarps j: (tap, c) decoded for j = 0, then stepped by kWarps along c, into the next taps.
    int tap = 0, c = 0, t = 0, r = 0, s = 0;
    {
      const int k = kb + warp;
      if (k < a.ktot) {
        a.div_c(tap, c, k);
        int rest;
        a.div_s(rest, s, tap);
        a.div_r(t, r, rest);
      }
    }
#pragma unroll
    for (int j = 0; j < kRows; ++j) {
      const int kk = warp + kWarps * j;
      const bool k_ok = kb + kk < a.ktot;
      const int koff = c * a.dhw + (t * a.H + r) * a.W + s;
      const int kbits = (1 << t) | (1 << (8 + r)) | (1 << (16 + s));
#pragma unroll
      for (int i = 0; i < kPos; ++i) {
        const bool ok = k_ok && (a_bits[i] & kbits) == kbits;
        direct::copy4(a_ptr[i] + koff, as + kk * BM + lane + 32 * i, ok);
      }
      // C % 4 == 0 and kWarps == 4: one step crosses at most one channel block, so selects do it without the loop's
      // branches (v0.84: level on three layers, the NC kernel 1.05x on U-Net outpad, bench/tools/ffmanc.py).
      static_assert(kWarps == 4, "one wrap per step needs kWarps <= C (C % 4 == 0)");
      c += kWarps;
      const bool wc = c >= a.C;
      c = wc ? c - a.C : c;
      s += wc;
      const bool ws = s == a.S;
      s = ws ? 0 : s;
      r += ws;
      const bool wr = r == a.R;
      r = wr ? 0 : r;
      t += wr;
    }
    const int k = kb + 4 * chunk;
    const bool k_ok = k < a.ktot;
    copy_filter_rows<Sh>(a, bs, n0, row0, chunk, k, k_ok);
  };

  const int tm = (warp % Sh::kWarpsM) * 8 + (lane & 7);
  const int tn = (warp / Sh::kWarpsM) * 4 + (lane >> 3);

  float acc[8][8];
  direct::zero_acc(acc);

  auto compute = [&](int stage) {
    const float* as = smem + stage * kStage + 4 * tm;
    const float* bs = smem + stage * kStage + BK * BM + 4 * tn * LDK;
#pragma unroll kNcKqUnroll
    for (int kq = 0; kq < BK; kq += 4) {
      float4 bv[8];
#pragma unroll
      for (int j = 0; j < 8; ++j)
        bv[j] = *reinterpret_cast<const float4*>(bs + ((j / 4) * (BN / 2) + j % 4) * LDK + kq);
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const float4 a0 = *reinterpret_cast<const float4*>(as + (kq + u) * BM);
        const float4 a1 = *reinterpret_cast<const float4*>(as + (kq + u) * BM + BM / 2);
        const float av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
          for (int j = 0; j < 8; ++j) {
            const float b = u == 0 ? bv[j].x : u == 1 ? bv[j].y : u == 2 ? bv[j].z : bv[j].w;
            Fma::fma(acc[i][j], av[i], b, acc[i][j]);
          }
      }
    }
  };

  direct::run_stages<Stages>(k_tiles, load, compute);

  // Rows 4 tm + i (+ BM / 2), columns 4 tn + j (+ BN / 2): per column, 16 bytes of 4 positions (M % 4 == 0).
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int m = m0 + h * (BM / 2) + 4 * tm;
    if (m >= a.M) continue;
    int n_img, sp;
    a.div_zpq(n_img, sp, m);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int n = n0 + (j / 4) * (BN / 2) + 4 * tn + j % 4;
      if (n >= a.K) continue;
      const float bias = a.bias ? a.bias[n] : 0.f;
      *reinterpret_cast<float4*>(a.out + ((long long)n_img * a.K + n) * a.zpq + sp) =
          make_float4(acc[4 * h][j] + bias, acc[4 * h + 1][j] + bias, acc[4 * h + 2][j] + bias, acc[4 * h + 3][j] + bias);
    }
  }
}

template <int BM, int BN, int BK, int Stages>
struct FfmaFpropKernel {
  using Sh = FpropShape<BM, BN, BK, Stages>;
  using ShNc = FpropShape<BM, BN, BK, (CONVT3D_FPROP_NC_STAGES > 0 ? CONVT3D_FPROP_NC_STAGES : Stages)>;
  static constexpr size_t kNcSmemBytes = size_t(ShNc::Stages) * (BK * BM + BN * Sh::LDK) * sizeof(float);

  static int can_implement(const ConvLaunch& L) {
    if (L.C % 4 != 0 || L.K % 4 != 0) return 1;  // kErrorMisalignedOperand: 16-byte channel chunks
    if (((uintptr_t)L.activation | (uintptr_t)L.filter | (uintptr_t)L.result | (uintptr_t)L.bias) % 16 != 0) return 1;
    if (L.ncdhw) {
      // grad_x's 16-byte stores of 4 positions stay in one sample; grad_y's element indices in 32 bits; one byte of
      // tap bits per axis.
      if ((long long)L.Z * L.P * L.Q % 4 != 0) return 1;
      if ((long long)L.N * L.C * L.D * L.H * L.W >= (1LL << 31) || L.T > 8 || L.R > 8 || L.S > 8) return 5;
    }
    const int code = fprop_extent_checks(L, BN);
    return code != 0 ? code : direct::smem_fits(L.ncdhw ? kNcSmemBytes : Sh::kSmemBytes);
  }

  static std::size_t workspace_size(const ConvLaunch&) { return 0; }

  static int run(const ConvLaunch& L) {
    const int code = can_implement(L);
    if (code != 0) return code;
    FpropArgs a;
    fprop_geometry(L, a);
    a.C = L.C;
    a.ktot = L.T * L.R * L.S * L.C;
    a.div_c = cutlass::FastDivmod(L.C);
    a.div_s = cutlass::FastDivmod(L.S);
    a.div_r = cutlass::FastDivmod(L.R);
    a.T = L.T, a.R = L.R, a.S = L.S;
    a.dhw = L.D * L.H * L.W;
    a.zpq = L.Z * L.P * L.Q;
    a.div_zpq = cutlass::FastDivmod(a.zpq > 0 ? a.zpq : 1);
    if (a.M == 0) return 0;
    const dim3 grid((unsigned)((a.M + BM - 1) / BM), (unsigned)((a.K + BN - 1) / BN));
    if (L.ncdhw)
      return direct::launch_with_smem(ffma_fprop_nc_kernel<ShNc>, grid, Sh::kThreads, kNcSmemBytes, L.stream, a);
    return direct::launch_with_smem(ffma_fprop_kernel<Sh>, grid, Sh::kThreads, Sh::kSmemBytes, L.stream, a);
  }

  static KernelEntry entry(const char* name) {
    KernelEntry e{name, &can_implement, &workspace_size, &run};
    e.reads_ncdhw = true;
    return e;
  }
};

}  // namespace ffma
}  // namespace convt3d
