// Hopper helpers shared by the sm_90a kernels (direct_sm90.cuh, direct_wgrad_sm90.cuh, igemm_sm90.cuh):
// the wgmma shared-memory descriptors of the layouts TMA's SWIZZLE_32B and SWIZZLE_128B write, the
// register-A (RS) tf32 wgmma atoms, the shared-memory loads, dispatch to loops with compile-time counts,
// and the driver's tensor-map encoder.
#pragma once
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>
#include <utility>

#include "cute/arch/mma_sm90_desc.hpp"
#include "cute/arch/mma_sm90_gmma.hpp"
#include "cute/arch/mma_sm90_gmma_ext.hpp"
#include "direct_atoms.cuh"

namespace convt3d {
namespace direct90 {

// Shared memory per block on sm_90 (H100, H200), opted in: what the kernels size their stages for
// (sm90_fits still checks the device's own limit).
constexpr size_t kSm90SmemOptin = 232448;

// Orders every accumulator register against the wgmmas around it (they are read and written
// asynchronously: the compiler must not move or copy them across an arrive, commit or wait).
template <int M, int N>
__device__ __forceinline__ void fence_acc(float (&acc)[M][N]) {
#pragma unroll
  for (int m = 0; m < M; ++m)
#pragma unroll
    for (int i = 0; i < N; ++i) cute::warpgroup_fence_operand(acc[m][i]);
}
template <int N>
__device__ __forceinline__ void fence_acc(float (&acc)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) cute::warpgroup_fence_operand(acc[i]);
}

// f(std::integral_constant<int, n>) for LO <= n <= N; nothing otherwise. Why: a runtime condition around
// wgmmas makes ptxas serialise every wgmma of the kernel (C7520), a branch around a whole loop whose
// count is a compile-time constant does not.
template <int N, int LO = 1, class F>
__device__ __forceinline__ void dispatch_upto(int n, F& f) {
  if constexpr (N >= LO) {
    if (n == N)
      f(std::integral_constant<int, N>{});
    else
      dispatch_upto<N - 1, LO>(n, f);
  }
}

// K-major swizzled operand descriptor: 8-row groups sbo bytes apart, layout_type 3 (32-byte swizzle),
// 2 (64-byte) or 1 (128-byte); the leading byte offset is unused for swizzled K-major layouts.
__device__ __forceinline__ uint64_t kmajor_desc(uint32_t smem_addr, uint32_t sbo, int layout_type) {
  cute::GmmaDescriptor d;
  d.bitfield.start_address_ = smem_addr >> 4;
  d.bitfield.leading_byte_offset_ = 1;
  d.bitfield.stride_byte_offset_ = sbo >> 4;
  d.bitfield.base_offset_ = 0;
  d.bitfield.layout_type_ = layout_type;
  return d.desc_;
}

// K-major, 32-byte swizzle, 8-row groups 256 bytes apart (the layout TMA's SWIZZLE_32B writes).
__device__ __forceinline__ uint64_t sw32_desc(uint32_t smem_addr) { return kmajor_desc(smem_addr, 256, 3); }

// K-major, 64-byte swizzle, 8-row groups 512 bytes apart (the layout TMA's SWIZZLE_64B writes for 64-byte
// rows); a k8 step inside the row is a 32-byte offset of the start address, as with sw128_desc.
__device__ __forceinline__ uint64_t sw64_desc(uint32_t smem_addr) { return kmajor_desc(smem_addr, 512, 2); }

// K-major, 128-byte swizzle, 8-row groups 1024 bytes apart (the layout TMA's SWIZZLE_128B writes for
// 128-byte rows). A k8 step inside the row is a 32-byte offset of the start address: the swizzle is
// applied to the final address bits, as CUTLASS's descriptor iterators rely on.
__device__ __forceinline__ uint64_t sw128_desc(uint32_t smem_addr) { return kmajor_desc(smem_addr, 1024, 1); }

// Dynamic shared memory rounded up to 1 KiB, the alignment of 128-byte-swizzle atoms (the kernels
// size their allocation with 1 KiB to spare).
// The offset is added to the __shared__ array's own pointer (not rebuilt from an integer), so the compiler
// still sees a shared-window pointer and every access derived from it is LDS/STS: an integer round trip
// made them generic loads and stores, which go through the L1TEX path and its long scoreboard (ncu on
// igemm_wgrad: 59% of its warps' stall cycles).
__device__ __forceinline__ uint8_t* smem_1k(uint8_t* smem_raw) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw));
  return smem_raw + ((1024u - (a & 1023u)) & 1023u);
}

