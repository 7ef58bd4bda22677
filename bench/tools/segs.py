"""Headline grad_weight on the wgmma row for several depth-segment counts (slices = columns x segs)."""
import torch
from convt3d_cutlass import _extension
_extension.compiled_kernels()
from convt3d_cutlass.layouts import CL, ndhwc
from convt3d_cutlass.problem import Problem
from convt3d_cutlass import direct
from convt3d_cutlass.kernel_table import BY_NAME
from bench.timing import bench
for case in [(8, 48, 24, (96, 96, 96), 3, 1, 0), (1, 32, 8, (128, 128, 128), 3, 1, 1), (4, 64, 32, (16, 64, 64), 3, 1, 1)]:
    n, ci, co, sp, k, s, p = case
    prob = Problem(*case)
    name = "wgmma_wgrad_tf32_8x16_k3_n48_wg4_s2" if ci == 48 else "wgmma_wgrad_tf32_8x16_k3_n32_wg4_s2"
    kc = BY_NAME[name]
    x = ndhwc(torch.randn(n, ci, *sp, device="cuda").to(memory_format=CL))
    gy = ndhwc(torch.randn((n, co) + prob.out_spatial, device="cuda").to(memory_format=CL))
    cols = n * -(-sp[1] // 8) * -(-sp[2] // 16)
    pol = direct.wgmma_wgrad_slices(prob, kc.block, kc.bn, kc.warpgroups, kc.stages, 132) // cols
    for segs in (1, 2, 3, 4, 6, 8):
        part = torch.empty((cols * segs, 27, ci, co), device="cuda")
        f = lambda: torch.ops.convt3d_cutlass.direct_wgrad(name, x, gy, part, 3, s, p, 1)
        g = lambda: (f(), part.sum(0))
        print(f"{case} segs {segs}: kernel {bench(f, reps=15):.3f} ms, with sum {bench(g, reps=15):.3f} ms"
              f"{'  <- policy' if segs == pol else ''}")
