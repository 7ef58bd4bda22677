// tf32 grad_input of a layer with 4 output channels (an output head padded to 4 by channel_pad.py, or a real
// 4-channel layer) as an implicit GEMM on mma.sync, behind the stock kernels' ConvLaunch contract
// (conv_launch.h, Fprop):
//     result[n, z, p, q, k] = sum over (t, r, s', c) of activation[n, z*st - pad + t, p*st - pad + r, q*st - pad + s', c]
//                                                      * filter[k, t, r, s', c]
// GEMM: M = result positions, N = K (grad_input's C_in), K = (t, r, s', c) with C = 4, c fastest.
//
// Why: with a reduction of k^3 x 4 the pass is memory-bound (32 -> 1 s2 at 64^3: 67 MB of grad_x written, 67 MB
// of padded grad_y read, 3.6 GFLOP), and on a strided layer the other kernels spend their time elsewhere: the
// tap-reuse rows stage a halo per 4 reduction channels for a few MMAs each, the stock implicit GEMM runs its 32-deep
// k blocks one tap (4 channels) at a time. H200 (v0.78): 32 -> 4 s2 at 64^3 took 0.29-0.32 ms on the best of them;
// cuDNN's grad_input of the unpadded 32 -> 1 head takes 0.08-0.11. (At unit stride the tap-reuse rows are level or
// faster: selector._thin_choice.)
//
// Form: the filter, rounded to tf32, sits in shared memory as [k][n] for the CTA's whole life (persistent CTAs
// walk M blocks of 16 positions, one per warp at a time). A k8 step of the MMA is two taps x 4 channels, so a lane's
// four A elements are channel tq of its two rows (g, g + 8) at the step's two taps: 4-byte loads straight from
// global memory (no staging: each grad_y element is read by about k^3 / s^3 positions, through L1), issued for
// half the taps at a time ahead of their MMAs, zero outside grad_y. The row pitch BN + 8 floats puts a warp's B reads
// (k tq, n g) on 32 distinct banks.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "conv_launch.h"
#include "cutlass/fast_math.h"
#include "direct_atoms.cuh"
#include "fprop_args.h"

