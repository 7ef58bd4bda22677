// The torch-free boundary for the tap-reuse ("direct") kernels, beside conv_launch.h.
//
// One launch computes, for every phase ph and every q in the phase's count,
//   out[n, first + s_out*q, co] = bias[co]
//       + sum_{taps j} sum_cr in[n, s_in*q + dmin + j, cr] * weight[ph][j][co][cr]
// with out-of-range inputs read as zero. That covers:
//   ConvTranspose3d forward: s_in = 1, s_out = stride, one phase per output residue (the sub-pixel
//     decomposition), taps of the phase's sub-kernel; grad_input: s_in = stride, s_out = 1, one
//     phase with every tap. Tensors are packed NDHWC; the weight is tap-major, K-major in cr.
// The w-fold rows of the Hopper kernel (direct_sm90.cuh, WF) read a phase's w entries as inputs instead:
//   phases along d and h only, every input m feeding outputs s_out*m - pad + kw for all taps kw
//   (direct.forward_plan_wfold: first = -pad, count and dmin over inputs, taps = k).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

typedef struct CUstream_st* cudaStream_t;

namespace convt3d {

constexpr int kDirectMaxPhases = 64;  // stride <= 4

struct DirectPhase {
  int first[3];    // output position of q = 0 along (d, h, w)
  int count[3];    // outputs of this phase along each axis
  int dmin[3];     // input offset of tap 0: input = s_in*q + dmin + j
  int taps[3];     // taps along each axis (0: the phase sees no input, only the bias)
  long long w_offset;  // element offset of this phase's [taps][Co][Cr] block in `weight`
};

struct DirectLaunch {
  int N = 0, Di = 0, Hi = 0, Wi = 0, Cr = 0;  // input  [N, Di, Hi, Wi, Cr]
  int Do = 0, Ho = 0, Wo = 0, Co = 0;         // output [N, Do, Ho, Wo, Co]
  int s_in = 1, s_out = 1;
  int num_phases = 0;
  DirectPhase phase[kDirectMaxPhases];
  const float* in = nullptr;
  const float* weight = nullptr;
  const float* bias = nullptr;  // [Co] or null
  float* out = nullptr;
  bool out_ncdhw = false;  // out stored [N][Co][Do][Ho][Wo] (the warp-specialized Hopper and the FFMA kernels)
  // in stored [N][Cr][Di][Hi][Wi] (the warp-specialized Hopper kernel with a resident filter; the implicit-GEMM
  // kernel's 3xtf32 rows at s_in = 1; the FFMA kernel)
  bool in_ncdhw = false;
  // With out_ncdhw: store whole 32-byte sectors, each CTA walking groups of w-neighbour tiles and carrying
  // the sector two of them share (the warp-specialized Hopper kernel, where its rows start on sectors and
  // its configuration has the registers; elsewhere the plain stores). Chosen by direct.ncdhw_sectors.
  bool out_sectors = false;
  // [in_sums_rows][Cr] or null: sums of the input over positions, in rows that the caller adds up in
  // a fixed order (grad_input's bias gradient, from the grad_y it reads anyway; the warp-specialized
  // Hopper kernel, NDHWC input, one phase; the others refuse it).
  float* in_sums = nullptr;
  int in_sums_rows = 0;
  // [N][Di][Hi][Wi][Cr] or null, with in_ncdhw: a channels_last copy of the input, each position written once
  // by the tile that sums it (the warp-specialized Hopper kernel's ring form, under in_sums' ownership rule).
  // grad_input reads an NCDHW grad_y in place and leaves grad_weight the copy it reads, instead of a
  // conversion pass before both (one read of grad_y fewer).
  float* in_copy = nullptr;
  // Every phase adds into the same output positions (first, count and s_out = 1 of phase 0), reading
  // the input at s_in * (q + j) + dmin: grad_input's input parities, one unit-stride problem per residue
  // of grad_y (the FFMA kernel; the others refuse it). Else each phase writes its own outputs.
  bool sum_phases = false;
  cudaStream_t stream = nullptr;
};

// 0 = success; 4 = kErrorInvalidProblem, 5 = kErrorNotSupported (cutlass::Status values);
// 1000 + cudaError_t for CUDA errors, as for the CUTLASS kernels.
template <typename Launch>
struct DirectEntryOf {
  const char* name;
  int (*can_implement)(const Launch&);
  int (*run)(const Launch&);
  // The phases' w entries count inputs, not outputs (the w-fold rows: direct.forward_plan_wfold); the
  // kernel stores only the outputs inside [0, Wo), so the binding's range check skips that axis.
  bool w_counts_inputs = false;
};
using DirectEntry = DirectEntryOf<DirectLaunch>;

// The weight gradient on tap reuse (direct_wgrad.cuh):
//   partials[slice][(kd*k + kh)*k + kw][ci][co] = sum over the slice's x tiles of
//       x[n, i, ci] * grad_y[n, stride*i - pad + (kd, kh, kw), co]
// x [N, Di, Hi, Wi, Ci] and grad_y [N, Do, Ho, Wo, Co] packed NDHWC; out-of-range grad_y reads as
// zero. The caller sums the slices in a fixed order (bitwise reproducible).
struct DirectWgradLaunch {
  int N = 0, Di = 0, Hi = 0, Wi = 0, Ci = 0;
  int Do = 0, Ho = 0, Wo = 0, Co = 0;
  int k = 1, stride = 1, pad = 0;
  int slices = 1;          // CTAs along the reduction (gridDim.x), one partial slice each
  int taps_per_group = 1;  // (kh, kw) taps per CTA, one warp each
  int tap_groups = 1;      // tap_groups * taps_per_group >= k*k
  bool x_ncdhw = false;    // x stored [N][C][D][H][W] (the Hopper and FFMA kernels; the others refuse it)
  bool gy_ncdhw = false;   // grad_y stored [N][Co][Do][Ho][Wo] (the FFMA kernel; the others refuse it)
  const float* x = nullptr;
  const float* gy = nullptr;
  float* partials = nullptr;  // [slices, k^3, Ci, Co]
  cudaStream_t stream = nullptr;
};

using DirectWgradEntry = DirectEntryOf<DirectWgradLaunch>;

std::vector<DirectEntry>& direct_registry();
std::vector<DirectWgradEntry>& direct_wgrad_registry();
const DirectEntry* find_direct(const std::string& name);
const DirectWgradEntry* find_direct_wgrad(const std::string& name);

struct DirectRegistrar {
  explicit DirectRegistrar(const DirectEntry& e) { direct_registry().push_back(e); }
  explicit DirectRegistrar(const DirectWgradEntry& e) { direct_wgrad_registry().push_back(e); }
};

}  // namespace convt3d
