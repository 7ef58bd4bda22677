"""The Hopper implicit-GEMM grad_weight (csrc/igemm_wgrad_sm90.cuh) at several slice counts, per layer: GPU ms
of the kernel and the finish (launch._finish) together, and the partial sums' MB, with x channels_last_3d and, on
the swapped rows, NCDHW (read in place). The partial sums are the backward's largest temporary on the small
strided layers (v0.28), so the question is how few slices cost little.

    python bench/tools/igwslices.py [LAYERS [REPS [CONFIG]]]

Each count is timed by gpu_only (launches queued behind a busy GPU, median of REPS) in two passes over the
counts, the second in reverse order; printed: the mean of the two medians, and the result's relative L2 error
against the selector's count (the slices are summed in a fixed order, so any count is reproducible). CONFIG
forces a row instead of the selector's tf32 pick.
"""
import sys

import torch

from bench.tools.common import layer_tensors, slice_counts
from convt3d_cutlass import _extension, direct, launch
from convt3d_cutlass.layouts import ndhwc

names = (sys.argv[1] if len(sys.argv) > 1 else "vnet-up").split(",")
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 15
config = sys.argv[3] if len(sys.argv) > 3 else None
ops = torch.ops.convt3d_cutlass
COUNTS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16)

print(f"{'layer':12s} {'kernel':36s} {'x':5s} {'slices':>6s} {'MB':>7s} {'gpu ms':>8s} {'vs plan':>7s} {'rel':>8s}")
for name in names:
    p, x, w, gy = layer_tensors(name)
    plan = launch._plan(p, "wgrad", "tf32", config, x.device, None)
    if plan.k.family != "igemm":
        print(f"{name:12s} {plan.name}: not an implicit-GEMM grad_weight row")
        continue
    counts = sorted(set(COUNTS) | {plan.slices})
    G = ndhwc(gy)
    layouts = [("CL", ndhwc(x), False)]
    xn = x.contiguous()
    if direct.wgrad_reads_ncdhw(plan.k, xn):
        layouts.append(("NCDHW", xn, True))
    for lname, X, x_ncdhw in layouts:
        def run(s):
            parts = torch.empty((s, p.k ** 3, p.c_in, p.c_out), device="cuda")
            return lambda: (ops.direct_wgrad(plan.name, X, G, parts, p.k, p.stride, p.padding, 1, x_ncdhw, False),
                            launch._finish(parts, p))[1]

        timed = slice_counts(run, counts, plan.slices, reps)
        base = timed[plan.slices][0]
        for s in counts:
            ms, rel = timed[s]
            mark = " <- selector's count" if s == plan.slices else ""
            mb = 4 * s * p.k ** 3 * p.c_in * p.c_out / 1e6
            print(f"{name:12s} {plan.name:36s} {lname:5s} {s:6d} {mb:7.1f} {ms:8.4f} {ms / base:7.3f} {rel:8.1e}{mark}",
                  flush=True)
    del x, w, gy
    torch.cuda.empty_cache()
print(f"num_sms {_extension.num_sms(0)}; the selector's counts: direct.igemm_wgrad_slices")
