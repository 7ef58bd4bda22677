"""A small layer's eager step split by the host (v0.41): the forward (grad mode on, building the graph) and the
backward (y.backward(gy), the engine and the nodes up to their last launch), each timed on the host with an
idle GPU at entry, ours against cuDNN's, and PyTorch's own floor for a graph of one node (an elementwise op
on the same x and grad_y sizes, whose kernels take a few microseconds of host time).

    python bench/tools/hostsplit.py unet3d-k2,unet3d-dec1 [NDHWC,NCDHW] [REPS]
"""
import statistics
import sys
import time

import torch

import convt3d_cutlass as ct
from bench.runner import CaseTensors, cudnn_mode
from bench.shapes import HEADLINE, SWEEP
from bench.tools.hostgap import host_only
import torch.nn.functional as F

names = sys.argv[1].split(",")
layouts = sys.argv[2].split(",") if len(sys.argv) > 2 else ["NDHWC", "NCDHW"]
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 50
cases = {c.name: c for c in list(SWEEP) + [HEADLINE]}


def host_ms(fn):
    """Median host ms of fn() entered with an idle GPU (synchronised before each call)."""
    return host_only(fn, reps)


print(f"{'layer':12s} {'layout':6s} {'side':6s} {'forward':>8s} {'backward':>8s} {'step':>8s}  (host ms, medians of {reps})")
for nm in names:
    c = cases[nm]
    for lay in layouts:
        t = CaseTensors(c, lay == "NDHWC")
        xg, wg, bg = (t.x.detach().requires_grad_(), t.w.detach().requires_grad_(), t.b.detach().requires_grad_())
        sides = {
            "ours": lambda: ct.conv_transpose3d(xg, wg, bg, c.stride, c.padding, c.output_padding, precision="tf32"),
            "cuDNN": lambda: F.conv_transpose3d(xg, wg, bg, c.stride, c.padding, c.output_padding),
            "floor": lambda: torch.mul(xg, 2.0),
        }
        for side, fwd in sides.items():
            gy = t.gy if side != "floor" else torch.randn_like(t.x)
            held = {}

            def forward():
                xg.grad = wg.grad = bg.grad = None
                held["y"] = fwd()

            def backward():
                held["y"].backward(gy)

            def step():
                xg.grad = wg.grad = bg.grad = None
                fwd().backward(gy)

            with cudnn_mode(True, True):
                f_ms = host_ms(forward)
                bs = []
                for _ in range(reps):
                    forward()
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    backward()
                    bs.append(1e3 * (time.perf_counter() - t0))
                torch.cuda.synchronize()
                s_ms = host_ms(step)
            print(f"{nm:12s} {lay:6s} {side:6s} {f_ms:8.3f} {statistics.median(bs):8.3f} {s_ms:8.3f}", flush=True)
        del t
