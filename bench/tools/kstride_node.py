"""Step ms (the benchmark's protocol) and host enqueue ms of k < stride layers on the C++ eager node against the
Python Function, 3 alternating rounds in one process (v0.62, when the node took the stock-phase forwards of such
layers). Default layers: k1 s2 and k2 s3 whose forwards run on tap-reuse rows; with a second argument, exact-fp32
layers of 256 channels whose forwards run on stock phases.

    python bench/tools/kstride_node.py [PRECISIONS] [stock]
"""
import os
import statistics
import sys

import torch

import convt3d_cutlass as ct
from bench.timing import bench
from bench.tools.common import host_ms
from convt3d_cutlass.layouts import CL
for prec in (sys.argv[1].split(",") if len(sys.argv) > 1 else ("fp32", "tf32")):
    torch.backends.cudnn.allow_tf32 = prec != "fp32"
    layers = ((2, 64, 32, 32, 1, 2), (2, 32, 16, 32, 2, 3)) if len(sys.argv) < 3 else \
        ((16, 256, 128, 8, 1, 2), (2, 256, 128, 16, 1, 2), (2, 256, 128, 16, 2, 3))
    for (n, ci, co, sp, k, s) in layers:
        for cl in (True, False):
            x = torch.randn(n, ci, sp, sp, sp, device="cuda")
            if cl:
                x = x.to(memory_format=CL)
            x.requires_grad_()
            w = torch.randn(ci, co, k, k, k, device="cuda", requires_grad=True)
            b = torch.randn(co, device="cuda", requires_grad=True)
            gy = torch.randn(n, co, *[(sp - 1) * s + k] * 3, device="cuda")
            if cl:
                gy = gy.to(memory_format=CL)
            def step():
                x.grad = w.grad = b.grad = None
                y = ct.conv_transpose3d(x, w, b, s, 0, precision=prec)
                y.backward(gy)
                return y
            res = {True: [], False: []}
            names = {}
            for r in range(3):
                for node in (True, False):
                    os.environ["CONVT3D_EAGER_NODE"] = "1" if node else "0"
                    names[node] = type(step().grad_fn).__name__
                    res[node].append((bench(step, warmup=3, reps=30), host_ms(step)))
            med = {kk: (statistics.median(a for a, _ in v), statistics.median(h for _, h in v)) for kk, v in res.items()}
            print(f"{prec} N{n} {ci}->{co} {sp}^3 k{k} s{s} {'NDHWC' if cl else 'NCDHW'}: node {med[True][0]:.3f} ms "
                  f"(host {med[True][1]:.3f}, {names[True]}) python {med[False][0]:.3f} (host {med[False][1]:.3f}, "
                  f"{names[False]}) gain {med[False][0] / med[True][0]:.2f}", flush=True)
os.environ.pop("CONVT3D_EAGER_NODE", None)
