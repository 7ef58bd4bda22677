// The backward pass's reductions, in place of torch's generic ones. torch's sum of a channels_last
// grad_y over (N, D, H, W) ran at a fifth of the copy bandwidth on our layers (0.056 ms for 34 MB on
// the 3D-GAN 256->128 step, docs/performance.md), and the weight gradient took a sum over slices
// plus a permuted copy (two launches, two passes over memory). Bandwidth-bound kernels, fixed order.
#include <cuda_runtime.h>

#include <cstdint>

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

constexpr int kSumLanes = 32, kMaxSumGroups = 32;
// channel_sums takes the one-stage slice_sums below up to this many rows: at most 32 rows per warp. The
// bias rows of grad_input's kernels (one per CTA) and the layout transpose's tile sums stay under it.
constexpr int64_t kOneStageRows = 1024;

// Groups of a block: at least 16 slices each, so that a thread keeps several rounds of loads in flight
// and the fold stays a small part of its work (at 4 slices per group, one round, the 28-32 MB partials of
// the 3xtf32 U-Net 64->32 and SR x2 grad_weights took 0.027-0.033 ms against torch's 0.024-0.026).
int sum_groups(int64_t slices) {
  int g = 1;
  while (2 * g <= kMaxSumGroups && 2 * g * 16 <= slices) g *= 2;
  return g;
}

template <int V>
__device__ __forceinline__ void add_slice(float (&acc)[V], const float* p) {
  if constexpr (V == 4) {
    const float4 v = __ldg(reinterpret_cast<const float4*>(p));
    acc[0] += v.x; acc[1] += v.y; acc[2] += v.z; acc[3] += v.w;
  } else {
    acc[0] += __ldg(p);
  }
}

// out[dst(e)] = sum over s of src[s * s_s + e], e < E: the slices of a packed buffer summed element by
// element, then written where (t, ci, co) of e go in a [Ci][Co][taps] result (t = e / s_t % taps,
// ci = e / s_ci % Ci, co = e % Co; taps = Ci = 1 keeps e). A block holds `lanes` consecutive elements
// (coalesced reads) in each of `groups` groups of threads; group g sums its own run of slices in order,
// and the runs are folded in group order: a fixed order whatever the timing, so bitwise reproducible.
// Splitting the slices over the groups is what lets many slices over few elements (the headline's
// grad_weight: 132-576 slices of 31104) use the whole GPU; v0.9's kernel walked them serially per element,
// so until v0.42 torch summed many slices first (a second launch and its host set-up).
// V consecutive elements per thread (V = 4: 16-byte loads where the buffer allows them). An element's sum
// runs in the same order for either V, so the result does not depend on it.
template <bool RELAYOUT, int V>
__device__ __forceinline__ void slice_sums(const float* __restrict__ src, float* __restrict__ out, int64_t slices,
                                           int64_t E, int64_t s_s, int groups, int64_t taps, int64_t Ci, int64_t Co,
                                           int64_t s_t, int64_t s_ci) {
  __shared__ float part[1024 * V];
  const int lanes = blockDim.x / groups;
  const int lane = threadIdx.x % lanes, g = threadIdx.x / lanes;
  const int64_t e0 = ((int64_t)blockIdx.x * lanes + lane) * V;
  const int64_t per = (slices + groups - 1) / groups, s0 = g * per;
  const int64_t s1 = s0 + per < slices ? s0 + per : slices;
  float acc[V];
#pragma unroll
  for (int i = 0; i < V; ++i) acc[i] = 0.f;
  if (e0 < E) {  // V = 4 only where E % 4 == 0: the whole vector is in range
    const float* p = src + e0;
    int64_t s = s0;
    // Four independent loads per iteration keep the memory pipe busy; the adds stay in slice order.
    for (; s + 3 < s1; s += 4) {
      float a[V], b[V], c[V], d[V];
#pragma unroll
      for (int i = 0; i < V; ++i) a[i] = b[i] = c[i] = d[i] = 0.f;
      add_slice<V>(a, p + s * s_s); add_slice<V>(b, p + (s + 1) * s_s);
      add_slice<V>(c, p + (s + 2) * s_s); add_slice<V>(d, p + (s + 3) * s_s);
#pragma unroll
      for (int i = 0; i < V; ++i) { acc[i] += a[i]; acc[i] += b[i]; acc[i] += c[i]; acc[i] += d[i]; }
    }
    for (; s < s1; ++s) add_slice<V>(acc, p + s * s_s);
  }
  if (groups > 1) {
#pragma unroll
    for (int i = 0; i < V; ++i) part[threadIdx.x * V + i] = acc[i];
    __syncthreads();
    if (g == 0)
      for (int j = 1; j < groups; ++j)
#pragma unroll
        for (int i = 0; i < V; ++i) acc[i] += part[(j * lanes + lane) * V + i];
  }
  if (g == 0 && e0 < E) {
#pragma unroll
    for (int i = 0; i < V; ++i) {
      const int64_t e = e0 + i;
      if constexpr (RELAYOUT) {
        const int64_t co = e % Co, t = e / s_t % taps, ci = e / s_ci % Ci;
        out[(ci * Co + co) * taps + t] = acc[i];
      } else {
        out[e] = acc[i];
      }
    }
  }
}

