// The boundary between the thin torch binding and the kernel translation units.
// Kept free of torch and CUTLASS headers so kernel TUs compile in seconds and the
// binding compiles without nvcc.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

typedef struct CUstream_st* cudaStream_t;

namespace convt3d {

// One Conv3d problem in CUTLASS's own naming (all tensors packed NDHWC / KTRSC, fp32):
//   activation  [N, D, H, W, C]   (Fprop: input,  Dgrad: dx = result, Wgrad: B operand)
//   filter      [K, T, R, S, C]   (Fprop/Dgrad: operand B, Wgrad: result)
//   output      [N, Z, P, Q, K]   (Fprop: result, Dgrad/Wgrad: dy = operand A)
// Dgrad reads `pad` as the front padding only and takes Z, P, Q as given, so the
// asymmetric sub-problems of the stride phase decomposition fit.
struct ConvLaunch {
  int N = 0, D = 0, H = 0, W = 0, C = 0;
  int K = 0, T = 0, R = 0, S = 0;
  int Z = 0, P = 0, Q = 0;
  int pad_d = 0, pad_h = 0, pad_w = 0;
  int stride_d = 1, stride_h = 1, stride_w = 1;
  int split_k_slices = 1;   // Wgrad: partial sums go to `result` slice by slice; else serial split-K
  // Dgrad only: the result's element strides along w, h, d and n where it is a strided view (a stride phase
  // of the transposed convolution's output, written in place); all 0: packed.
  long long result_stride[4] = {0, 0, 0, 0};
  const float* activation = nullptr;
  const float* filter = nullptr;
  const float* output = nullptr;
  float* result = nullptr;   // what the operator writes
  const float* bias = nullptr;  // per result channel, broadcast in the epilogue; may be null
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
  // Serial split-K: the caller zeroed the semaphores in `workspace` already (dgrad_phases zeroes all its
  // phases' at once), so the launch skips CUTLASS's own memset per kernel.
  bool workspace_zeroed = false;
  // Kernels whose entry says reads_ncdhw only: activation is packed [N, C, D, H, W] and output [N, K, Z, P, Q]
  // (Wgrad: dy := x and grad_y, read; Fprop: grad_y read and grad_x written), in that storage; the sizes above keep
  // their names.
  bool ncdhw = false;
  cudaStream_t stream = nullptr;
};

// Return codes: 0 = success, otherwise a cutlass::Status value (>0) or,
// for CUDA launch errors, 1000 + cudaError_t.
using LaunchFn = int (*)(const ConvLaunch&);
using WorkspaceFn = std::size_t (*)(const ConvLaunch&);
// n stride phases of one forward in one launch (Dgrad kernels; see conv_kernel.cuh, run_phases).
using PhasesFn = int (*)(const ConvLaunch* phases, int n);

struct KernelEntry {
  const char* name;
  LaunchFn can_implement;  // 0 when the kernel accepts the problem
  WorkspaceFn workspace_size;
  LaunchFn run;
  PhasesFn run_phases = nullptr;  // null: the kernel runs one phase per launch only
  // CTAs of the kernel resident per SM of the current device (its registers and shared memory, asked of the
  // CUDA runtime), for a grid sized in whole waves of them; null or 0: unknown.
  int (*resident)() = nullptr;
  // The kernel takes ConvLaunch::ncdhw (the binding refuses it to any other, which would read NDHWC).
  bool reads_ncdhw = false;
  // resident for the kernel it runs with ConvLaunch::ncdhw (its own registers and shared memory); null: unknown.
  int (*resident_ncdhw)() = nullptr;
};

// The most phases run_phases takes (conv_kernel.cuh says why).
constexpr int kMaxGroupedPhases = 8;

// Registry filled by static initialisers in each kernel TU.
std::vector<KernelEntry>& registry();
const KernelEntry* find_kernel(const std::string& name);
const char* status_name(int code);

struct Registrar {
  explicit Registrar(const KernelEntry& e) { registry().push_back(e); }
};

}  // namespace convt3d
