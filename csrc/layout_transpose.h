// Torch-free boundary of the layout transpose (layout_transpose.cu): NCDHW <-> NDHWC.
#pragma once
#include <cstdint>

typedef struct CUstream_st* cudaStream_t;

namespace convt3d {

// NCDHW [n][c][positions] -> NDHWC [n][positions][c] (to_ndhwc) or back, fp32, both packed.
// sums (to_ndhwc only; null: none): [n][layout_transpose_tiles(positions)][c] per-tile channel sums
// of src, each added in a fixed order, so that their sum is a reproducible bias gradient.
// src_c_stride, src_n_stride (to_ndhwc only; 0: packed, positions and c * positions): src's element strides
// between channels and between samples, so that a depth slab of a packed NCDHW tensor (its positions contiguous
// per channel, further apart than the slab's) converts without a packed copy of its own (the exact-fp32
// grad_weight's depth slabs, launch.grad_weight). Returns 0 or 1000 + cudaError_t.
int layout_transpose(const float* src, float* dst, float* sums, int64_t n, int64_t c, int64_t positions,
                     bool to_ndhwc, cudaStream_t stream, int64_t src_c_stride = 0, int64_t src_n_stride = 0);

// Position tiles per sample: the middle extent of layout_transpose's sums.
int64_t layout_transpose_tiles(int64_t positions);

}  // namespace convt3d
