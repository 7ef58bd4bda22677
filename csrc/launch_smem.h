// Host helpers every kernel TU shares, ours and the stock CUTLASS ones (conv_kernel.cuh): device attributes
// queried once, and launches with more than 48 KiB of dynamic shared memory. Free of CuTe and torch so that the
// stock TUs include nothing more than CUDA's runtime for them.
#pragma once
#include <cuda_runtime.h>

#include <atomic>
#include <cstddef>
#include <mutex>
#include <utility>
#include <vector>

namespace convt3d {
namespace direct {

// An attribute of the current device, queried once per (device, attribute): a small layer's step
// launches about six kernels, and these queries were a visible share of its host time. Devices past
// the table are queried every time. False when the query fails.
inline bool device_attribute(cudaDeviceAttr attr, int& value) {
  constexpr int kDevices = 64, kAttrs = 4;
  static const cudaDeviceAttr kCached[kAttrs] = {cudaDevAttrComputeCapabilityMajor, cudaDevAttrComputeCapabilityMinor,
                                                 cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                                 cudaDevAttrMultiProcessorCount};
  static std::atomic<int> cache[kAttrs][kDevices];  // value + 1; 0 = not queried yet
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  int slot = 0;
  while (slot < kAttrs && kCached[slot] != attr) ++slot;
  const bool cacheable = slot < kAttrs && dev >= 0 && dev < kDevices;
  if (cacheable) {
    const int v = cache[slot][dev].load(std::memory_order_relaxed);
    if (v > 0) {
      value = v - 1;
      return true;
    }
  }
  if (cudaDeviceGetAttribute(&value, attr, dev) != cudaSuccess) return false;
  if (cacheable) cache[slot][dev].store(value + 1, std::memory_order_relaxed);
  return true;
}

// 0 when the current device gives `bytes` of dynamic shared memory per block (opt-in); else
// kErrorNotSupported (5), or 1000 + cudaError_t when the query fails.
inline int smem_fits(size_t bytes) {
  int optin = 0;
  if (!device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin, optin)) return 1000 + (int)cudaGetLastError();
  return bytes > (size_t)optin ? 5 : 0;
}

// Raises kernel's dynamic shared memory limit to at least `bytes` on the current device; the call
// is skipped when an earlier one already allowed as much (per kernel and device, process-wide).
inline cudaError_t allow_smem(const void* kernel, size_t bytes) {
  static std::mutex mu;
  static std::vector<std::pair<std::pair<const void*, int>, size_t>> allowed;
  int dev = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err != cudaSuccess) return err;
  const auto key = std::make_pair(kernel, dev);
  std::lock_guard<std::mutex> lock(mu);
  for (auto& e : allowed) {
    if (e.first != key) continue;
    if (e.second >= bytes) return cudaSuccess;
    err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    if (err == cudaSuccess) e.second = bytes;
    return err;
  }
  err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
  if (err == cudaSuccess) allowed.emplace_back(key, bytes);
  return err;
}

// CTAs of kernel resident per SM of the current device at `threads` threads and `bytes` of dynamic shared memory
// (its registers as compiled); 0 when CUDA cannot say, the error taken off the last-error slot the launches read.
template <class Kernel>
inline int resident_ctas(Kernel kernel, int threads, size_t bytes) {
  int n = 0;
  if (allow_smem(reinterpret_cast<const void*>(kernel), bytes) != cudaSuccess ||
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, bytes) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

// Launches kernel with `bytes` of dynamic shared memory (opting in past the 48 KiB default) on stream:
// 0, or 1000 + cudaError_t as the launchers report CUDA errors.
template <class Kernel, class... Args>
inline int launch_with_smem(Kernel kernel, dim3 grid, dim3 threads, size_t bytes, cudaStream_t stream,
                            const Args&... args) {
  cudaError_t err = allow_smem(reinterpret_cast<const void*>(kernel), bytes);
  if (err != cudaSuccess) return 1000 + (int)err;
  kernel<<<grid, threads, bytes, stream>>>(args...);
  err = cudaGetLastError();
  return err == cudaSuccess ? 0 : 1000 + (int)err;
}

}  // namespace direct
}  // namespace convt3d