// grad_weight's last step (wgrad_finish), named apart from row_sums_kernel so that a profile tells them apart.
template <int V>
__global__ void __launch_bounds__(1024, 1)
    finish_kernel(const float* __restrict__ src, float* __restrict__ out, int64_t slices, int64_t E, int64_t s_s,
                  int groups, int64_t taps, int64_t Ci, int64_t Co, int64_t s_t, int64_t s_ci) {
  slice_sums<true, V>(src, out, slices, E, s_s, groups, taps, Ci, Co, s_t, s_ci);
}

// out[c] = sum of the rows of a short packed [rows][C] buffer (channel_sums' one-stage form).
template <int V>
__global__ void __launch_bounds__(1024, 1)
    row_sums_kernel(const float* __restrict__ src, float* __restrict__ out, int64_t rows, int64_t C, int groups) {
  slice_sums<false, V>(src, out, rows, C, C, groups, 1, 1, C, C, C);
}

// Threads of a block for `slices`: groups of `lanes` threads (at least a warp, 256 threads up to 8
// groups, then a warp per group up to 1024 threads), each thread on `vec` consecutive elements: 4 where
// every slice's start is 16-byte aligned and E is a multiple of 4 (torch's sum reads 16 bytes at a time
// too: with 4-byte loads the many-slice partials of 3D-GAN 64->32, 262 MB, took 0.146 ms against its 0.109).
dim3 sum_block(int64_t slices, int64_t E, int64_t s_s, const float* src, int& groups, int& lanes, int& vec,
               int64_t& blocks) {
  groups = sum_groups(slices);
  lanes = 256 / groups > kSumLanes ? 256 / groups : kSumLanes;
  vec = E % 4 == 0 && s_s % 4 == 0 && reinterpret_cast<uintptr_t>(src) % 16 == 0 ? 4 : 1;
  const int64_t per_block = (int64_t)lanes * vec;
  blocks = (E + per_block - 1) / per_block;
  return dim3((unsigned)(groups * lanes));
}

// wgrad_finish of a few slices: a block sums the slices of kFinishCo output channels of one input channel,
// all taps, into shared memory as [co][tap], then writes them as the run of the result they are
// ([C_in][C_out][taps]: kFinishCo * taps consecutive floats). finish_kernel writes each element 4 bytes
// apart from its neighbours' taps (27 floats for k3), a partial sector per store. (Before v0.42 every
// finish was this tile with 4-byte loads, one element at a time, which walked many slices too slowly and was
// folded into slice_sums; that form, retried in v0.44 as f240aed, lost on k5 layers.) A thread reads V
// consecutive channels (16 bytes where the partials allow) of up to kFinishItems (tap, channel group) items
// per round, all their loads for a slice issued together; each element's slices are added one after another
// from 0, as slice_sums does with one group, so the bits are the same. H100 (v0.44, same call, finish_kernel
// against this, bench/tools/finishab.py): 1-3 slices 1.28-2.63x (U-Net and 3D-GAN 256->128 tf32 0.025 ->
// 0.012 ms, fp32 0.022 -> 0.010, V-Net up tf32 0.022 -> 0.008); 8 slices 0.96-1.29x, 14 slices 0.91-0.93x,
// and 0.27-0.48x at 9-17 slices over 32-64 blocks (3D-GAN k5, V-Net refine: a thread's slices are serial,
// so the form needs few of them).
constexpr int kFinishCo = 32, kFinishThreads = 256, kFinishItems = 4;
constexpr int64_t kFinishMaxTaps = 343;  // k7: 32 x 343 floats, 43 KB of shared memory
constexpr int64_t kFinishTiledMaxSlices = 4;

