// One Hopper grad_weight kernel on one layer, for the standalone A/B executables that wgrad_ab.py and
// wgrad_stages.py generate (no torch): device-initialised inputs, partial sums poisoned with NaN bits
// first, a hash of their bits after one run, then the median of 30 CUDA-event runs (L2 not flushed).
// A kernel that cannot take the layer (shared memory, stride) prints "skip".
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "direct_wgrad_sm90.cuh"
#include "event_times.cuh"

__global__ void wgrad_one_fill(float* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    p[i] = (float)(((uint32_t)i * 2654435761u + seed) % 2001u) / 1000.f - 1.f;
}

template <class K>
void wgrad_one(const char* label, int n, int ci, int co, int d, int h, int w, int k, int s, int pad, int op,
               int slices) {
  convt3d::DirectWgradLaunch p;
  p.N = n; p.Di = d; p.Hi = h; p.Wi = w; p.Ci = ci; p.Co = co; p.k = k; p.stride = s; p.pad = pad;
  p.Do = (d - 1) * s - 2 * pad + k + op; p.Ho = (h - 1) * s - 2 * pad + k + op; p.Wo = (w - 1) * s - 2 * pad + k + op;
  p.slices = slices;
  if (const int code = K::can_implement(p)) {
    printf("%-48s skip (can_implement %d)\n", label, code);
    return;
  }
  size_t nx = (size_t)n * d * h * w * ci, ng = (size_t)n * p.Do * p.Ho * p.Wo * co, np = (size_t)slices * k * k * k * ci * co;
  float *x, *gy, *part;
  cudaMalloc(&x, nx * 4); cudaMalloc(&gy, ng * 4); cudaMalloc(&part, np * 4);
  wgrad_one_fill<<<1024, 256>>>(x, nx, 1u); wgrad_one_fill<<<1024, 256>>>(gy, ng, 7u);
  cudaMemset(part, 0xff, np * 4);
  p.x = x; p.gy = gy; p.partials = part;
  int code = K::run(p);
  cudaDeviceSynchronize();
  if (code != 0 || cudaGetLastError() != cudaSuccess) { printf("%s run failed %d\n", label, code); exit(1); }
  std::vector<uint32_t> hp(np);
  cudaMemcpy(hp.data(), part, np * 4, cudaMemcpyDeviceToHost);
  uint64_t hash = 1469598103934665603ull;
  for (uint32_t v : hp) hash = (hash ^ v) * 1099511628211ull;
  const std::vector<float> ms = event_times([&] { K::run(p); });
  printf("%-48s median %.4f ms (min %.4f) hash %016llx\n", label, ms[15], ms[0], (unsigned long long)hash);
  cudaFree(x); cudaFree(gy); cudaFree(part);
}
