// Torch-free boundary of the layout transpose (layout_transpose.cu): NCDHW <-> NDHWC.
#pragma once
#include <cstdint>

typedef struct CUstream_st* cudaStream_t;

namespace convt3d {

// dst[b][c][r] = src[b][r][c] for b < batch, r < rows, c < cols (fp32, both packed).
// NCDHW -> NDHWC: rows = C, cols = D*H*W; NDHWC -> NCDHW: rows = D*H*W, cols = C.
// Returns 0 or 1000 + cudaError_t.
int transpose_batched(const float* src, float* dst, int64_t batch, int64_t rows, int64_t cols,
                      cudaStream_t stream);

}  // namespace convt3d
