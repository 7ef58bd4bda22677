// CUDA-event times of a call, for the standalone timing tools (wgrad_parts.cu, wgrad_ab.py's generated
// source): reps runs of run() on the default stream, each timed alone, sorted ascending (ms).
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

template <class F>
std::vector<float> event_times(F&& run, int reps = 30) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<float> ms;
  for (int r = 0; r < reps; ++r) {
    cudaEventRecord(a);
    run();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float t;
    cudaEventElapsedTime(&t, a, b);
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms;
}

// The median of reps timed runs of run(), each after a memset of flush_bytes at flush (L2 flushed: inputs come from
// DRAM, as in the package's bench), after warmup untimed ones (ms). patchsimt.cu and ffmafprop.cu time with it.
template <class F>
double flushed_median_ms(F&& run, void* flush, size_t flush_bytes, int reps = 50, int warmup = 3) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<float> ms;
  for (int r = 0; r < warmup + reps; ++r) {
    cudaMemsetAsync(flush, r & 0xff, flush_bytes);
    cudaEventRecord(a);
    run();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float t;
    cudaEventElapsedTime(&t, a, b);
    if (r >= warmup) ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}
