// Device helpers shared by the tap-reuse kernels (direct_conv.cuh, direct_wgrad.cuh): CuTe's SM80
// cp.async and TF32 MMA atoms, and round-to-nearest tf32.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cute/arch/copy_sm80.hpp"
#include "cute/arch/mma_sm80.hpp"
#include "cute/numeric/int.hpp"
#include "direct_launch.h"

namespace convt3d {
namespace direct {

// Round to nearest tf32 (the mask keeps the 13 low bits zero whatever the conversion leaves there).
// The tensor cores would otherwise truncate the stored fp32 bits (7.7e-4 error instead of
// cuDNN's 2.9e-4 on the headline case).
__device__ __forceinline__ uint32_t to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r & 0xffffe000u;
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

__device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  Mma::fma(d[0], d[1], d[2], d[3], a[0], a[1], a[2], a[3], b0, b1, d[0], d[1], d[2], d[3]);
}

// 16-byte cp.async, zero-filling the destination when pred is false (src is then not read).
__device__ __forceinline__ void copy16(const float* src, float* dst, bool pred) {
  Copy16::copy(*reinterpret_cast<const cute::uint128_t*>(src), *reinterpret_cast<cute::uint128_t*>(dst),
               pred);
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

// Launches kernel with `bytes` of dynamic shared memory (opting in past the 48 KiB default) on stream:
// 0, or 1000 + cudaError_t as the launchers report CUDA errors.
template <class Kernel, class... Args>
inline int launch_with_smem(Kernel kernel, dim3 grid, int threads, size_t bytes, cudaStream_t stream,
                            const Args&... args) {
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
  if (err != cudaSuccess) return 1000 + (int)err;
  kernel<<<grid, threads, bytes, stream>>>(args...);
  err = cudaGetLastError();
  return err == cudaSuccess ? 0 : 1000 + (int)err;
}

}  // namespace direct
}  // namespace convt3d