template <int V>
__global__ void __launch_bounds__(kFinishThreads)
    finish_kernel_tiled(const float* __restrict__ src, float* __restrict__ out, int64_t slices, int64_t s_s,
                        int taps, int64_t Co, int64_t s_t, int64_t s_ci) {
  extern __shared__ float tile[];  // [kFinishCo][taps | 1]: odd rows, so a warp's column writes hit distinct banks
  constexpr int G = kFinishCo / V;  // channel groups per tap row
  const int tp = taps | 1, items = taps * G;
  const int64_t ci = blockIdx.y, c0 = (int64_t)blockIdx.x * kFinishCo;
  const int nc = Co - c0 < kFinishCo ? (int)(Co - c0) : kFinishCo;  // Co % V == 0: whole groups
  const float* base = src + ci * s_ci + c0;
  for (int i0 = threadIdx.x; i0 < items; i0 += kFinishThreads * kFinishItems) {
    float acc[kFinishItems][V];
    const float* p[kFinishItems];
    bool ok[kFinishItems];
#pragma unroll
    for (int u = 0; u < kFinishItems; ++u) {
      const int i = i0 + u * kFinishThreads, t = i / G, g = i % G;
      ok[u] = i < items && g * V < nc;
      p[u] = base + (ok[u] ? t * s_t + g * V : 0);
#pragma unroll
      for (int e = 0; e < V; ++e) acc[u][e] = 0.f;
    }
#pragma unroll 2
    for (int64_t s = 0; s < slices; ++s) {
#pragma unroll
      for (int u = 0; u < kFinishItems; ++u) {
        if (ok[u]) add_slice<V>(acc[u], p[u] + s * s_s);
      }
    }
#pragma unroll
    for (int u = 0; u < kFinishItems; ++u) {
      if (!ok[u]) continue;
      const int i = i0 + u * kFinishThreads, t = i / G, g = i % G;
#pragma unroll
      for (int e = 0; e < V; ++e) tile[(g * V + e) * tp + t] = acc[u][e];
    }
  }
  __syncthreads();
  float* dst = out + (ci * Co + c0) * taps;
  for (int i = threadIdx.x; i < nc * taps; i += kFinishThreads) {
    const int c = i / taps, t = i - c * taps;
    dst[i] = tile[c * tp + t];
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
  if (rows <= kOneStageRows) return 0;
  const int64_t fold = channel_sums_fold(rows, c), r = rows / fold;
  const int64_t b = (r + kRowsPerBlock - 1) / kRowsPerBlock;
  return (b < 1 ? 1 : (b > kMaxBlocks ? kMaxBlocks : b)) * fold * c;
}

int channel_sums(const float* src, float* out, float* work, int64_t rows, int64_t c, cudaStream_t stream) {
  if (c == 0) return 0;
  if (rows <= kOneStageRows) {  // one launch, no workspace
    int groups, lanes, vec;
    int64_t blocks;
    const dim3 block = sum_block(rows, c, c, src, groups, lanes, vec, blocks);
    if (blocks > 0x7fffffffLL) return 1000 + (int)cudaErrorInvalidConfiguration;
    if (vec == 4)
      row_sums_kernel<4><<<(unsigned)blocks, block, 0, stream>>>(src, out, rows, c, groups);
    else
      row_sums_kernel<1><<<(unsigned)blocks, block, 0, stream>>>(src, out, rows, c, groups);
    return status();
  }
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
  if (slices <= kFinishTiledMaxSlices && taps > 1 && taps <= kFinishMaxTaps && ci <= 65535 && co < (1LL << 31)) {
    const size_t smem = (size_t)kFinishCo * (taps | 1) * sizeof(float);
    const dim3 grid((unsigned)((co + kFinishCo - 1) / kFinishCo), (unsigned)ci);
    if (co % 4 == 0 && s_s % 4 == 0 && reinterpret_cast<uintptr_t>(partials) % 16 == 0)
      finish_kernel_tiled<4><<<grid, kFinishThreads, smem, stream>>>(partials, out, slices, s_s, (int)taps, co, s_t,
                                                                     s_ci);
    else
      finish_kernel_tiled<1><<<grid, kFinishThreads, smem, stream>>>(partials, out, slices, s_s, (int)taps, co, s_t,
                                                                     s_ci);
    return status();
  }
  int groups, lanes, vec;
  int64_t blocks;
  const int64_t E = taps * ci * co;
  const dim3 block = sum_block(slices, E, s_s, partials, groups, lanes, vec, blocks);
  if (blocks > 0x7fffffffLL) return 1000 + (int)cudaErrorInvalidConfiguration;
  if (vec == 4)
    finish_kernel<4><<<(unsigned)blocks, block, 0, stream>>>(partials, out, slices, E, s_s, groups, taps, ci, co, s_t,
                                                             s_ci);
  else
    finish_kernel<1><<<(unsigned)blocks, block, 0, stream>>>(partials, out, slices, E, s_s, groups, taps, ci, co, s_t,
                                                             s_ci);
  return status();
}

}  // namespace convt3d
