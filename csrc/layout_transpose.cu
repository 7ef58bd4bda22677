// NCDHW <-> NDHWC through shared memory, so both the read and the write are coalesced. torch's
// generic permuted copy runs these at about a quarter of the copy bandwidth on our shapes (C = 8..256
// against 10^5..10^6 positions), which made the layout conversions cost more than the kernels on
// NCDHW inputs (docs/performance.md).
//
// A CTA moves kPos positions x up to kChan channels of one sample. v0.7's 32 x 32 tiles left a quarter
// of the lanes idle at C = 24 and 48 and moved 4 KiB per CTA; with the whole channel block in one tile
// the NDHWC side is one contiguous run of kPos * C floats, and a thread has up to 32 loads in flight.
//
// The tile is sized to the CTA's channels (dynamic shared memory). Why (v0.60, transposeab.py on the H200): a
// CTA's loads stop while it stores, so the bytes each SM has in flight bound the transpose, and the static
// 64-channel tile (33 KiB) held every C to six CTAs per SM. The headline's grad_y (8 x 24 x 98^3, with its sums)
// went 0.449 -> 0.411 ms, rows of 32 channels 1.13x, to NCDHW up to 1.09x. 16-byte loads of 4 positions on the
// NCDHW side, the best form standalone (bench/tools/transpose_variants.cu: 0.372 ms), were level on that
// grad_y in the package and lost 11% on the headline's x, so the loads stay 4-byte.
#include <cuda_runtime.h>

#include <cstdlib>

#include "layout_transpose.h"

namespace convt3d {
namespace {

constexpr int kPos = 128, kChan = 64, kThreads = 256;

// to_ndhwc: src [n][C][P] -> dst [n][P][C]; else src [n][P][C] -> dst [n][C][P]. grid (position
// tiles, channel blocks, n). sums (to_ndhwc only, may be null): sums[n][tile][c] = the tile's sum of
// channel c over its positions, added in a fixed order (a bias gradient from the same read). to_ndhwc: src's
// channels lie cs elements apart and its samples ns (C * P where packed).
template <bool kToNdhwc>
__global__ void __launch_bounds__(kThreads)
    transpose_kernel(const float* __restrict__ src, float* __restrict__ dst, float* __restrict__ sums, int64_t C,
                     int64_t P, int64_t cs, int64_t ns) {
  extern __shared__ float tile_raw[];  // [cb][kPos + 1]: +1, reads down a column hit distinct banks
  auto tile = reinterpret_cast<float(*)[kPos + 1]>(tile_raw);
  const int64_t n = blockIdx.z, p0 = (int64_t)blockIdx.x * kPos, c0 = (int64_t)blockIdx.y * kChan;
  const int cb = (int)(C - c0 < kChan ? C - c0 : kChan), pb = (int)(P - p0 < kPos ? P - p0 : kPos);
  const int tid = threadIdx.x;
  // NCDHW side: rows of kPos positions, kThreads / kPos channels per pass.
  const int pp = tid % kPos, pc = tid / kPos;
  constexpr int kPassC = kThreads / kPos;
  // NDHWC side: rows of cb channels, kThreads / cb positions per pass (the rest of the threads idle).
  const int per = kThreads / cb, qc = tid % cb, qp = tid / cb;
  const float* s = src + n * (kToNdhwc ? ns : C * P);
  float* d = dst + n * C * P;
  // Loads in batches of kBatch, from clamped addresses and without branches, so that they are all in
  // flight at once (a predicated load per element compiled to one branch and one load at a time:
  // 2.1 TB/s against the copy's 3.0).
  constexpr int kBatch = 8;
  if (kToNdhwc) {
    const int p = pp < pb ? pp : pb - 1;
    for (int c = pc; c < cb; c += kPassC * kBatch) {
      float v[kBatch];
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        const int cj = c + kPassC * j;
        v[j] = __ldg(s + (c0 + (cj < cb ? cj : cb - 1)) * cs + p0 + p);
      }
#pragma unroll
      for (int j = 0; j < kBatch; ++j)
        if (c + kPassC * j < cb) tile[c + kPassC * j][pp] = pp < pb ? v[j] : 0.f;
    }
  } else if (qp < per) {
    for (int p = qp; p < pb; p += per * kBatch) {
      float v[kBatch];
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        const int pj = p + per * j;
        v[j] = __ldg(s + (p0 + (pj < pb ? pj : pb - 1)) * C + c0 + qc);
      }
#pragma unroll
      for (int j = 0; j < kBatch; ++j)
        if (p + per * j < pb) tile[qc][p + per * j] = v[j];
    }
  }
  __syncthreads();
  if (kToNdhwc) {
    if (qp < per)
      for (int p = qp; p < pb; p += per) d[(p0 + p) * C + c0 + qc] = tile[qc][p];
    if (sums != nullptr) {
      const int warp = tid / 32, lane = tid % 32;
      for (int c = warp; c < cb; c += kThreads / 32) {
        float v = 0.f;
#pragma unroll
        for (int j = 0; j < kPos / 32; ++j) v += tile[c][lane + 32 * j];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) sums[(n * gridDim.x + blockIdx.x) * C + c0 + c] = v;
      }
    }
  } else {
    for (int c = pc; c < cb; c += kPassC)
      if (pp < pb) d[(c0 + c) * P + p0 + pp] = tile[c][pp];
  }
}

}  // namespace

int layout_transpose(const float* src, float* dst, float* sums, int64_t n, int64_t c, int64_t positions,
                     bool to_ndhwc, cudaStream_t stream, int64_t src_c_stride, int64_t src_n_stride) {
  if (n == 0 || c == 0 || positions == 0) return 0;
  const int64_t tiles = (positions + kPos - 1) / kPos, blocks = (c + kChan - 1) / kChan;
  if (tiles > 0x7fffffff || blocks > 65535 || n > 65535) return 1000 + (int)cudaErrorInvalidConfiguration;
  const dim3 grid((unsigned)tiles, (unsigned)blocks, (unsigned)n);
  // CONVT3D_TRANSPOSE_V1=1: v0.59's form, a 64-channel tile whatever C (same-process A/B runs,
  // bench/tools/transposeab.py; read at each launch).
  const char* v1 = std::getenv("CONVT3D_TRANSPOSE_V1");
  const bool old = v1 != nullptr && v1[0] == '1';
  const size_t bytes = (size_t)(c < kChan && !old ? c : kChan) * (kPos + 1) * sizeof(float);  // at most 33 KiB
  const int64_t cs = src_c_stride > 0 ? src_c_stride : positions, ns = src_n_stride > 0 ? src_n_stride : c * cs;
  if (to_ndhwc)
    transpose_kernel<true><<<grid, kThreads, bytes, stream>>>(src, dst, sums, c, positions, cs, ns);
  else
    transpose_kernel<false><<<grid, kThreads, bytes, stream>>>(src, dst, nullptr, c, positions, positions, 0);
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? 0 : 1000 + (int)err;
}

int64_t layout_transpose_tiles(int64_t positions) { return (positions + kPos - 1) / kPos; }

}  // namespace convt3d