// tf32 wgmma with A from registers (four per thread: rows g and g + 8 of its warp's 16, columns tq
// and tq + 4 of the k8 step) and B by descriptor.
template <int N>
struct GmmaRS;
#define CONVT3D_GMMA_RS_N(N)                                         \
  template <>                                                        \
  struct GmmaRS<N> {                                                 \
    using Op = cute::SM90::GMMA::MMA_64x##N##x8_F32TF32TF32_RS_TN<>; \
  };
CONVT3D_GMMA_RS_N(24)
CONVT3D_GMMA_RS_N(32)
CONVT3D_GMMA_RS_N(48)
CONVT3D_GMMA_RS_N(64)
CONVT3D_GMMA_RS_N(72)
CONVT3D_GMMA_RS_N(80)
CONVT3D_GMMA_RS_N(128)
CONVT3D_GMMA_RS_N(192)
CONVT3D_GMMA_RS_N(256)
#undef CONVT3D_GMMA_RS_N

__device__ __forceinline__ uint32_t lds(uint32_t addr) {
  uint32_t v;
  asm volatile("ld.shared.b32 %0, [%1];" : "=r"(v) : "r"(addr));
  return v;
}

__device__ __forceinline__ void sts(uint32_t addr, uint32_t v) {
  asm volatile("st.shared.b32 [%0], %1;" ::"r"(addr), "r"(v) : "memory");
}

// Four floats of shared memory (16-byte aligned address).
__device__ __forceinline__ float4 lds4(uint32_t addr) {
  float4 v;
  asm volatile("ld.shared.v4.f32 {%0, %1, %2, %3}, [%4];" : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w) : "r"(addr));
  return v;
}

template <class Op, int NA, size_t... I>
__device__ __forceinline__ void gmma_rs(const uint32_t (&a)[4], uint64_t db, float (&d)[NA],
                                        std::index_sequence<I...>) {
  Op::fma(a[0], a[1], a[2], a[3], db, d[I]...);
}

// The driver's tensor-map encoder through the runtime, so the module needs no link against libcuda;
// looked up once per process (null if the driver lacks it: the launch then reports kErrorNotSupported).
// A driver call needs a context current on the calling thread, and the runtime binds one to a thread
// only at its first runtime call that needs it: on a thread whose first CUDA work is ours (the autograd
// engine's device thread running the C++ node's backward, csrc/eager_node.cpp) every encode failed.
// cudaSetDevice binds the current device's primary context; once per thread, as threads keep it.
inline PFN_cuTensorMapEncodeTiled_v12000 encode_fn() {
  thread_local const bool bound = [] {
    int dev = 0;
    return cudaGetDevice(&dev) == cudaSuccess && cudaSetDevice(dev) == cudaSuccess;
  }();
  (void)bound;
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
#if CUDART_VERSION >= 12050
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) !=
        cudaSuccess)
      f = nullptr;
#else
    if (cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &f, cudaEnableDefault, &q) != cudaSuccess) f = nullptr;
#endif
    return q == cudaDriverEntryPointSuccess ? reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f) : nullptr;
  }();
  return fn;
}

// 0 when the current device is compute capability 9.0 (sm_90a code) and gives `bytes` of shared memory
// per block; else a cutlass::Status value (5, kErrorNotSupported) or 1000 + cudaError_t.
inline int sm90_fits(size_t bytes) {
  int major = 0, minor = 0;
  if (!direct::device_attribute(cudaDevAttrComputeCapabilityMajor, major) ||
      !direct::device_attribute(cudaDevAttrComputeCapabilityMinor, minor))
    return 1000 + (int)cudaGetLastError();
  if (major != 9 || minor != 0) return 5;
  return direct::smem_fits(bytes);
}

// SMs of the current device (the persistent kernels' grid), or 0 when the query fails.
inline int sm_count() {
  int sms = 0;
  return direct::device_attribute(cudaDevAttrMultiProcessorCount, sms) ? sms : 0;
}

// The element type of an fp32 tensor's map. tf32 true: TFLOAT32, whose loads land every element rounded to
// tf32, to nearest with ties to even, the 13 low bits zero (what direct::to_tf32 does on sm_90, cvt.rn): so a
// kernel whose MMAs take the landed tile as it is needs no rounding pass of its own. Checked on the H200 over all
// 2^32 bit patterns (bench/tools/tmatf32.cu): the same bits as round-to-nearest-even everywhere except NaN,
// which comes back as the canonical 0x7fffe000 (still a NaN); infinities and denormals kept. Not for maps
// whose landed values something else reads unrounded: 3xtf32's split (lo = x - hi needs all of x) and the
// input sums (the bias gradient is summed in fp32).
inline CUtensorMapDataType f32_map_type(bool tf32) {
  return tf32 ? CU_TENSOR_MAP_DATA_TYPE_TFLOAT32 : CU_TENSOR_MAP_DATA_TYPE_FLOAT32;
}

