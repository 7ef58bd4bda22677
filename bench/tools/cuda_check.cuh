// The standalone tools' CUDA error check, host-to-device copy and check against a reference (patchsimt.cu,
// ffmafprop.cu).
#pragma once
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CK(x)                                                                                \
  do {                                                                                       \
    cudaError_t e_ = (x);                                                                    \
    if (e_ != cudaSuccess) {                                                                 \
      std::printf("CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__); \
      std::exit(1);                                                                          \
    }                                                                                        \
  } while (0)

// A device copy of h (cudaMalloc'd; the tools free it or leave it to process exit).
inline float* dev(const std::vector<float>& h) {
  float* d;
  CK(cudaMalloc(&d, h.size() * sizeof(float)));
  CK(cudaMemcpy(d, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice));
  return d;
}

// ||out - ref|| / ||ref|| over the finite elements of out; bad counts the others (unwritten: the tools poison the
// output with NaN before the run).
inline double rel_l2(const std::vector<float>& out, const std::vector<double>& ref, long long& bad) {
  double num = 0, den = 0;
  bad = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) { ++bad; continue; }
    num += (out[i] - ref[i]) * (out[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}
