// Does a TMA load through a tensor map of type TFLOAT32 (or *_FTZ) change the fp32 bits it copies? (v0.55:
// whether the kernels may leave tf32 rounding to TMA, sm90_atoms.cuh f32_map_type.) Exhaustive over all 2^32
// patterns for TFLOAT32, an eighth of them for the others: counts mismatches against identity,
// round-to-nearest-even (cvt.rn), round-half-away (cvt.rna) and truncation, and landed values with any of the
// 13 low bits set. H200 (bench/results/NVIDIA_H200/logs/v55.log): TFLOAT32 differs from round-to-nearest-even only on NaNs (each comes
// back as 0x7fffe000: 16777213 of the 16777214 NaN patterns), never leaves a low bit set; FLOAT32 copies.
//   nvcc -gencode=arch=compute_90a,code=sm_90a bench/tools/tmatf32.cu -o tmatf32 && ./tmatf32
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>
#include <cstdio>
#include <cstdint>

constexpr int BW = 64, BH = 16;  // box: 64 x 16 floats = 4 KiB

__device__ __forceinline__ uint32_t rne(uint32_t u) {
  if ((u & 0x7f800000u) == 0x7f800000u) return u;  // inf / NaN kept
  uint32_t r = u + 0xfffu + ((u >> 13) & 1u);
  return r & 0xffffe000u;
}
__device__ __forceinline__ uint32_t rna(uint32_t u) {
  if ((u & 0x7f800000u) == 0x7f800000u) return u;
  return (u + 0x1000u) & 0xffffe000u;
}
__device__ __forceinline__ uint32_t trunc13(uint32_t u) { return u & 0xffffe000u; }

__global__ void fill(uint32_t* p, uint64_t base, uint64_t n) {
  for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n; i += (uint64_t)gridDim.x * blockDim.x)
    p[i] = (uint32_t)(base + i);
}

// counts[0..4]: differs from identity, rne, rna, trunc; lowbits nonzero
__global__ void probe(const __grid_constant__ CUtensorMap map, const uint32_t* src, int width,
                      unsigned long long* counts, uint32_t* example) {
  __shared__ alignas(128) uint32_t tile[BH * BW];
  __shared__ alignas(8) uint64_t bar;
  int x0 = blockIdx.x * BW, y0 = blockIdx.y * BH;
  uint32_t sbar = (uint32_t)__cvta_generic_to_shared(&bar);
  if (threadIdx.x == 0) {
    asm volatile("mbarrier.init.shared.b64 [%0], 1;" ::"r"(sbar));
    asm volatile("fence.mbarrier_init.release.cluster;");
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    asm volatile("mbarrier.arrive.expect_tx.shared.b64 _, [%0], %1;" ::"r"(sbar), "r"(BH * BW * 4));
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];" ::
            "r"((uint32_t)__cvta_generic_to_shared(tile)), "l"(&map), "r"(x0), "r"(y0), "r"(sbar)
        : "memory");
  }
  asm volatile(
      "{ .reg .pred p; W: mbarrier.try_wait.parity.shared.b64 p, [%0], 0; @!p bra W; }" ::"r"(sbar)
      : "memory");
  unsigned long long c[5] = {0, 0, 0, 0, 0};
  for (int i = threadIdx.x; i < BH * BW; i += blockDim.x) {
    uint32_t u = src[(size_t)(y0 + i / BW) * width + x0 + i % BW], t = tile[i];
    c[0] += t != u;
    c[1] += t != rne(u);
    c[2] += t != rna(u);
    c[3] += t != trunc13(u);
    c[4] += (t & 0x1fffu) != 0;
    if (t != u && t != rne(u) && example[0] == 0) { example[0] = 1; example[1] = u; example[2] = t; }
  }
  for (int k = 0; k < 5; ++k) {
    for (int o = 16; o; o >>= 1) c[k] += __shfl_xor_sync(~0u, c[k], o);
    if ((threadIdx.x & 31) == 0 && c[k]) atomicAdd(&counts[k], c[k]);
  }
}

static PFN_cuTensorMapEncodeTiled_v12000 encode_fn() {
  void* f = nullptr;
  cudaDriverEntryPointQueryResult q;
  cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q);
  return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
}

int main() {
  auto cuTensorMapEncodeTiled = encode_fn();
  const int width = 65536, height = 4096;  // 2^28 elements a chunk
  const uint64_t n = (uint64_t)width * height;
  uint32_t* buf; unsigned long long* counts; uint32_t* example;
  cudaMalloc(&buf, n * 4); cudaMalloc(&counts, 5 * 8); cudaMalloc(&example, 3 * 4);
  const struct { CUtensorMapDataType t; const char* name; } types[] = {
      {CU_TENSOR_MAP_DATA_TYPE_FLOAT32, "FLOAT32"}, {CU_TENSOR_MAP_DATA_TYPE_FLOAT32_FTZ, "FLOAT32_FTZ"},
      {CU_TENSOR_MAP_DATA_TYPE_TFLOAT32, "TFLOAT32"}, {CU_TENSOR_MAP_DATA_TYPE_TFLOAT32_FTZ, "TFLOAT32_FTZ"}};
  for (auto& ty : types) {
    cudaMemset(counts, 0, 5 * 8); cudaMemset(example, 0, 12);
    int chunks = ty.t == CU_TENSOR_MAP_DATA_TYPE_TFLOAT32 ? 16 : 2;  // exhaustive for TFLOAT32
    for (int ch = 0; ch < chunks; ++ch) {
      uint64_t base = (uint64_t)(ch * (16 / chunks)) << 28;
      fill<<<4096, 256>>>(buf, base, n);
      CUtensorMap map;
      cuuint64_t dim[2] = {(cuuint64_t)width, (cuuint64_t)height}, stride[1] = {(cuuint64_t)width * 4};
      cuuint32_t box[2] = {BW, BH}, es[2] = {1, 1};
      CUresult r = cuTensorMapEncodeTiled(&map, ty.t, 2, buf, dim, stride, box, es, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                          CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_NONE,
                                          CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
      if (r != CUDA_SUCCESS) { printf("%s: encode failed %d\n", ty.name, (int)r); break; }
      probe<<<dim3(width / BW, height / BH), 256>>>(map, buf, width, counts, example);
    }
    cudaError_t e = cudaDeviceSynchronize();
    unsigned long long h[5]; uint32_t ex[3];
    cudaMemcpy(h, counts, 40, cudaMemcpyDeviceToHost); cudaMemcpy(ex, example, 12, cudaMemcpyDeviceToHost);
    printf("%-13s %s of 2^32: !=id %llu  !=rn %llu  !=rna %llu  !=trunc %llu  low13!=0 %llu  (%s)%s", ty.name,
           chunks == 16 ? "all" : "1/8", h[0], h[1], h[2], h[3], h[4], cudaGetErrorString(e),
           ex[0] ? "" : "\n");
    if (ex[0]) printf("  e.g. %08x -> %08x\n", ex[1], ex[2]);
  }
  return 0;
}
