// csrc/ffma_fprop.cuh against the stock SIMT Fprop rows (conv_kernel.cuh) on one strided Conv3d (the grad_input of a
// ConvTranspose3d), no torch: each checked against an fp64 reference kernel (every element, output poisoned with NaN)
// and timed with CUDA events (median of 50, a 256 MiB L2 flush before each).
// Build (the stock rows register through csrc/registry.cpp):
//   nvcc -O3 -std=c++17 --expt-relaxed-constexpr -arch=sm_90a -Icsrc -I$C/include -I$C/tools/util/include \
//        bench/tools/ffmafprop.cu csrc/registry.cpp csrc/kernels/fprop_fp32_*.cu -o ffmafprop
// Run: ./ffmafprop N C K D k s pad   (grad_y [N, D^3, C] channels_last_3d, filter [K, k^3, C]; result [N, Z^3, K])
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "conv_launch.h"
#include "cuda_check.cuh"
#include "event_times.cuh"
#include "ffma_fprop.cuh"


__global__ void ref_fprop(const float* act, const float* flt, double* out, int N, int C, int K, int D, int Z, int k,
                          int s, int pad) {
  const long long total = (long long)N * Z * Z * Z * K;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    long long t = i;
    const int kk = t % K; t /= K;
    const int q = t % Z; t /= Z;
    const int p = t % Z; t /= Z;
    const int z = t % Z; const int n = (int)(t / Z);
    double acc = 0.0;
    for (int a = 0; a < k; ++a)
      for (int b = 0; b < k; ++b)
        for (int c3 = 0; c3 < k; ++c3) {
          const int gz = z * s - pad + a, gh = p * s - pad + b, gw = q * s - pad + c3;
          if (gz < 0 || gz >= D || gh < 0 || gh >= D || gw < 0 || gw >= D) continue;
          const float* ap = act + ((((long long)n * D + gz) * D + gh) * D + gw) * C;
          const float* fp = flt + ((((long long)kk * k + a) * k + b) * k + c3) * C;
          for (int c = 0; c < C; ++c) acc += (double)ap[c] * (double)fp[c];
        }
    out[i] = acc;
  }
}

struct Ctx {
  convt3d::ConvLaunch L;
  long long out_elems;
  std::vector<double> ref;
  char* flush;
  size_t flush_bytes;
  double flops;
};

static void run_one(Ctx& c, const char* name, convt3d::LaunchFn can, convt3d::LaunchFn run) {
  CK(cudaMemset(c.L.result, 0xff, c.out_elems * sizeof(float)));  // NaN poison
  int rc = can(c.L);
  if (rc) { std::printf("%-34s can_implement rc %d\n", name, rc); return; }
  rc = run(c.L);
  CK(cudaDeviceSynchronize());
  if (rc) { std::printf("%-34s launch rc %d\n", name, rc); return; }
  std::vector<float> ho(c.out_elems);
  CK(cudaMemcpy(ho.data(), c.L.result, c.out_elems * sizeof(float), cudaMemcpyDeviceToHost));
  long long bad = 0;
  const double rel = rel_l2(ho, c.ref, bad);
  const double ms = flushed_median_ms([&] { run(c.L); }, c.flush, c.flush_bytes);
  std::printf("%-34s %9.1f us  %6.1f TFLOP/s  rel %.2e  unwritten/NaN %lld  %s\n", name, ms * 1e3, c.flops / ms / 1e9,
              rel, bad, (bad == 0 && rel < 1e-5) ? "OK" : "FAIL");
}

template <int BM, int BN, int BK, int S>
static void mine(Ctx& c) {
  using Kr = convt3d::ffma::FfmaFpropKernel<BM, BN, BK, S>;
  const std::string name = "ffma_fprop_" + std::to_string(BM) + "x" + std::to_string(BN) + "x" + std::to_string(BK) +
                           "_s" + std::to_string(S);
  run_one(c, name.c_str(), &Kr::can_implement, &Kr::run);
}

int main(int argc, char** argv) {
  const int N = argc > 1 ? std::atoi(argv[1]) : 2, C = argc > 2 ? std::atoi(argv[2]) : 32,
            K = argc > 3 ? std::atoi(argv[3]) : 64, D = argc > 4 ? std::atoi(argv[4]) : 128,
            k = argc > 5 ? std::atoi(argv[5]) : 3, s = argc > 6 ? std::atoi(argv[6]) : 2,
            pad = argc > 7 ? std::atoi(argv[7]) : 1;
  const int Z = (D + 2 * pad - k) / s + 1;
  std::mt19937 gen(1234);
  std::normal_distribution<float> nd;
  std::vector<float> ha((size_t)N * D * D * D * C), hf((size_t)K * k * k * k * C);
  for (auto& v : ha) v = nd(gen);
  for (auto& v : hf) v = nd(gen);
  Ctx c;
  c.out_elems = (long long)N * Z * Z * Z * K;
  float* out;
  double* dref;
  CK(cudaMalloc(&out, c.out_elems * sizeof(float)));
  CK(cudaMalloc(&dref, c.out_elems * sizeof(double)));
  float *da = dev(ha), *df = dev(hf);
  c.flush_bytes = 256u << 20;
  CK(cudaMalloc(&c.flush, c.flush_bytes));
  ref_fprop<<<2048, 256>>>(da, df, dref, N, C, K, D, Z, k, s, pad);
  CK(cudaDeviceSynchronize());
  c.ref.resize(c.out_elems);
  CK(cudaMemcpy(c.ref.data(), dref, c.out_elems * sizeof(double), cudaMemcpyDeviceToHost));
  c.flops = 2.0 * c.out_elems * C * k * k * k;  // every tap counted, as bench/ does
  convt3d::ConvLaunch& L = c.L;
  L.N = N; L.D = L.H = L.W = D; L.C = C; L.K = K; L.T = L.R = L.S = k; L.Z = L.P = L.Q = Z;
  L.pad_d = L.pad_h = L.pad_w = pad;
  L.stride_d = L.stride_h = L.stride_w = s;
  L.activation = da; L.filter = df; L.result = out;
  std::printf("N%d C%d -> K%d  %d^3 -> %d^3  k%d s%d p%d  (%.1f GFLOP)\n", N, C, K, D, Z, k, s, pad, c.flops / 1e9);
  for (const auto& e : convt3d::registry())
    if (std::string(e.name).rfind("fprop_fp32", 0) == 0) run_one(c, e.name, e.can_implement, e.run);
  mine<128, 64, 16, 4>(c);
  mine<128, 64, 32, 3>(c);
  mine<128, 128, 16, 3>(c);
  mine<128, 128, 32, 3>(c);
  mine<256, 64, 16, 3>(c);
  mine<64, 64, 16, 4>(c);
  mine<64, 128, 16, 4>(c);
  return 0;
}
