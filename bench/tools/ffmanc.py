"""The FFMA grad_input row (csrc/ffma_fprop.cuh) in its NC mode against its channels_last_3d kernel on sweep layers,
kernel times in one process (CUDA events, L2 flushed, median; each layout's grad_y as it would arrive, nothing
converted), alternated over ROUNDS, with the NC result checked against the channels_last_3d one. The ratio NC / CL
compares a build of the NC kernel with another through the unchanged CL kernel (v0.84: ncu put the NC kernel's
excess in dispatch and fetch stalls, not instructions).

    python bench/tools/ffmanc.py LAYER[,LAYER...] [ROUNDS]
"""
import statistics
import sys

import torch

from bench.shapes import SWEEP
from bench.timing import bench
from convt3d_cutlass import launch
from convt3d_cutlass.layouts import CL

ROW = "ffma_fprop_fp32_128x64x32_s3"
names = sys.argv[1].split(",")
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
print(f"{ROW}: ms, median of {rounds} rounds; NC / CL above 1: the NC kernel slower")
for c in (c for c in SWEEP if c.name in names):
    p = c.problem()
    gy = torch.randn((c.n, c.c_out) + p.out_spatial, device="cuda")
    gy_cl = gy.contiguous(memory_format=CL)
    w = torch.randn(c.c_in, c.c_out, c.k, c.k, c.k, device="cuda") / (c.c_out * c.k ** 3) ** 0.5
    nc = lambda: launch.grad_input(gy, w, p, "fp32", ROW, ncdhw=True)
    cl = lambda: launch.grad_input(gy_cl, w, p, "fp32", ROW)
    a, b = nc(), cl()
    err = ((a - b).norm() / b.norm()).item()
    assert a.is_contiguous() and err < 1e-6, (c.name, err)
    t = {"nc": [], "cl": []}
    for r in range(rounds):
        for side in (("nc", "cl") if r % 2 == 0 else ("cl", "nc")):
            t[side].append(bench(nc if side == "nc" else cl))
    m = {k: statistics.median(v) for k, v in t.items()}
    print(f"{c.name:12s} NC {m['nc']:.4f}  CL {m['cl']:.4f}  NC/CL {m['nc'] / m['cl']:.3f}  (rel diff {err:.1e})",
          flush=True)
