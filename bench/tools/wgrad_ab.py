"""Same-machine A/B of the Hopper grad_weight kernel (csrc/direct_wgrad_sm90.cuh) against a git revision's,
on every sweep layer whose grad_weight the selector gives it (tf32 and 3xtf32), without torch.

    python bench/tools/wgrad_ab.py OUTDIR [REV [same]]   # builds OUTDIR/wgab_new, wgab_old (REV, default
                                                         # main), wgab_newleg; `same`: old runs the new
                                                         # slices (and no newleg, which would be new)
    OUTDIR/wgab_old; OUTDIR/wgab_new; ...           # on the GPU machine, alternating rounds

No GPU needed to build. Each executable runs every (layer, kernel) pair 30 times on device-initialised
inputs (CUDA events, L2 not flushed: the inputs of the large layers exceed it) and prints the median and a
hash of the partial sums, which start as NaN bits: both revisions must print the same hash where they
compute the same sums in the same order. The old executable runs the old slice rule
(``wgmma_wgrad_slices(ranges=False)``, whole depth segments): where the new rule's ranges differ (the
warp-specialized rows since v0.34) the hashes differ too, and the times leave out the sum over slices.
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
#include <algorithm>
#include <cstdint>
#include <cstdio>
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
  printf("%-40s %s median %.4f ms (min %.4f) hash %016llx\n", label, VARIANT, ms[15], ms[0], (unsigned long long)hash);
  cudaFree(x); cudaFree(gy); cudaFree(part);
}
int main() {
'''


def cases():
    seen = []
    for c in SWEEP:
        p = Problem(c.n, c.c_in, c.c_out, c.spatial, c.k, c.stride, c.padding, c.output_padding)
        for prec in ("tf32", "3xtf32"):
            k = selector.select_config(p, "wgrad", prec, capability=(9, 0))
            if not k.name.startswith("wgmma_wgrad"):
                continue
            slices = direct.wgmma_wgrad_slices(p, k.block, k.bn, k.warpgroups, k.stages, 132, split=k.split)
            legacy = direct.wgmma_wgrad_slices(p, k.block, k.bn, k.warpgroups, k.stages, 132, split=k.split,
                                               ranges=False)
            args = f"{k.ksize}, {k.block[1]}, {k.block[2]}, {k.bn}, {k.warpgroups}, {k.stages}" + (", true" if k.split else "")
            seen.append((f"{c.name}/{k.name}", args, c, (slices, legacy)))
    return seen


def main(out, rev, same=False):
    os.makedirs(os.path.join(out, "old"), exist_ok=True)
    with open(os.path.join(out, "old", "direct_wgrad_sm90.cuh"), "w") as f:
        f.write(subprocess.run(["git", "show", f"{rev}:csrc/direct_wgrad_sm90.cuh"], cwd=ROOT, check=True,
                               capture_output=True, text=True).stdout)
    body = [MAIN]
    for label, args, c, slices in cases():
        d, h, w = c.spatial
        body.append(f'  one<direct90::WgmmaWgradKernel<{args}>>("{label}", {c.n}, {c.c_in}, {c.c_out}, {d}, {h}, {w}, '
                    f'{c.k}, {c.stride}, {c.padding}, {c.output_padding}, OLD ? {slices[0 if same else 1]} : {slices[0]});')
    body.append("  return 0;\n}\n")
    src = os.path.join(out, "wgrad_ab.cu")
    with open(src, "w") as f:
        f.write("\n".join(body))
    cl = os.path.join(os.path.dirname(cutlass_library.__file__), "source")
    procs = []
    # newleg: the working tree's kernel on the old slice rule (what the rule alone changes); with `same`
    # it would be wgab_new again.
    variants = [("new", os.path.join(ROOT, "csrc")), ("old", os.path.join(out, "old"))]
    if not same:
        variants.append(("newleg", os.path.join(ROOT, "csrc")))
    for name, inc in variants:
        cmd = ["nvcc", "-std=c++17", "-O3", "--expt-relaxed-constexpr", "-gencode=arch=compute_90a,code=sm_90a",
               "-I", inc, "-I", os.path.join(ROOT, "csrc"), "-I", os.path.dirname(os.path.abspath(__file__)),
               "-I", os.path.join(cl, "include"),
               "-I", os.path.join(cl, "tools", "util", "include"), f'-DVARIANT="{name}"', f"-DOLD={int(name != 'new')}", src, "-o",
               os.path.join(out, f"wgab_{name}")]
        procs.append(subprocess.Popen(cmd))
    if any(p.wait() != 0 for p in procs):
        raise SystemExit("wgrad_ab: nvcc failed")
    print("built", ", ".join(f"wgab_{name}" for name, _ in variants), "in", out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/wgrad_ab", sys.argv[2] if len(sys.argv) > 2 else "main",
         len(sys.argv) > 3 and sys.argv[3] == "same")
