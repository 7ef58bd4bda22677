// csrc/patch_simt.cuh alone (no torch): the k == stride FFMA GEMMs checked against an fp64 reference kernel and
// timed with CUDA events (median of 50, a 256 MiB L2 flush before each), in both layouts and both passes.
// Build: nvcc -O3 -std=c++17 --expt-relaxed-constexpr -arch=sm_90a -Icsrc -I$CUTLASS/include \
//        bench/tools/patchsimt.cu -o patchsimt
// Run: ./patchsimt N C_in C_out D s  (cubic input of side D). Prints one line per (pass, layout, tile).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "cuda_check.cuh"
#include "event_times.cuh"
#include "patch_simt.cuh"



// NCDHW or channels_last_3d offset of (n, c, z, y, x) in a tensor [N, C, Z, Y, X].
__host__ __device__ inline long long off(bool ncdhw, int n, int c, int z, int y, int x, int C, int Z, int Y, int X) {
  return ncdhw ? (((long long)(n * C + c) * Z + z) * Y + y) * X + x : ((((long long)n * Z + z) * Y + y) * X + x) * C + c;
}

// fp64 references, one thread per output element.
__global__ void ref_forward(const float* x, const float* w, const float* bias, double* y, int N, int Ci, int Co, int D,
                            int s, bool nc) {
  const int B = D * s;
  const long long total = (long long)N * Co * B * B * B;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    long long t = i;
    const int X = t % B; t /= B;
    const int Y = t % B; t /= B;
    const int Z = t % B; t /= B;
    const int co = t % Co; const int n = (int)(t / Co);
    double acc = bias ? bias[co] : 0.0;
    for (int ci = 0; ci < Ci; ++ci)
      acc += (double)x[off(nc, n, ci, Z / s, Y / s, X / s, Ci, D, D, D)] *
             (double)w[(((long long)ci * Co + co) * s + Z % s) * s * s + (Y % s) * s + X % s];
    y[off(nc, n, co, Z, Y, X, Co, B, B, B)] = acc;
  }
}

__global__ void ref_grad_input(const float* gy, const float* w, double* gx, int N, int Ci, int Co, int D, int s, bool nc) {
  const int B = D * s;
  const long long total = (long long)N * Ci * D * D * D;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    long long t = i;
    const int x = t % D; t /= D;
    const int y = t % D; t /= D;
    const int z = t % D; t /= D;
    const int ci = t % Ci; const int n = (int)(t / Ci);
    double acc = 0.0;
    for (int co = 0; co < Co; ++co)
      for (int a = 0; a < s * s * s; ++a) {
        const int ad = a / (s * s), ah = (a / s) % s, aw = a % s;
        acc += (double)gy[off(nc, n, co, s * z + ad, s * y + ah, s * x + aw, Co, B, B, B)] *
               (double)w[((long long)ci * Co + co) * s * s * s + a];
      }
    gx[off(nc, n, ci, z, y, x, Ci, D, D, D)] = acc;
  }
}

