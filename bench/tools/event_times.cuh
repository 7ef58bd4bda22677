// CUDA-event times of a call, for the standalone timing tools (wgrad_parts.cu, wgrad_ab.py's generated source,
// transpose_variants.cu, patchsimt.cu, ffmafprop.cu): reps runs of run() on the default stream, each timed alone.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

// before() runs ahead of each timed run, untimed; the first warmup runs are not kept.
template <class F, class B>
std::vector<float> event_times_with(F&& run, int reps, B&& before, int warmup) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<float> ms;
  for (int r = 0; r < warmup + reps; ++r) {
    before();
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
  return ms;
}

template <class F>
std::vector<float> event_times(F&& run, int reps = 30) {
  return event_times_with(run, reps, [] {}, 0);
}

// The median of reps timed runs of run(), each after a memset of flush_bytes at flush (L2 flushed: inputs come from
// DRAM, as in the package's bench), after warmup untimed ones (ms). patchsimt.cu and ffmafprop.cu time with it.
template <class F>
double flushed_median_ms(F&& run, void* flush, size_t flush_bytes, int reps = 50, int warmup = 3) {
  int r = 0;
  const std::vector<float> ms =
      event_times_with(run, reps, [&] { cudaMemsetAsync(flush, r++ & 0xff, flush_bytes); }, warmup);
  return ms[ms.size() / 2];
}
