// The headline's Hopper grad_weight kernel (wgrad_kernel<3, 8, 16, 48, 4, 2>, NDHWC) timed with parts of it
// compiled out, for the share of each: NOSTAGE (no x transpose, no halo rounding), NOMMA (no wgmma loop),
// NOTMA (no TMA loads or waits: shared memory holds whatever it held). Built by wgrad_parts.py, which writes
// the variant header from csrc/direct_wgrad_sm90.cuh. The variants' results are garbage; only the times matter.
// Any argument (`wg_full ncdhw`) runs the kernel's NCDHW-x instantiation instead (x read in place).
#include <algorithm>
#include <cstdio>
#include <vector>
#include "direct_wgrad_sm90_variant.cuh"
#include "event_times.cuh"
int main(int argc, char**) {
  using K = convt3d::direct90::WgmmaWgradKernel<3, 8, 16, 48, 4, 2>;
  convt3d::DirectWgradLaunch p;
  p.N = 8; p.Di = p.Hi = p.Wi = 96; p.Ci = 48; p.Do = p.Ho = p.Wo = 98; p.Co = 24; p.k = 3; p.stride = 1; p.pad = 0;
  p.x_ncdhw = argc > 1;
  p.slices = 1152;  // direct.wgmma_wgrad_slices(HEADLINE, (1, 8, 16), 48, 4, 2, 132)
  size_t nx = (size_t)8 * 96 * 96 * 96 * 48, ng = (size_t)8 * 98 * 98 * 98 * 24, np = (size_t)1152 * 27 * 48 * 24;
  float *x, *gy, *part;
  cudaMalloc(&x, nx * 4); cudaMalloc(&gy, ng * 4); cudaMalloc(&part, np * 4);
  std::vector<float> h(std::max(nx, ng));
  for (size_t i = 0; i < h.size(); ++i) h[i] = (float)((i * 2654435761u) % 1000) / 1000.f - 0.5f;
  cudaMemcpy(x, h.data(), nx * 4, cudaMemcpyHostToDevice); cudaMemcpy(gy, h.data(), ng * 4, cudaMemcpyHostToDevice);
  p.x = x; p.gy = gy; p.partials = part;
  int code = K::run(p);
  cudaDeviceSynchronize();
  if (code != 0 || cudaGetLastError() != cudaSuccess) { printf("run failed %d\n", code); return 1; }
  const std::vector<float> ms = event_times([&] { K::run(p); });
  printf("%s%s: median %.3f ms (min %.3f, max %.3f)\n", VARIANT, p.x_ncdhw ? " ncdhw" : "", ms[15], ms[0], ms[29]);
  return 0;
}
