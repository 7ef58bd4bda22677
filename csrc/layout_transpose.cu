// NCDHW <-> NDHWC as a batched 2-D transpose through shared memory, so both the read and the
// write are coalesced. torch's generic permuted copy runs these at about a quarter of the copy
// bandwidth on our shapes (C = 8..256 against 10^5..10^6 positions), which made the layout
// conversions cost more than the kernels on NCDHW inputs (docs/performance.md).
#include <cuda_runtime.h>

#include "layout_transpose.h"

namespace convt3d {
namespace {

constexpr int kTile = 32, kRowsPerPass = 8;

// One 32 x 32 tile of one matrix per CTA (grid: tiles of the matrix, flattened; batch), 32 x 8
// threads.
__global__ void __launch_bounds__(kTile * kRowsPerPass)
    transpose_kernel(const float* __restrict__ src, float* __restrict__ dst, int64_t rows, int64_t cols,
                     int64_t col_tiles) {
  __shared__ float tile[kTile][kTile + 1];  // +1: column reads hit 32 different banks
  const int64_t b = blockIdx.y;
  const int64_t r0 = (int64_t)(blockIdx.x / col_tiles) * kTile, c0 = (int64_t)(blockIdx.x % col_tiles) * kTile;
  const float* s = src + b * rows * cols;
  float* d = dst + b * rows * cols;
  const int tx = threadIdx.x, ty = threadIdx.y;
#pragma unroll
  for (int i = ty; i < kTile; i += kRowsPerPass) {
    const int64_t r = r0 + i, c = c0 + tx;
    if (r < rows && c < cols) tile[i][tx] = s[r * cols + c];
  }
  __syncthreads();
#pragma unroll
  for (int i = ty; i < kTile; i += kRowsPerPass) {
    const int64_t c = c0 + i, r = r0 + tx;
    if (c < cols && r < rows) d[c * rows + r] = tile[tx][i];
  }
}

}  // namespace

int transpose_batched(const float* src, float* dst, int64_t batch, int64_t rows, int64_t cols,
                      cudaStream_t stream) {
  if (batch == 0 || rows == 0 || cols == 0) return 0;
  const int64_t gx = (cols + kTile - 1) / kTile, gy = (rows + kTile - 1) / kTile;
  if (gx * gy > 0x7fffffff || batch > 65535) return 1000 + (int)cudaErrorInvalidConfiguration;
  transpose_kernel<<<dim3((unsigned)(gx * gy), (unsigned)batch), dim3(kTile, kRowsPerPass), 0, stream>>>(
      src, dst, rows, cols, gx);
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? 0 : 1000 + (int)err;
}

}  // namespace convt3d
