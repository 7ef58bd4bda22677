"""Exact-fp32 grad_input for ncu, ours (the selector's row, or argv's config) beside cuDNN's (its conv3d over
grad_y, cudnn.benchmark on, TF32 off), channels_last_3d, one launch each inside NVTX ranges 'ours' and 'cudnn'
(v0.57, Next 16: where the stock SIMT tile's 54-62% of the FP32 rate goes against cuDNN's 65-76%). LAYOUT NCDHW
(v0.84): grad_y and grad_x in packed NCDHW, ours in place where the row can (the FFMA row's NC mode), else converted.

    ncu --clock-control none --nvtx --nvtx-include ours/ --nvtx-include cudnn/ --section ... \\
        python bench/tools/ncufp32gi.py CASE[,CASE...] [CONFIG] [LAYOUT]
"""
import sys

import torch
import torch.nn.functional as F

from bench.shapes import SWEEP
from convt3d_cutlass import launch
from convt3d_cutlass.layouts import CL

torch.backends.cudnn.benchmark = True
torch.backends.cudnn.allow_tf32 = False
names = sys.argv[1].split(",")
cfg = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None
ncdhw = len(sys.argv) > 3 and sys.argv[3] == "NCDHW"
work = []
for c in (c for c in SWEEP if c.name in names):
    p = c.problem()
    gy = torch.randn((c.n, c.c_out) + p.out_spatial, device="cuda")
    gy = gy if ncdhw else gy.to(memory_format=CL)
    w = torch.randn(c.c_in, c.c_out, c.k, c.k, c.k, device="cuda") * 0.1
    ours = lambda gy=gy, w=w, p=p: launch.grad_input(gy, w, p, "fp32", cfg, ncdhw=ncdhw)
    theirs = lambda gy=gy, w=w, c=c: F.conv3d(gy, w, None, c.stride, c.padding)
    for _ in range(3):  # cuDNN's search and our plans outside the ranges
        a, b = ours(), theirs()
    torch.cuda.synchronize()
    # conv3d over the padded-out grad_y gives grad_x's extent only where output_padding is 0
    same = a.shape == b.shape and (a - b).abs().max().item() <= 1e-3 * b.abs().max().item()
    print(c.name, tuple(a.shape), "agree" if same else "differ", flush=True)
    work.append((c.name, ours, theirs))
for name, ours, theirs in work:
    torch.cuda.nvtx.range_push("ours")
    ours()
    torch.cuda.nvtx.range_pop()
    torch.cuda.nvtx.range_push("cudnn")
    theirs()
    torch.cuda.nvtx.range_pop()
    torch.cuda.synchronize()
    print("profiled", name, flush=True)
