// The stock Fprop contract (conv_launch.h) as our own Fprop kernels read it (ffma_fprop.cuh, thin_fprop.cuh):
// grad_input of the transposed convolution as a stride-s Conv3d over grad_y, every tensor packed NDHWC / KTRSC.
// Kept in one place so that both kernels take the same problem from a ConvLaunch and refuse the same extents.
#pragma once
#include <cstdint>

#include "conv_launch.h"
#include "cutlass/fast_math.h"

namespace convt3d {

// 0 where a kernel of bn-wide N blocks can index the problem, else a cutlass::Status value: one stride for all axes and
// no split-K (kErrorInvalidProblem), 32-bit position indices with room for the padding's negative corners, 32-bit
// result positions and a grid y of N blocks (kErrorNotSupported).
inline int fprop_extent_checks(const ConvLaunch& L, int bn) {
  if (L.stride_d != L.stride_h || L.stride_h != L.stride_w || L.split_k_slices != 1) return 4;
  if ((long long)L.N * L.D * L.H * L.W >= (1LL << 30) || (long long)L.N * L.Z * L.P * L.Q >= (1LL << 31)) return 5;
  if ((L.K + bn - 1) / bn > 65535) return 5;
  return 0;
}

// Fills the problem's fields of a kernel's argument struct (act, flt, bias, out, K, D, H, W, stride, pad_*, M and the
// position divisors; each kernel keeps its own struct, whose layout its code was measured with).
template <class Args>
inline void fprop_geometry(const ConvLaunch& L, Args& a) {
  a.act = L.activation;
  a.flt = L.filter;
  a.bias = L.bias;
  a.out = L.result;
  a.K = L.K;
  a.D = L.D, a.H = L.H, a.W = L.W;
  a.stride = L.stride_d, a.pad_d = L.pad_d, a.pad_h = L.pad_h, a.pad_w = L.pad_w;
  a.M = static_cast<decltype(a.M)>((long long)L.N * L.Z * L.P * L.Q);
  a.div_q = cutlass::FastDivmod(L.Q);
  a.div_p = cutlass::FastDivmod(L.P);
  a.div_z = cutlass::FastDivmod(L.Z);
}

}  // namespace convt3d
