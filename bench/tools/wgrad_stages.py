"""A/B of the warp-specialized Hopper grad_weight (csrc/direct_wgrad_sm90.cuh, PW) at two and three stages
(S = 3: TMA two steps ahead, two x^T buffers), on every sweep layer whose tf32 grad_weight the selector
gives a k3 PW row, in one executable without torch.

    python bench/tools/wgrad_stages.py OUTDIR [ROUNDS]   # builds OUTDIR/wgstages, wgstages_a1 (no GPU)
    OUTDIR/wgstages; OUTDIR/wgstages_a1                  # on the GPU machine

Rounds alternate the two forms (ABBA); each run is the median of 30 CUDA-event times on device-initialised
inputs (L2 not flushed), and prints a hash of the partial sums (NaN bits before the run): both forms add
the same products in the same order, so the hashes must be equal. A form whose shared memory does not fit
the layer prints "skip".
"""
import os
import subprocess
import sys

import cutlass_library

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(ROOT, "python"), ROOT]

from bench.shapes import SWEEP  # noqa: E402
from convt3d_cutlass import direct, selector  # noqa: E402
from convt3d_cutlass.problem import Problem  # noqa: E402

MAIN = r'''
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "direct_wgrad_sm90.cuh"
#include "event_times.cuh"
using namespace convt3d;
__global__ void fill(float* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    p[i] = (float)(((uint32_t)i * 2654435761u + seed) % 2001u) / 1000.f - 1.f;
}
template <class K>
void one(const char* label, int n, int ci, int co, int d, int h, int w, int k, int s, int pad, int op, int slices) {
  DirectWgradLaunch p;
  p.N = n; p.Di = d; p.Hi = h; p.Wi = w; p.Ci = ci; p.Co = co; p.k = k; p.stride = s; p.pad = pad;
  p.Do = (d - 1) * s - 2 * pad + k + op; p.Ho = (h - 1) * s - 2 * pad + k + op; p.Wo = (w - 1) * s - 2 * pad + k + op;
  p.slices = slices;
  if (K::can_implement(p) != 0) { printf("%-44s skip (can_implement %d)\n", label, K::can_implement(p)); return; }
  size_t nx = (size_t)n * d * h * w * ci, ng = (size_t)n * p.Do * p.Ho * p.Wo * co, np = (size_t)slices * k * k * k * ci * co;
  float *x, *gy, *part;
  cudaMalloc(&x, nx * 4); cudaMalloc(&gy, ng * 4); cudaMalloc(&part, np * 4);
  fill<<<1024, 256>>>(x, nx, 1u); fill<<<1024, 256>>>(gy, ng, 7u);
  cudaMemset(part, 0xff, np * 4);
  p.x = x; p.gy = gy; p.partials = part;
  int code = K::run(p);
  cudaDeviceSynchronize();
  if (code != 0 || cudaGetLastError() != cudaSuccess) { printf("%s run failed %d\n", label, code); exit(1); }
  std::vector<uint32_t> hp(np);
  cudaMemcpy(hp.data(), part, np * 4, cudaMemcpyDeviceToHost);
  uint64_t hash = 1469598103934665603ull;
  for (uint32_t v : hp) hash = (hash ^ v) * 1099511628211ull;
  const std::vector<float> ms = event_times([&] { K::run(p); });
  printf("%-44s median %.4f ms (min %.4f) hash %016llx\n", label, ms[15], ms[0], (unsigned long long)hash);
  cudaFree(x); cudaFree(gy); cudaFree(part);
}
int main() {
'''


def cases():
    """(label, template arguments without S, case, slices) of each sweep layer on a k3 PW row (tf32)."""
    seen = []
    for c in SWEEP:
        p = Problem(c.n, c.c_in, c.c_out, c.spatial, c.k, c.stride, c.padding, c.output_padding)
        k = selector.select_config(p, "wgrad", "tf32", capability=(9, 0))
        if not (k.name.startswith("wgmma_wgrad") and k.ksize == 3 and
                direct.wgmma_wgrad_pw(k.ksize, p.stride, k.warpgroups, k.stages, k.split)):
            continue
        slices = direct.wgmma_wgrad_slices(p, k.block, k.bn, k.warpgroups, k.stages, 132, split=k.split)
        seen.append((f"{c.name}/{k.name}", f"{k.ksize}, {k.block[1]}, {k.block[2]}, {k.bn}, {k.warpgroups}",
                     c, slices))
    return seen


def main(out, rounds):
    os.makedirs(out, exist_ok=True)
    body = [MAIN]
    for r in range(rounds):
        for label, args, c, slices in cases():
            d, h, w = c.spatial
            order = (2, 3) if r % 2 == 0 else (3, 2)
            for st in order:
                body.append(f'  one<direct90::WgmmaWgradKernel<{args}, {st}>>("{label} S{st}", {c.n}, {c.c_in}, '
                            f'{c.c_out}, {d}, {h}, {w}, {c.k}, {c.stride}, {c.padding}, {c.output_padding}, '
                            f'{slices});')
    body.append("  return 0;\n}\n")
    src = os.path.join(out, "wgrad_stages.cu")
    with open(src, "w") as f:
        f.write("\n".join(body))
    cl = os.path.join(os.path.dirname(cutlass_library.__file__), "source")
    procs = []
    # wgstages_a1: S = 3 issuing one step ahead, as soon as a step's slots are free (step v - 3's MMAs retired),
    # i.e. right after staging the step before: the deeper ring without loads in flight during staging.
    for name, defs in (("wgstages", []), ("wgstages_a1", ["-DCONVT3D_WGRAD_AHEAD=1"])):
        cmd = ["nvcc", "-std=c++17", "-O3", "--expt-relaxed-constexpr", "-gencode=arch=compute_90a,code=sm_90a",
               "-I", os.path.join(ROOT, "csrc"), "-I", os.path.dirname(os.path.abspath(__file__)),
               "-I", os.path.join(cl, "include"), "-I", os.path.join(cl, "tools", "util", "include"),
               *defs, src, "-o", os.path.join(out, name)]
        procs.append(subprocess.Popen(cmd))
    if any(p.wait() != 0 for p in procs):
        raise SystemExit("wgrad_stages: nvcc failed")
    print("built wgstages, wgstages_a1 in", out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/wgrad_stages", int(sys.argv[2]) if len(sys.argv) > 2 else 4)
