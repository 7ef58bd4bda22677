// Standalone (no torch): forms of the NCDHW -> channels_last_3d layout transpose with per-tile channel sums
// (csrc/layout_transpose.cu's to_ndhwc mode, the NCDHW backward's grad_y conversion), timed against a 16-byte
// copy of the same bytes, each checked bit for bit against the first form.
//
//     nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Ibench/tools bench/tools/transpose_variants.cu -o tv
//     ./tv            # the headline's grad_y (8 x 24 x 98^3), x (8 x 48 x 96^3) and a 64-channel layer
//
// Why (v0.60): the H200 converts the headline's grad_y at 3.35 TB/s, 79% of its copy rate, with L2 at 84% and
// DRAM at 69% (ncu, v0.59); 16-byte accesses on the channels_last side did not move it. What else limits a
// CTA-per-tile transpose is the bytes each SM has in flight: a CTA's loads stop while it stores, and the static
// 64-channel tile (33 KiB) keeps six CTAs per SM whatever C is. Outcome: standalone the 16-byte loads ranked first
// (0.372 ms on the headline's grad_y against 0.455), but in the package (transposeab.py, same process, L2 flushed)
// they were level there and lost 11% on the headline's x; the sized tile with 4-byte loads landed (0.449 -> 0.411).
// Standalone rankings of memory-bound forms did not carry over to the package; A/B them there.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <vector>

#include "event_times.cuh"

// POS positions x up to CH channels per CTA, THREADS threads; BATCH loads in flight per thread; VEC: the NCDHW
// side by 16-byte loads (4 positions of a channel); DYN: the tile sized to the CTA's channels (dynamic shared
// memory) instead of CH.
template <int POS, int CH, int THREADS, int BATCH, bool VEC, bool DYN>
__global__ void __launch_bounds__(THREADS)
    to_ndhwc(const float* __restrict__ src, float* __restrict__ dst, float* __restrict__ sums, int64_t C, int64_t P) {
  constexpr int STRIDE = POS + 1;
  __shared__ float stile[DYN ? 1 : CH * STRIDE];
  extern __shared__ float dtile[];
  float* tile = DYN ? dtile : stile;
  const int64_t n = blockIdx.z, p0 = (int64_t)blockIdx.x * POS, c0 = (int64_t)blockIdx.y * CH;
  const int cb = (int)(C - c0 < CH ? C - c0 : CH), pb = (int)(P - p0 < POS ? P - p0 : POS);
  const int tid = threadIdx.x;
  const float* s = src + n * C * P;
  float* d = dst + n * C * P;
  if (!VEC) {
    constexpr int PASS = THREADS / POS;
    const int pp = tid % POS, pc = tid / POS;
    const int p = pp < pb ? pp : pb - 1;
    for (int c = pc; c < cb; c += PASS * BATCH) {
      float v[BATCH];
#pragma unroll
      for (int j = 0; j < BATCH; ++j) {
        const int cj = c + PASS * j;
        v[j] = __ldg(s + (c0 + (cj < cb ? cj : cb - 1)) * P + p0 + p);
      }
#pragma unroll
      for (int j = 0; j < BATCH; ++j)
        if (c + PASS * j < cb) tile[(c + PASS * j) * STRIDE + pp] = pp < pb ? v[j] : 0.f;
    }
  } else {
    // Quads of positions: needs P % 4 == 0 (every channel row 16-byte aligned) and a full tile's quads in range.
    constexpr int QUADS = POS / 4, PASS = THREADS / QUADS;
    const int q = tid % QUADS, pc = tid / QUADS;
    const int qq = 4 * q < pb ? q : (pb - 1) / 4;
    for (int c = pc; c < cb; c += PASS * BATCH) {
      float4 v[BATCH];
#pragma unroll
      for (int j = 0; j < BATCH; ++j) {
        const int cj = c + PASS * j;
        v[j] = __ldg(reinterpret_cast<const float4*>(s + (c0 + (cj < cb ? cj : cb - 1)) * P + p0) + qq);
      }
#pragma unroll
      for (int j = 0; j < BATCH; ++j)
        if (c + PASS * j < cb) {
          float* row = tile + (c + PASS * j) * STRIDE + 4 * q;
          const bool ok = 4 * q < pb;
          row[0] = ok ? v[j].x : 0.f;
          row[1] = ok ? v[j].y : 0.f;
          row[2] = ok ? v[j].z : 0.f;
          row[3] = ok ? v[j].w : 0.f;
        }
    }
  }
  __syncthreads();
  const int per = THREADS / cb, qc = tid % cb, qp = tid / cb;
  if (qp < per)
    for (int p = qp; p < pb; p += per) d[(p0 + p) * C + c0 + qc] = tile[qc * STRIDE + p];
  const int warp = tid / 32, lane = tid % 32;
  for (int c = warp; c < cb; c += THREADS / 32) {
    float v = 0.f;
#pragma unroll
    for (int j = 0; j < POS / 32; ++j) v += tile[c * STRIDE + lane + 32 * j];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) sums[(n * gridDim.x + blockIdx.x) * C + c0 + c] = v;
  }
}

__global__ void copy16(const float4* __restrict__ a, float4* __restrict__ b, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    b[i] = a[i];
}

struct Form {
  const char* name;
  void (*launch)(const float*, float*, float*, int64_t, int64_t, int64_t);
  int pos;
};