namespace convt3d {
namespace thin {

struct ThinArgs {
  const float* act;   // [N, D, H, W, 4]
  const float* flt;   // [K, T, R, S, 4]
  const float* bias;  // [K] or null
  float* out;         // [N, Z, P, Q, K]
  int K, D, H, W;
  int stride, pad_d, pad_h, pad_w;
  long long M;        // N*Z*P*Q
  cutlass::FastDivmod div_q, div_p, div_z;  // result position -> (n, z, p, q)
};

template <int KS_, int BN_, int Warps_, int MinBlocks_>
struct ThinShape {
  static constexpr int KS = KS_, BN = BN_, kWarps = Warps_, kMinBlocks = MinBlocks_;
  static constexpr int C = 4, kTaps = KS * KS * KS, kSteps = (kTaps + 1) / 2, KP = 8 * kSteps;
  static constexpr int NT = BN / 8, P = BN + 8;  // n8 tiles; row pitch (floats): conflict-free B fragments
  static constexpr int kBatch = (kSteps + 1) / 2;  // k8 steps whose loads are issued together
  static constexpr int kThreads = 32 * kWarps;
  static constexpr size_t kSmemBytes = size_t(KP) * P * sizeof(float);
  static_assert(BN % 8 == 0 && KS <= 8, "n8 tiles; a byte of tap bits per axis");
};

template <class Sh>
__global__ void __launch_bounds__(Sh::kThreads, Sh::kMinBlocks) thin_fprop_kernel(const __grid_constant__ ThinArgs a) {
  constexpr int KS = Sh::KS, C = Sh::C, P = Sh::P, KP = Sh::KP, NT = Sh::NT;
  extern __shared__ __align__(16) float bs[];
  const int n0 = blockIdx.y * Sh::BN;
  constexpr int ktot = Sh::kTaps * C;
  // bs[kk][n] = filter[n0 + n][kk], tf32; zero past K and past the last tap (an odd tap count's last step).
  for (int i = threadIdx.x; i < Sh::BN * KP; i += Sh::kThreads) {
    const int n = i / KP, kk = i - n * KP;  // kk fastest: the filter's rows read in order
    const float v = n0 + n < a.K && kk < ktot ? a.flt[(long long)(n0 + n) * ktot + kk] : 0.f;
    bs[kk * P + n] = __uint_as_float(direct::to_tf32(v));
  }
  __syncthreads();

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tq = lane & 3;
  const int HW = a.H * a.W;
  const long long mblocks = (a.M + 15) / 16;
  for (long long mb = (long long)blockIdx.x * Sh::kWarps + warp; mb < mblocks;
       mb += (long long)gridDim.x * Sh::kWarps) {
    // Rows g and g + 8 of the block: grad_y's position of tap (0, 0, 0), and per axis the taps inside grad_y.
    int base[2];
    unsigned inside[2];  // bit t: depth tap t inside; bit 8 + r: height; bit 16 + s': width
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const long long m = mb * 16 + g + 8 * h;
      base[h] = 0;
      inside[h] = 0;
      if (m < a.M) {
        int q, p, z, n, rest;
        a.div_q(rest, q, (int)m);
        a.div_p(rest, p, rest);
        a.div_z(n, z, rest);
        const int z0 = z * a.stride - a.pad_d, y0 = p * a.stride - a.pad_h, x0 = q * a.stride - a.pad_w;
        base[h] = ((n * a.D + z0) * a.H + y0) * a.W + x0;
#pragma unroll
        for (int t = 0; t < KS; ++t) {
          inside[h] |= unsigned((unsigned)(z0 + t) < (unsigned)a.D) << t;
          inside[h] |= unsigned((unsigned)(y0 + t) < (unsigned)a.H) << (8 + t);
          inside[h] |= unsigned((unsigned)(x0 + t) < (unsigned)a.W) << (16 + t);
        }
      }
    }
    float acc[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[nt][e] = 0.f;
    // The taps' loads in batches of kBatch k8 steps, each batch's loads issued before its MMAs: the loads are the
    // kernel's latency, and one batch for all 27 taps (56 registers) spilled at two CTAs per SM.
#pragma unroll
    for (int k0 = 0; k0 < Sh::kSteps; k0 += Sh::kBatch) {
      float av[Sh::kBatch][4];
#pragma unroll
      for (int kb = 0; kb < Sh::kBatch; ++kb)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int tap = 2 * (k0 + kb) + half;
          const int t = tap / (KS * KS), r = (tap / KS) % KS, s = tap % KS;
          const unsigned need = (1u << t) | (1u << (8 + r)) | (1u << (16 + s));
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const bool ok = k0 + kb < Sh::kSteps && tap < Sh::kTaps && (inside[h] & need) == need;
            const int pos = base[h] + t * HW + r * a.W + s;
            av[kb][2 * half + h] = ok ? __ldg(a.act + (long long)pos * C + tq) : 0.f;
          }
        }
#pragma unroll
      for (int kb = 0; kb < Sh::kBatch; ++kb) {
        const int ks = k0 + kb;
        if (ks >= Sh::kSteps) break;
        // a0 (g, tq) and a1 (g + 8, tq): tap 2 ks, channel tq; a2, a3 (column tq + 4): tap 2 ks + 1.
        const uint32_t af[4] = {direct::to_tf32(av[kb][0]), direct::to_tf32(av[kb][1]), direct::to_tf32(av[kb][2]),
                                direct::to_tf32(av[kb][3])};
        const float* b = bs + (8 * ks + tq) * P + g;
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
          direct::mma(acc[nt], af, __float_as_uint(b[8 * nt]), __float_as_uint(b[4 * P + 8 * nt]));
      }
    }
    // c0, c1: row g, columns 2 tq, 2 tq + 1; c2, c3: row g + 8. 8-byte stores, a row's 32 bytes per n8 tile.
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const long long m = mb * 16 + g + 8 * h;
      if (m >= a.M) continue;
      float* row = a.out + m * a.K;
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const int n = n0 + 8 * nt + 2 * tq;
        if (n >= a.K) continue;  // K % 4 == 0: n + 1 < K as well
        float2 v = make_float2(acc[nt][2 * h], acc[nt][2 * h + 1]);
        if (a.bias != nullptr) {
          v.x += a.bias[n];
          v.y += a.bias[n + 1];
        }
        *reinterpret_cast<float2*>(row + n) = v;
      }
    }
  }
}

template <int KS, int BN, int Warps = 8, int MinBlocks = 2>
struct ThinFpropKernel {
  using Sh = ThinShape<KS, BN, Warps, MinBlocks>;

  static int can_implement(const ConvLaunch& L) {
    if (L.C != Sh::C || L.K % 4 != 0) return 1;  // kErrorMisalignedOperand: 4 reduction channels, float2 stores
    if (((uintptr_t)L.result | (uintptr_t)L.bias) % 8 != 0) return 1;
    if (L.T != KS || L.R != KS || L.S != KS) return 4;  // kErrorInvalidProblem: the filter it is compiled for
    const int code = fprop_extent_checks(L, BN);
    return code != 0 ? code : direct::smem_fits(Sh::kSmemBytes);
  }

  static std::size_t workspace_size(const ConvLaunch&) { return 0; }

  static int run(const ConvLaunch& L) {
    const int code = can_implement(L);
    if (code != 0) return code;
    ThinArgs a;
    fprop_geometry(L, a);
    if (a.M == 0) return 0;
    // Persistent: kMinBlocks CTAs per SM at most, each staging the filter once.
    int sms = 0;
    if (!direct::device_attribute(cudaDevAttrMultiProcessorCount, sms)) return 1000 + (int)cudaGetLastError();
    const long long ctas = (((a.M + 15) / 16) + Sh::kWarps - 1) / Sh::kWarps;
    const long long most = (long long)sms * Sh::kMinBlocks;
    const dim3 grid((unsigned)(ctas < most ? ctas : most), (unsigned)((a.K + BN - 1) / BN));
    return direct::launch_with_smem(thin_fprop_kernel<Sh>, grid, Sh::kThreads, Sh::kSmemBytes, L.stream, a);
  }

  static KernelEntry entry(const char* name) { return KernelEntry{name, &can_implement, &workspace_size, &run}; }
};

}  // namespace thin
}  // namespace convt3d