// Whether a kernel's input map is TFLOAT32 (its elements land rounded): tf32, not 3xtf32's split, and no input
// sums. One rule for both sides: each kernel's MAP_ROUNDS skips its own rounding, and its host encodes the map.
constexpr __host__ __device__ bool input_map_rounds(bool split, bool sums) { return !split && !sums; }

// A 5-D float tensor as a tensor map, dims innermost first, with the byte strides of dims 1-4 (each a multiple
// of 16), out-of-range boxes zero-filled. steps: the traversal stride per dim (null: 1); a box then spans box[i]
// elements and loads every steps[i]-th (dims 1-4 only: along dim 0 the elements land contiguous, v0.64). A box's
// start along dim 0 must lie on 16 bytes, else the load traps (direct_sm90.cuh's RAW_W). tf32: land the elements
// rounded (f32_map_type). False when the driver refuses it (alignment, box sizes).
inline bool encode_strided5(CUtensorMap* map, const float* ptr, const cuuint64_t (&dim)[5],
                            const cuuint64_t (&stride)[4], const cuuint32_t (&box)[5], CUtensorMapSwizzle swizzle,
                            CUtensorMapL2promotion promo, const cuuint32_t* steps = nullptr, bool tf32 = false) {
  auto encode = encode_fn();
  if (encode == nullptr) return false;
  const cuuint32_t ones[5] = {1, 1, 1, 1, 1};
  return encode(map, f32_map_type(tf32), 5, const_cast<float*>(ptr), dim, stride, box,
                steps != nullptr ? steps : ones,
                CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, promo, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// A packed 5-D float tensor (encode_strided5 with the strides of its dims in order).
inline bool encode_packed5(CUtensorMap* map, const float* ptr, const cuuint64_t (&dim)[5], const cuuint32_t (&box)[5],
                           CUtensorMapSwizzle swizzle, CUtensorMapL2promotion promo,
                           const cuuint32_t* steps = nullptr, bool tf32 = false) {
  cuuint64_t stride[4];
  stride[0] = dim[0] * 4;
  for (int i = 1; i < 4; ++i) stride[i] = stride[i - 1] * dim[i];
  return encode_strided5(map, ptr, dim, stride, box, swizzle, promo, steps, tf32);
}

// NDHWC [n][d][h][w][c]: box dims in (c, w, h, d, n) order; `step` the traversal stride along d, h, w
// (a box of step * m positions per axis loads m of them), `step_w` (when not 0) along w instead.
inline bool encode_ndhwc(CUtensorMap* map, const float* ptr, int n, int d, int h, int w, int c,
                         const cuuint32_t (&box)[5], CUtensorMapSwizzle swizzle, CUtensorMapL2promotion promo,
                         cuuint32_t step = 1, cuuint32_t step_w = 0, bool tf32 = false) {
  const cuuint64_t dim[5] = {(cuuint64_t)c, (cuuint64_t)w, (cuuint64_t)h, (cuuint64_t)d, (cuuint64_t)n};
  const cuuint32_t steps[5] = {1, step_w ? step_w : step, step, step, 1};
  return encode_packed5(map, ptr, dim, box, swizzle, promo, steps, tf32);
}

// NCDHW [n][c][d][h][w]: box dims in (w, h, d, c, n) order.
inline bool encode_ncdhw(CUtensorMap* map, const float* ptr, int n, int d, int h, int w, int c,
                         const cuuint32_t (&box)[5], CUtensorMapL2promotion promo, bool tf32 = false) {
  const cuuint64_t dim[5] = {(cuuint64_t)w, (cuuint64_t)h, (cuuint64_t)d, (cuuint64_t)c, (cuuint64_t)n};
  return encode_packed5(map, ptr, dim, box, CU_TENSOR_MAP_SWIZZLE_NONE, promo, nullptr, tf32);
}

// NCDHW [n][c][d][h][w] with the channels second: box dims in (w, c, h, d, n) order, so that a box lands as
// [d][h][c][w], rows of positions per channel (K-major where positions are a GEMM's K). W % 4 == 0.
inline bool encode_ncdhw_wchd(CUtensorMap* map, const float* ptr, int n, int d, int h, int w, int c,
                              const cuuint32_t (&box)[5], CUtensorMapSwizzle swizzle, CUtensorMapL2promotion promo,
                              bool tf32 = false) {
  const cuuint64_t dim[5] = {(cuuint64_t)w, (cuuint64_t)c, (cuuint64_t)h, (cuuint64_t)d, (cuuint64_t)n};
  const cuuint64_t hw = (cuuint64_t)h * w * 4, dhw = hw * d;
  const cuuint64_t stride[4] = {dhw, (cuuint64_t)w * 4, hw, dhw * c};
  return encode_strided5(map, ptr, dim, stride, box, swizzle, promo, nullptr, tf32);
}

}  // namespace direct90
}  // namespace convt3d
