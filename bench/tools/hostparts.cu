// Host cost of the pieces of a launch that v0.61's profiler scopes found large (docs/performance.md v0.61 (5): a
// tap-reuse kernel's run 16-23 us of host on channels_last_3d rows, a layout transpose 12-16 us beside its launch):
// one cuTensorMapEncodeTiled of a 5-D float map (FLOAT32 and TFLOAT32, the kernels' two types), one getenv, and an
// empty kernel's launch with 0 and with 33 KiB of dynamic shared memory (the transpose's tile), and launches whose
// parameters are as large as the tap-reuse kernels' (a DirectLaunch with its 64-phase table, two tensor maps and a
// geometry: about 4 KiB; the kernel copies them into its constant bank at every launch). Standalone, no torch:
//   nvcc -O2 -std=c++17 -Icsrc -o hostparts bench/tools/hostparts.cu && ./hostparts
#include <cuda.h>
#include <cuda_runtime.h>

#include "direct_launch.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>

__global__ void empty_kernel(int* out) {
  extern __shared__ float tile[];
  if (threadIdx.x == 0 && out[0] == 12345) out[1] = (int)tile[0];
}

struct Geo64 {  // the size of the kernels' geometry arguments (IgemmGeometry: a 64-entry phase order)
  int v[80];
};

template <int BYTES>
struct Blob {
  char b[BYTES];
};

// As the tap-reuse launches pass them: the launch, two tensor maps, the geometry.
__global__ void direct_params_kernel(const __grid_constant__ convt3d::DirectLaunch p, const __grid_constant__ CUtensorMap a,
                                     const __grid_constant__ CUtensorMap b, const Geo64 g, int* out) {
  if (threadIdx.x == 0 && out[0] == 12345) out[1] = p.N + g.v[3] + (int)reinterpret_cast<const char*>(&a)[5] +
                                                    (int)reinterpret_cast<const char*>(&b)[7];
}

template <int BYTES>
__global__ void blob_kernel(const __grid_constant__ Blob<BYTES> p, int* out) {
  if (threadIdx.x == 0 && out[0] == 12345) out[1] = p.b[BYTES - 1];
}

template <class F>
double best_us(F&& f, int reps = 2000) {
  double best = 1e9;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = std::chrono::high_resolution_clock::now();
    for (int i = 0; i < reps; ++i) f();
    const auto t1 = std::chrono::high_resolution_clock::now();
    const double us = std::chrono::duration<double, std::micro>(t1 - t0).count() / reps;
    best = us < best ? us : best;
  }
  return best;
}

int main() {
  using Encode = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                              const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                              CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
  void* f = nullptr;
  cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
  if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) != cudaSuccess ||
      q != cudaDriverEntryPointSuccess) {
    std::printf("no cuTensorMapEncodeTiled\n");
    return 1;
  }
  const Encode encode = reinterpret_cast<Encode>(f);
  float* buf = nullptr;
  int* out = nullptr;
  cudaMalloc(&buf, 64 << 20);
  cudaMalloc(&out, 8);
  cudaStream_t s;
  cudaStreamCreate(&s);
  // The headline's x as NDHWC [8][96][96][96][48], a halo box of 8 channels x 16 x 8 x 6 x 1 (as the ws forward's).
  const cuuint64_t dim[5] = {48, 96, 96, 96, 8};
  cuuint64_t stride[4];
  stride[0] = dim[0] * 4;
  for (int i = 1; i < 4; ++i) stride[i] = stride[i - 1] * dim[i];
  const cuuint32_t box[5] = {8, 16, 8, 6, 1}, ones[5] = {1, 1, 1, 1, 1};
  CUtensorMap map;
  int fails = 0;
  for (CUtensorMapDataType type : {CU_TENSOR_MAP_DATA_TYPE_FLOAT32, CU_TENSOR_MAP_DATA_TYPE_TFLOAT32}) {
    const double us = best_us([&] {
      fails += encode(&map, type, 5, buf, dim, stride, box, ones, CU_TENSOR_MAP_INTERLEAVE_NONE,
                      CU_TENSOR_MAP_SWIZZLE_32B, CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
                      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS;
    });
    std::printf("cuTensorMapEncodeTiled %-9s %6.2f us\n", type == CU_TENSOR_MAP_DATA_TYPE_FLOAT32 ? "FLOAT32" : "TFLOAT32",
                us);
  }
  volatile bool seen = false;
  std::printf("getenv                           %6.2f us\n",
              best_us([&] { seen = seen ^ (std::getenv("CONVT3D_TRANSPOSE_V1") != nullptr); }));
  for (size_t bytes : {size_t(0), size_t(33) << 10}) {
    for (int i = 0; i < 200; ++i) empty_kernel<<<132, 128, bytes, s>>>(out);
    cudaStreamSynchronize(s);
    const double us = best_us([&] { empty_kernel<<<132, 128, bytes, s>>>(out); }, 500);
    cudaStreamSynchronize(s);
    std::printf("launch, %5zu B dynamic smem      %6.2f us\n", bytes, us);
  }
  // Launches alone: at most 200 in flight per timed round (the queue never fills), synchronized between rounds.
  auto launches_us = [&](auto&& launch) {
    for (int i = 0; i < 200; ++i) launch();
    cudaStreamSynchronize(s);
    double best = 1e9;
    for (int r = 0; r < 20; ++r) {
      const auto t0 = std::chrono::high_resolution_clock::now();
      for (int i = 0; i < 200; ++i) launch();
      const auto t1 = std::chrono::high_resolution_clock::now();
      cudaStreamSynchronize(s);
      const double us = std::chrono::duration<double, std::micro>(t1 - t0).count() / 200;
      best = us < best ? us : best;
    }
    return best;
  };
  std::printf("sizeof DirectLaunch %zu, + 2 maps + geometry %zu B\n", sizeof(convt3d::DirectLaunch),
              sizeof(convt3d::DirectLaunch) + 2 * sizeof(CUtensorMap) + sizeof(Geo64));
  convt3d::DirectLaunch L;
  Geo64 g{};
  std::printf("launch, 8 B params (200 queued)       %6.2f us\n",
              launches_us([&] { empty_kernel<<<132, 128, 0, s>>>(out); }));
  std::printf("launch, 1 KiB params                  %6.2f us\n",
              launches_us([&] { blob_kernel<1024><<<132, 128, 0, s>>>(Blob<1024>{}, out); }));
  std::printf("launch, 2 KiB params                  %6.2f us\n",
              launches_us([&] { blob_kernel<2048><<<132, 128, 0, s>>>(Blob<2048>{}, out); }));
  std::printf("launch, DirectLaunch + maps + geometry %6.2f us\n",
              launches_us([&] { direct_params_kernel<<<132, 128, 0, s>>>(L, map, map, g, out); }));
  std::printf("launch, 8 KiB params                  %6.2f us\n",
              launches_us([&] { blob_kernel<8192><<<132, 128, 0, s>>>(Blob<8192>{}, out); }));
  std::printf("cudaGetDevice                         %6.2f us\n", best_us([&] {
                int d = 0;
                fails += cudaGetDevice(&d) != cudaSuccess;
              }));
  std::printf("encode failures %d, %s\n", fails, cudaGetErrorString(cudaGetLastError()));
  return 0;
}
