"""Exact-fp32 grad_weight on the FFMA implicit GEMM (csrc/ffma_wgrad.cuh) at several slice counts, per layer:
GPU ms of the kernel and the finish (launch._finish) together, and the partial sums' MB. The slices are the
peak memory's largest temporary on the small strided layers' steps (v0.43), so the question is how few of
them cost nothing.

    python bench/tools/ffmaslices.py [LAYERS [REPS]]

Each count is timed by gpu_only (launches queued behind a busy GPU, median of REPS) in two passes over the
counts, the second in reverse order; printed: the mean of the two medians, and the result's relative L2 error
against the selector's count (the slices are summed in a fixed order, so any count is reproducible). Where the
selector takes the tile's stream-K twin (v0.45), the split-K row at its split_k_slices count stands in.
"""
import math
import sys

import torch

from bench.tools.common import ffma_wgrad_layers, slice_counts
from convt3d_cutlass import _extension, launch
from convt3d_cutlass.layouts import ndhwc

names = (sys.argv[1] if len(sys.argv) > 1 else
         "unet3d-dec1,gan3d-g1,vnet-up,unet3d-dec2,medium,unet3d-dec3,gan3d-g3,unet3d-k2,vnet-refine").split(",")
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 15
ops = torch.ops.convt3d_cutlass
COUNTS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64, 96, 128, 192, 264)

print(f"{'layer':12s} {'kernel':32s} {'slices':>6s} {'MB':>7s} {'gpu ms':>8s} {'vs plan':>7s} {'rel':>8s}")
for name, p, x, w, gy, plan in ffma_wgrad_layers(names, 32):
    if plan.k.streamk:  # its split-K twin's counts (the stream-K row has one slot: ffmastreamk.py compares them)
        plan = launch._plan(p, "wgrad", "fp32", plan.name[:-len("_sk")], x.device, None)
    m, n, kk = p.gemm("wgrad")
    cap = max(1, math.ceil(kk / plan.k.tile[2]) // 8)
    counts = sorted({c for c in COUNTS if c <= cap} | {plan.slices})
    X, G = ndhwc(x), ndhwc(gy)

    def run(s):
        parts = torch.empty((s, p.c_in, p.k, p.k, p.k, p.c_out), device="cuda")
        return lambda: (ops.wgrad(plan.name, X, G, parts, [p.padding] * 3, [p.stride] * 3), launch._finish(parts, p))[1]

    timed = slice_counts(run, counts, plan.slices, reps)
    base = timed[plan.slices][0]
    for s in counts:
        ms, rel = timed[s]
        mark = " <- selector's split-K count" if s == plan.slices else ""
        print(f"{name:12s} {plan.name:32s} {s:6d} {4 * s * m * n / 1e6:7.1f} {ms:8.4f} {ms / base:7.3f} {rel:8.1e}{mark}",
              flush=True)
    del x, w, gy
    torch.cuda.empty_cache()
print(f"num_sms {_extension.num_sms(0)}; the selector's counts: selector.split_k_slices")