template <int POS, int CH, int THREADS, int BATCH, bool VEC, bool DYN>
void launch(const float* s, float* d, float* sums, int64_t n, int64_t C, int64_t P) {
  const dim3 grid((unsigned)((P + POS - 1) / POS), (unsigned)((C + CH - 1) / CH), (unsigned)n);
  const int cb = (int)(C < CH ? C : CH);
  const size_t bytes = DYN ? (size_t)cb * (POS + 1) * 4 : 0;
  auto k = to_ndhwc<POS, CH, THREADS, BATCH, VEC, DYN>;
  if (DYN) cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)(CH * (POS + 1) * 4));
  k<<<grid, THREADS, bytes>>>(s, d, sums, C, P);
}

int main() {
  const Form forms[] = {
      {"now: 128 pos, static 64-ch tile, batch 8", launch<128, 64, 256, 8, false, false>, 128},
      {"dynamic tile, batch 8", launch<128, 64, 256, 8, false, true>, 128},
      {"dynamic tile, batch 16", launch<128, 64, 256, 16, false, true>, 128},
      {"dynamic tile, 16-byte loads, batch 4", launch<128, 64, 256, 4, true, true>, 128},
      {"dynamic tile, 16-byte loads, batch 8", launch<128, 64, 256, 8, true, true>, 128},
      {"256 pos, dynamic, 16-byte loads, batch 8", launch<256, 64, 256, 8, true, true>, 256},
      {"256 pos, 512 thr, dynamic, 16-byte, batch 4", launch<256, 64, 512, 4, true, true>, 256},
  };
  struct Shape {
    const char* name;
    int64_t n, c, p;
  } shapes[] = {{"headline grad_y 8x24x98^3", 8, 24, 98LL * 98 * 98},
                {"headline x 8x48x96^3", 8, 48, 96LL * 96 * 96},
                {"medium 2x64x34^3", 2, 64, 34LL * 34 * 34}};
  for (const Shape& sh : shapes) {
    const int64_t elems = sh.n * sh.c * sh.p;
    std::vector<float> h(elems);
    uint32_t r = 12345;
    for (auto& v : h) {
      r = r * 1664525u + 1013904223u;
      v = (float)(r >> 8) / (1 << 24) - 0.5f;
    }
    float *src, *dst, *sums;
    cudaMalloc(&src, elems * 4);
    cudaMalloc(&dst, elems * 4);
    const int64_t max_sums = sh.n * ((sh.p + 127) / 128) * sh.c;
    cudaMalloc(&sums, max_sums * 4);
    cudaMemcpy(src, h.data(), elems * 4, cudaMemcpyHostToDevice);
    char* flush;
    cudaMalloc(&flush, 256 << 20);
    auto cold = [&]() { cudaMemsetAsync(flush, 0, 256 << 20); };
    std::vector<float> ref, got, ref_s, got_s;
    // The copy: the same bytes read and written by 16-byte accesses.
    {
      std::vector<float> ms;
      for (int i = 0; i < 30; ++i) {
        cold();
        auto one = event_times([&]() { copy16<<<132 * 8, 256>>>((const float4*)src, (float4*)dst, elems / 4); }, 1);
        ms.push_back(one[0]);
      }
      std::sort(ms.begin(), ms.end());
      printf("%-28s %-46s %7.3f ms %6.2f TB/s\n", sh.name, "copy (16-byte)", ms[15], 2.0 * elems * 4 / ms[15] / 1e9);
    }
    for (const Form& f : forms) {
      if (sh.p % 4 != 0 && strstr(f.name, "16-byte")) continue;
      cudaMemset(dst, 0xff, elems * 4);
      f.launch(src, dst, sums, sh.n, sh.c, sh.p);
      cudaError_t e = cudaDeviceSynchronize();
      if (e != cudaSuccess) {
        printf("%s: %s\n", f.name, cudaGetErrorString(e));
        return 1;
      }
      got.resize(elems);
      cudaMemcpy(got.data(), dst, elems * 4, cudaMemcpyDeviceToHost);
      const int64_t ns = sh.n * ((sh.p + f.pos - 1) / f.pos) * sh.c;
      got_s.resize(ns);
      cudaMemcpy(got_s.data(), sums, ns * 4, cudaMemcpyDeviceToHost);
      bool same = true;
      if (ref.empty()) {
        // The reference: a plain transpose on the host.
        for (int64_t n = 0; n < sh.n && same; ++n)
          for (int64_t c = 0; c < sh.c && same; ++c)
            for (int64_t p = 0; p < sh.p; ++p)
              if (got[(n * sh.p + p) * sh.c + c] != h[(n * sh.c + c) * sh.p + p]) {
                same = false;
                break;
              }
        ref = got;
        ref_s = got_s;
      } else {
        same = memcmp(ref.data(), got.data(), elems * 4) == 0;
        if (f.pos == forms[0].pos) same = same && memcmp(ref_s.data(), got_s.data(), ns * 4) == 0;
      }
      std::vector<float> ms;
      for (int i = 0; i < 30; ++i) {
        cold();
        auto one = event_times([&]() { f.launch(src, dst, sums, sh.n, sh.c, sh.p); }, 1);
        ms.push_back(one[0]);
      }
      std::sort(ms.begin(), ms.end());
      printf("%-28s %-46s %7.3f ms %6.2f TB/s  output %s\n", sh.name, f.name, ms[15], 2.0 * elems * 4 / ms[15] / 1e9,
             same ? "same" : "DIFFERENT");
    }
    cudaFree(src);
    cudaFree(dst);
    cudaFree(sums);
    cudaFree(flush);
  }
  return 0;
}
