// Host cost of a kernel launch against the size of its parameters.
#include <chrono>
#include <cstdio>
#include <cuda_runtime.h>
template <int B> struct P { char b[B]; };
template <int B> __global__ void k(const __grid_constant__ P<B> p, int* out) { if (threadIdx.x == 0 && p.b[0] == 7) out[0] = 1; }
template <int B> double bench(int* out, cudaStream_t s) {
  P<B> p{}; 
  for (int i = 0; i < 200; ++i) k<B><<<132, 128, 0, s>>>(p, out);
  cudaStreamSynchronize(s);
  double best = 1e9;
  for (int r = 0; r < 5; ++r) {
    auto t0 = std::chrono::high_resolution_clock::now();
    for (int i = 0; i < 500; ++i) k<B><<<132, 128, 0, s>>>(p, out);
    auto t1 = std::chrono::high_resolution_clock::now();
    cudaStreamSynchronize(s);
    double us = std::chrono::duration<double, std::micro>(t1 - t0).count() / 500;
    best = us < best ? us : best;
  }
  return best;
}
int main() {
  int* out; cudaMalloc(&out, 4); cudaStream_t s; cudaStreamCreate(&s);
  printf("params   64 B: %.2f us/launch\n", bench<64>(out, s));
  printf("params 1024 B: %.2f us/launch\n", bench<1024>(out, s));
  printf("params 2048 B: %.2f us/launch\n", bench<2048>(out, s));
  printf("params 3968 B: %.2f us/launch\n", bench<3968>(out, s));
  printf("params 4224 B: %.2f us/launch\n", bench<4224>(out, s));
  printf("params 8192 B: %.2f us/launch\n", bench<8192>(out, s));
  printf("err %s\n", cudaGetErrorString(cudaGetLastError()));
}
