// The backward pass's reductions, in place of torch's generic ones. torch's sum of a channels_last
// grad_y over (N, D, H, W) ran at a fifth of the copy bandwidth on our layers (0.056 ms for 34 MB on
// the 3D-GAN 256->128 step, docs/performance.md), and the weight gradient took a sum over slices
// plus a permuted copy (two launches, two passes over memory). Bandwidth-bound kernels, fixed order.
#include <cuda_runtime.h>

#include "reductions.h"

namespace convt3d {
namespace {

constexpr int kLanes = 32, kRowsPerPass = 8, kThreads = kLanes * kRowsPerPass;
constexpr int64_t kRowsPerBlock = 512;  // rows of one first-stage block
constexpr int64_t kMaxBlocks = 1024;    // first-stage blocks cap: the second stage reads them all

// The kRowsPerPass per-thread partials of each lane's channel, added in row order; the total is
// valid in the rr == 0 threads (the others get 0). One __syncthreads inside: every thread calls it.
__device__ __forceinline__ float fold_runs(float (&part)[kRowsPerPass][kLanes], float acc, int rr, int lane) {
  part[rr][lane] = acc;
  __syncthreads();
  float v = 0.f;
  if (rr == 0) {
    v = part[0][lane];
#pragma unroll
    for (int j = 1; j < kRowsPerPass; ++j) v += part[j][lane];
  }
  return v;
}

// work[b][c] = sum of src rows [b * per, (b + 1) * per) of channel c. grid (blocks, channel groups of
// 32); a warp lane per channel (coalesced along c), kRowsPerPass rows in flight, then the rows folded
// in a fixed order through shared memory.
__global__ void __launch_bounds__(kThreads)
    sums_stage1(const float* __restrict__ src, float* __restrict__ work, int64_t rows, int64_t C, int64_t per) {
  __shared__ float part[kRowsPerPass][kLanes];
  const int lane = threadIdx.x % kLanes, rr = threadIdx.x / kLanes;
  const int64_t c = (int64_t)blockIdx.y * kLanes + lane;
  const int64_t r0 = (int64_t)blockIdx.x * per, r1 = r0 + per < rows ? r0 + per : rows;
  float acc = 0.f;
  if (c < C) {
    int64_t r = r0 + rr;
    // Four independent loads per iteration keep the memory pipe busy; the adds stay in row order.
    for (; r + 3 * kRowsPerPass < r1; r += 4 * kRowsPerPass) {
      const float a = __ldg(src + r * C + c), b = __ldg(src + (r + kRowsPerPass) * C + c);
      const float d = __ldg(src + (r + 2 * kRowsPerPass) * C + c), e = __ldg(src + (r + 3 * kRowsPerPass) * C + c);
      acc += a; acc += b; acc += d; acc += e;
    }
    for (; r < r1; r += kRowsPerPass) acc += __ldg(src + r * C + c);
  }
  const float v = fold_runs(part, acc, rr, lane);
  if (rr == 0 && c < C) work[(int64_t)blockIdx.x * C + c] = v;
}

// out[c] = sum over j < fold, then over b, of work[b][j * C + c], in a fixed order. fold > 1: stage 1
// saw `fold` consecutive rows as one row of fold * C channels. grid: channel groups of 32; a lane per
// channel, kRowsPerPass strided runs of blocks, then the runs folded in order (a thread per channel
// walking up to 1024 blocks alone took 0.09 ms).
__global__ void __launch_bounds__(kThreads)
    sums_stage2(const float* __restrict__ work, float* __restrict__ out, int64_t blocks, int64_t C, int fold) {
  __shared__ float part[kRowsPerPass][kLanes];
  const int lane = threadIdx.x % kLanes, rr = threadIdx.x / kLanes;
  const int64_t c = (int64_t)blockIdx.x * kLanes + lane;
  float acc = 0.f;
  if (c < C)
    for (int j = 0; j < fold; ++j) {
#pragma unroll 4
      for (int64_t b = rr; b < blocks; b += kRowsPerPass) acc += __ldg(work + (b * fold + j) * C + c);
    }
  const float v = fold_runs(part, acc, rr, lane);
  if (rr == 0 && c < C) out[c] = v;
}

constexpr int kCoTile = 32, kFinishThreads = 256;

// One (ci, 32-co) tile: acc[t][co] summed over slices in order (each element owned by one thread),
// then written with t fastest so that the [ci][co][t] rows are contiguous.
__global__ void __launch_bounds__(kFinishThreads)
    finish_kernel(const float* __restrict__ partials, float* __restrict__ out, int64_t slices, int taps, int64_t Ci,
                  int64_t Co, int64_t s_s, int64_t s_t, int64_t s_ci) {
  extern __shared__ float acc[];  // [taps][kCoTile + 1]
  const int64_t ci = blockIdx.y, co0 = (int64_t)blockIdx.x * kCoTile;
  const int cb = (int)(Co - co0 < kCoTile ? Co - co0 : kCoTile);
  const int elems = taps * kCoTile;
  for (int e = threadIdx.x; e < elems; e += kFinishThreads) {
    const int t = e / kCoTile, co = e % kCoTile;
    float v = 0.f;
    if (co < cb) {
      const float* p = partials + t * s_t + ci * s_ci + co0 + co;
#pragma unroll 4
      for (int64_t s = 0; s < slices; ++s) v += __ldg(p + s * s_s);
    }
    acc[t * (kCoTile + 1) + co] = v;
  }
  __syncthreads();
  float* o = out + (ci * Co + co0) * taps;
  for (int e = threadIdx.x; e < cb * taps; e += kFinishThreads) {
    const int co = e / taps, t = e % taps;
    o[e] = acc[t * (kCoTile + 1) + co];
  }
}

int status() {
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? 0 : 1000 + (int)err;
}

}  // namespace

// Fewer than 32 channels would idle most lanes of a warp: `fold` consecutive rows are read as one row
// of fold * c channels (fold a power of two dividing rows, fold * c <= 32).
int64_t channel_sums_fold(int64_t rows, int64_t c) {
  int64_t fold = 1;
  while (2 * fold * c <= kLanes && rows % (2 * fold) == 0) fold *= 2;
  return fold;
}

int64_t channel_sums_work(int64_t rows, int64_t c) {
  const int64_t fold = channel_sums_fold(rows, c), r = rows / fold;
  const int64_t b = (r + kRowsPerBlock - 1) / kRowsPerBlock;
  return (b < 1 ? 1 : (b > kMaxBlocks ? kMaxBlocks : b)) * fold * c;
}

int channel_sums(const float* src, float* out, float* work, int64_t rows, int64_t c, cudaStream_t stream) {
  if (c == 0) return 0;
  const int64_t fold = channel_sums_fold(rows, c), r = rows / fold, cf = fold * c;
  const int64_t blocks = channel_sums_work(rows, c) / cf;
  const int64_t per = r > 0 ? (r + blocks - 1) / blocks : 0;
  const int64_t groups = (cf + kLanes - 1) / kLanes;
  if (groups > 65535) return 1000 + (int)cudaErrorInvalidConfiguration;
  sums_stage1<<<dim3((unsigned)blocks, (unsigned)groups), kThreads, 0, stream>>>(src, work, r, cf, per);
  if (int code = status()) return code;
  sums_stage2<<<(unsigned)((c + kLanes - 1) / kLanes), kThreads, 0, stream>>>(work, out, blocks, c, (int)fold);
  return status();
}

int wgrad_finish(const float* partials, float* out, int64_t slices, int64_t taps, int64_t ci, int64_t co,
                 int64_t s_s, int64_t s_t, int64_t s_ci, cudaStream_t stream) {
  if (ci == 0 || co == 0 || taps == 0) return 0;
  if (ci > 65535 || taps > 343) return 1000 + (int)cudaErrorInvalidConfiguration;
  const size_t smem = (size_t)taps * (kCoTile + 1) * sizeof(float);  // <= 45 KiB at k = 7
  const dim3 grid((unsigned)((co + kCoTile - 1) / kCoTile), (unsigned)ci);
  finish_kernel<<<grid, kFinishThreads, smem, stream>>>(partials, out, slices, (int)taps, ci, co, s_s, s_t, s_ci);
  return status();
}

}  // namespace convt3d