template <int BM, int BN, bool GI, bool NC, int MATH = 0>
static void case_(int N, int Ci, int Co, int D, int s, const std::vector<float>& w, float* dx, float* dgy, float* dbias,
                  char* flush, size_t flush_bytes) {
  using Kernel = convt3d::patch::PatchKernel<BM, BN, MATH>;
  const int B = D * s, taps = s * s * s;
  float* dw = dev(w);  // the kernel reads the weight as nn.ConvTranspose3d keeps it
  const long long out_elems = GI ? (long long)N * Ci * D * D * D : (long long)N * Co * B * B * B;
  float* out;
  double* ref;
  CK(cudaMalloc(&out, out_elems * sizeof(float)));
  CK(cudaMalloc(&ref, out_elems * sizeof(double)));
  CK(cudaMemset(out, 0xff, out_elems * sizeof(float)));  // NaN poison
  // The direct op's launch as python's direct.pass_plan makes it (forward_plan / grad_input_plan).
  convt3d::DirectLaunch L;
  L.N = N;
  L.in = GI ? dgy : dx;
  L.weight = dw;
  L.bias = GI ? nullptr : dbias;
  L.out = out;
  L.in_ncdhw = L.out_ncdhw = NC;
  if (GI) {
    L.Di = L.Hi = L.Wi = B; L.Cr = Co; L.Do = L.Ho = L.Wo = D; L.Co = Ci; L.s_in = s; L.s_out = 1;
    L.num_phases = 1;
    for (int x = 0; x < 3; ++x) {
      L.phase[0].first[x] = 0; L.phase[0].count[x] = D; L.phase[0].dmin[x] = 0; L.phase[0].taps[x] = s;
    }
  } else {
    L.Di = L.Hi = L.Wi = D; L.Cr = Ci; L.Do = L.Ho = L.Wo = B; L.Co = Co; L.s_in = 1; L.s_out = s;
    L.num_phases = taps;
    for (int a = 0; a < taps; ++a) {
      const int r[3] = {a / (s * s), (a / s) % s, a % s};
      for (int x = 0; x < 3; ++x) {
        L.phase[a].first[x] = r[x]; L.phase[a].count[x] = D; L.phase[a].dmin[x] = 0; L.phase[a].taps[x] = 1;
      }
      L.phase[a].w_offset = (long long)a * Ci * Co;
    }
  }
  int rc = Kernel::can_implement(L);
  if (rc) { std::printf("can_implement rc %d\n", rc); std::exit(1); }
  rc = Kernel::run(L);
  CK(cudaDeviceSynchronize());
  if (rc) { std::printf("launch rc %d\n", rc); std::exit(1); }
  if (GI) ref_grad_input<<<1024, 256>>>(dgy, dw, ref, N, Ci, Co, D, s, NC);
  else ref_forward<<<1024, 256>>>(dx, dw, dbias, ref, N, Ci, Co, D, s, NC);
  CK(cudaDeviceSynchronize());
  std::vector<float> ho(out_elems);
  std::vector<double> hr(out_elems);
  CK(cudaMemcpy(ho.data(), out, out_elems * sizeof(float), cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(hr.data(), ref, out_elems * sizeof(double), cudaMemcpyDeviceToHost));
  long long bad = 0;
  const double rel = rel_l2(ho, hr, bad);
  const double ms = flushed_median_ms([&] { Kernel::run(L); }, flush, flush_bytes);
  const double flops = 2.0 * N * Ci * Co * taps * (double)D * D * D;
  const char* math = MATH == 0 ? "fp32" : MATH == 1 ? "tf32" : "3xtf32";
  const double tol = MATH == 1 ? 2e-3 : 1e-5;
  std::printf("%-11s %-6s %-6s %3dx%-3d  %8.1f us  %6.1f TFLOP/s  rel %.2e  unwritten/NaN %lld  %s\n",
              GI ? "grad_input" : "forward", NC ? "NCDHW" : "NDHWC", math, BM, BN, ms * 1e3, flops / ms / 1e9, rel, bad,
              (bad == 0 && rel < tol) ? "OK" : "FAIL");
  CK(cudaFree(dw)); CK(cudaFree(out)); CK(cudaFree(ref));
}

int main(int argc, char** argv) {
  const int N = argc > 1 ? std::atoi(argv[1]) : 2, Ci = argc > 2 ? std::atoi(argv[2]) : 64,
            Co = argc > 3 ? std::atoi(argv[3]) : 32, D = argc > 4 ? std::atoi(argv[4]) : 32,
            s = argc > 5 ? std::atoi(argv[5]) : 2;
  const int B = D * s;
  std::mt19937 gen(1234);
  std::normal_distribution<float> nd;
  std::vector<float> hx((size_t)N * Ci * D * D * D), hgy((size_t)N * Co * B * B * B), hw((size_t)Ci * Co * s * s * s),
      hb(Co);
  for (auto& v : hx) v = nd(gen);
  for (auto& v : hgy) v = nd(gen);
  for (auto& v : hw) v = nd(gen);
  for (auto& v : hb) v = nd(gen);
  float *dx = dev(hx), *dgy = dev(hgy), *dbias = dev(hb);
  const size_t flush_bytes = 256u << 20;
  char* flush;
  CK(cudaMalloc(&flush, flush_bytes));
  std::printf("N%d %d->%d %d^3 k=s=%d\n", N, Ci, Co, D, s);
  case_<128, 128, false, true>(N, Ci, Co, D, s, hw, dx, dgy, dbias, flush, flush_bytes);
  case_<128, 64, false, true>(N, Ci, Co, D, s, hw, dx, dgy, dbias, flush, flush_bytes);
  case_<128, 128, false, false>(N, Ci, Co, D, s, hw, dx, dgy, dbias, flush, flush_bytes);
  case_<128, 64, false, false>(N, Ci, Co, D, s, hw, dx, dgy, dbias, flush, flush_bytes);
  case_<128, 64, true, true>(N, Ci, Co, D, s, hw, dx, dgy, dbias, flush, flush_bytes);
  case_<128, 128, true, true>(N, Ci, Co, D, s, hw, dx, dgy, dbias, flush, flush_bytes);
  case_<128, 64, true, false>(N, Ci, Co, D, s, hw, dx, dgy, dbias, flush, flush_bytes);
  case_<128, 128, true, false>(N, Ci, Co, D, s, hw, dx, dgy, dbias, flush, flush_bytes);
  // the tensor-core forms (wip/patch-mma): tf32 and 3xtf32 mma.sync on the same stages
  case_<128, 128, false, true, 1>(N, Ci, Co, D, s, hw, dx, dgy, dbias, flush, flush_bytes);
  case_<128, 128, false, false, 1>(N, Ci, Co, D, s, hw, dx, dgy, dbias, flush, flush_bytes);
  case_<128, 64, true, true, 1>(N, Ci, Co, D, s, hw, dx, dgy, dbias, flush, flush_bytes);
  case_<128, 64, true, false, 1>(N, Ci, Co, D, s, hw, dx, dgy, dbias, flush, flush_bytes);
  case_<128, 128, false, true, 2>(N, Ci, Co, D, s, hw, dx, dgy, dbias, flush, flush_bytes);
  case_<128, 64, true, true, 2>(N, Ci, Co, D, s, hw, dx, dgy, dbias, flush, flush_bytes);
  return 0;
}
