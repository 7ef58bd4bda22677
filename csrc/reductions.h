// Torch-free boundary of the backward pass's reductions (reductions.cu): the bias gradient of an
// NDHWC grad_y and the weight gradient's sum over partial slices. Both add in a fixed order, so
// their results are bitwise reproducible.
#pragma once
#include <cstdint>

typedef struct CUstream_st* cudaStream_t;

namespace convt3d {

// Floats of channel_sums' workspace for a [rows][c] source (0 for up to 1024 rows: one launch, no workspace).
int64_t channel_sums_work(int64_t rows, int64_t c);

// out[c] = sum over r of src[r][c], src packed [rows][c]; work: channel_sums_work(rows, c) floats.
// Returns 0 or 1000 + cudaError_t.
int channel_sums(const float* src, float* out, float* work, int64_t rows, int64_t c, cudaStream_t stream);

// out[ci][co][t] = sum over s = 0, 1, ... of partials[s * s_s + t * s_t + ci * s_ci + co]: the weight
// gradient [C_in, C_out, k, k, k] from per-slice partial sums in any [slice, tap, ci, co] strides
// (the tap-reuse kernels write [s][t][ci][co], the stock wgrad [s][ci][t][co]); co is unit-stride and one
// slice's taps * ci * co elements are packed. Any number of slices, one launch.
int wgrad_finish(const float* partials, float* out, int64_t slices, int64_t taps, int64_t ci, int64_t co,
                 int64_t s_s, int64_t s_t, int64_t s_ci, cudaStream_t stream);

}  // namespace convt3d
