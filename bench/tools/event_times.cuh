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
