// Exhaustive check of cvt.rn.tf32.f32 on this GPU against round-to-nearest-even done in integers: whether
// direct::to_tf32 (csrc/direct_atoms.cuh) may use it on sm_90 (v0.54).
//   nvcc -gencode=arch=compute_90a,code=sm_90a bench/tools/tf32rn.cu -o tf32rn && ./tf32rn
#include <cstdio>
#include <cstdint>
__device__ unsigned long long cnt[6];
__global__ void k(uint32_t base) {
  uint32_t b = base + blockIdx.x * blockDim.x + threadIdx.x;
  float x = __uint_as_float(b);
  uint32_t r;
  asm("cvt.rn.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  uint32_t e = (b >> 23) & 0xff;
  if (e == 0xff) {
    if ((b & 0x7fffff) == 0) { if (r != b) atomicAdd(&cnt[0], 1ull); }             // inf kept
    else if (!isnan(__uint_as_float(r))) atomicAdd(&cnt[1], 1ull);                 // NaN stays NaN
    return;
  }
  uint32_t ref = (b + 0xfffu + ((b >> 13) & 1u)) & 0xffffe000u;
  if (r & 0x1fffu) atomicAdd(&cnt[2], 1ull);                                       // low bits left
  if (r != ref) atomicAdd(&cnt[e == 0 ? 3 : 4], 1ull);                             // denormal / normal mismatch
  atomicAdd(&cnt[5], 1ull);
}
int main() {
  for (uint64_t base = 0; base < (1ull << 32); base += (1ull << 28)) k<<<(1u << 28) / 256, 256>>>((uint32_t)base);
  unsigned long long h[6];
  cudaMemcpyFromSymbol(h, cnt, sizeof(h));
  printf("cvt.rn.tf32: inf changed %llu, NaN lost %llu, low bits set %llu, denormal mismatches %llu, normal mismatches %llu, finite checked %llu (%s)\n",
         h[0], h[1], h[2], h[3], h[4], h[5], cudaGetErrorString(cudaGetLastError()));
  return 0;
}
