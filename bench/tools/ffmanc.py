"""An FFMA row's NC kernel (csrc/ffma_fprop.cuh, csrc/ffma_wgrad.cuh: NCDHW operands in place) against its
channels_last_3d kernel on sweep layers, kernel times in one process (CUDA events, L2 flushed, median; each layout's
tensors as they would arrive, nothing converted), alternated over ROUNDS, the NC result checked against the
channels_last_3d one. The ratio NC / CL compares a build of the NC kernel with another through the unchanged CL
kernel (v0.84: ncu put the grad_input NC kernel's excess in fetch and dispatch stalls; its k loop's unroll,
CUDAFLAGS=-DCONVT3D_FPROP_NC_KQ_UNROLL=N, and grad_weight's, -DCONVT3D_WGRAD_NC_KQ_UNROLL=N).

    python bench/tools/ffmanc.py LAYER[,LAYER...] [ROUNDS] [grad_input|grad_weight]
"""
import statistics
import sys

import torch

from bench.shapes import SWEEP
from bench.timing import bench
from convt3d_cutlass import launch
from convt3d_cutlass.layouts import CL

names = sys.argv[1].split(",")
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
pass_ = sys.argv[3] if len(sys.argv) > 3 else "grad_input"
# grad_input: the FFMA row forced; grad_weight: the selector's row (the FFMA 64-row tile on the 64-channel layers).
ROW = "ffma_fprop_fp32_128x64x32_s3" if pass_ == "grad_input" else None
print(f"{pass_} ({ROW or 'selector'}): ms, median of {rounds} rounds; NC / CL above 1: the NC kernel slower")
for c in (c for c in SWEEP if c.name in names):
    p = c.problem()
    gy = torch.randn((c.n, c.c_out) + p.out_spatial, device="cuda")
    gy_cl = gy.contiguous(memory_format=CL)
    if pass_ == "grad_input":
        w = torch.randn(c.c_in, c.c_out, c.k, c.k, c.k, device="cuda") / (c.c_out * c.k ** 3) ** 0.5
        nc = lambda: launch.grad_input(gy, w, p, "fp32", ROW, ncdhw=True)
        cl = lambda: launch.grad_input(gy_cl, w, p, "fp32", ROW)
    else:
        x = torch.randn((c.n, c.c_in) + tuple(c.spatial), device="cuda")
        x_cl = x.contiguous(memory_format=CL)
        nc = lambda: launch.grad_weight(gy, x, p, "fp32")
        cl = lambda: launch.grad_weight(gy_cl, x_cl, p, "fp32")
    a, b = nc(), cl()
    err = ((a - b).norm() / b.norm()).item()
    assert err < 1e-5, (c.name, err)
    t = {"nc": [], "cl": []}
    for r in range(rounds):
        for side in (("nc", "cl") if r % 2 == 0 else ("cl", "nc")):
            t[side].append(bench(nc if side == "nc" else cl))
    m = {k: statistics.median(v) for k, v in t.items()}
    print(f"{c.name:12s} NC {m['nc']:.4f}  CL {m['cl']:.4f}  NC/CL {m['nc'] / m['cl']:.3f}  (rel diff {err:.1e})",
          flush=True)
