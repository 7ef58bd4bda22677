// Does TMA take a traversal stride along the innermost axis (elementStrides[0] > 1)? v0.63's open question for
// grad_weight reading an NCDHW grad_y at stride s (positions s * i + tap along w, the tensor's inner axis).
// A [N=1][C=8][D=2][H=4][W=64] float tensor holding its own linear index, mapped (w, c, h, d, n); each case
// encodes a map, loads one box at (w0, c0, h0, 0, 0) and prints what landed. v0.63 (logs/v63.log section 6): the
// encoder accepts elementStrides[0] = 2 and 3 (FLOAT32, no swizzle), but this load kernel trapped with an illegal
// instruction even at unit stride. v0.64: the cause was w0 = 3, 5, 1: a box's start along the inner axis must lie
// on 16 bytes (4 floats), else the load traps (the rule csrc/direct_sm90.cuh's RAW_W already follows); the cases start on 0, 4, 8 and 12 now, and the last one shows the
// trap. What they landed on the H200 (logs/v64.log section 2): a traversal stride along the inner axis does not
// subsample it. Box 16 x 8 at stride 2 landed w 4..19 contiguous in each row (its barrier completed on the 256
// bytes of 8 x 8 elements expected), box 24 x 8 at stride 3 w 0..23, and box 32 x 8 at stride 2 never completed
// its barrier on 512 bytes expected. So TMA cannot pick every s-th position of a row. No torch:
//   nvcc -O2 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Icsrc -I$CUTLASS/include bench/tools/tmastride.cu -o tmastride
#include <cstdio>
#include <vector>

#include "cute/arch/copy_sm90_tma.hpp"
#include "cutlass/arch/barrier.h"
#include "sm90_atoms.cuh"

using namespace convt3d::direct90;

constexpr int W = 64, C = 8, H = 4, D = 2;

__global__ void load_box(const __grid_constant__ CUtensorMap map, float* out, int n, int w0, int c0, int h0) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  __shared__ alignas(1024) float box[2048];
  __shared__ uint64_t bar;
  if (threadIdx.x == 0) {
    cutlass::arch::ClusterTransactionBarrier::init(&bar, 1);
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    cutlass::arch::ClusterTransactionBarrier::arrive_and_expect_tx(&bar, n * 4);
    cute::SM90_TMA_LOAD_5D::copy(&map, &bar, static_cast<uint64_t>(cute::TMA::CacheHintSm90::EVICT_NORMAL), box, w0, c0,
                                 h0, 0, 0);
  }
  // Bounded wait: if the transaction count differs from n * 4 bytes the barrier never completes; say so.
  bool done = false;
  for (int spin = 0; spin < 1000000 && !done; ++spin) done = cutlass::arch::ClusterBarrier::test_wait(&bar, 0, 1);
  for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = done ? box[i] : -1.f;
#endif
}

static void run(const char* name, const float* dev, cuuint32_t step, cuuint32_t box_w, cuuint32_t box_c, int w0,
                bool launch) {
  CUtensorMap map;
  const cuuint64_t dim[5] = {W, C, H, D, 1};
  const cuuint64_t stride[4] = {(cuuint64_t)D * H * W * 4, (cuuint64_t)W * 4, (cuuint64_t)H * W * 4,
                                (cuuint64_t)C * D * H * W * 4};
  const cuuint32_t box[5] = {box_w, box_c, 1, 1, 1};
  const cuuint32_t steps[5] = {step, 1, 1, 1, 1};
  auto encode = encode_fn();
  const CUresult r = encode(&map, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 5, const_cast<float*>(dev), dim, stride, box, steps,
                            CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
                            CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  printf("%s: encode %s (%d)\n", name, r == CUDA_SUCCESS ? "ok" : "refused", (int)r);
  if (r != CUDA_SUCCESS || !launch) return;
  const int per_row = (box_w + step - 1) / step, n = per_row * box_c;
  float* out;
  cudaMalloc(&out, n * 4);
  load_box<<<1, 128>>>(map, out, n, w0, 1, 2);
  const cudaError_t e = cudaDeviceSynchronize();
  if (e != cudaSuccess) {
    printf("  launch: %s\n", cudaGetErrorString(e));
    cudaGetLastError();
    return;
  }
  std::vector<float> h(n);
  cudaMemcpy(h.data(), out, n * 4, cudaMemcpyDeviceToHost);
  if (h[0] < 0) {
    printf("  the barrier did not complete with %d bytes expected\n", n * 4);
    cudaFree(out);
    return;
  }
  for (int c = 0; c < box_c && c < 2; ++c) {
    printf("  c=%d:", c + 1);
    for (int i = 0; i < per_row; ++i) {
      const int v = (int)h[c * per_row + i];
      printf(" w%d", v % W);
    }
    printf("   (expected w %d, %d, ... every %u; h %d, c %d: got h %d, c %d)\n", w0, w0 + (int)step, step, 2, c + 1,
           ((int)h[c * per_row] / W) % H, (int)h[c * per_row] / (D * H * W));
  }
  cudaFree(out);
}

int main() {
  std::vector<float> host(C * D * H * W);
  for (size_t i = 0; i < host.size(); ++i) host[i] = (float)i;
  float* dev;
  cudaMalloc(&dev, host.size() * 4);
  cudaMemcpy(dev, host.data(), host.size() * 4, cudaMemcpyHostToDevice);
  // Encodes first (a failed launch leaves the context's error sticky for every later driver call), then loads.
  for (int launch = 0; launch < 2; ++launch) {
    run("unit stride, box 16 x 8", dev, 1, 16, 8, 4, launch);
    run("w stride 2, box 16 x 8 (8 loaded per row)", dev, 2, 16, 8, 4, launch);
    run("w stride 2, box 32 x 8 (16 loaded per row)", dev, 2, 32, 8, 8, launch);
    run("w stride 3, box 24 x 8", dev, 3, 24, 8, 0, launch);
    run("w stride 3, box 24 x 8 from w 12", dev, 3, 24, 8, 12, launch);
    run("unit stride from w 3 (off 16 bytes: expected to trap)", dev, 1, 16, 8, 3, launch);
  }
  return 0;
}
