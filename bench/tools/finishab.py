"""The backward's sums (v0.42) against the torch reductions they replaced, per sweep layer: GPU and host ms.

    python bench/tools/finishab.py [PRECISIONS [LAYERS [REPS]]]

finish: grad_weight's partial slices in the layout and number the layer's plan gives them, summed and
relaid by wgrad_finish in one launch (launch._finish) against torch's sum over the slices followed by
wgrad_finish of the one summed slice (the v0.41 form wherever the slices were many or the tiles few).
rows: the bias gradient from the [SMs, C_out] partial rows of grad_input's kernel, layouts.row_sums
against torch's sum(0). gpu = gpu_only (launches queued behind a busy GPU), host = host_only (idle GPU
at entry); medians of REPS. The results must agree to float32 rounding (rel printed).
"""
import sys

import torch

from bench.shapes import HEADLINE, SWEEP
from bench.tools.hostgap import gpu_only, host_only
from convt3d_cutlass import launch
from convt3d_cutlass.layouts import row_sums
from convt3d_cutlass.problem import Problem

precs = sys.argv[1].split(",") if len(sys.argv) > 1 else ["tf32"]
cases = {c.name: c for c in (HEADLINE, *SWEEP)}
names = sys.argv[2].split(",") if len(sys.argv) > 2 and sys.argv[2] else list(cases)
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 20
ops = torch.ops.convt3d_cutlass


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def old_finish(partials, p):
    gw = torch.empty((p.c_in, p.c_out, p.k, p.k, p.k), device=partials.device)
    ops.wgrad_finish(partials.sum(0, keepdim=True), gw)
    return gw


print(f"{'layer':12s} {'prec':6s} {'slices':>6s} {'MB':>6s} | finish gpu new/old    host new/old   rel     "
      f"| rows gpu new/old      host new/old   rel")
for prec in precs:
    for nm in names:
        c = cases[nm]
        p = Problem(c.n, c.c_in, c.c_out, tuple(c.spatial), c.k, c.stride, c.padding, c.output_padding)
        plan = launch._plan(p, "wgrad", prec, None, torch.device("cuda"), None)
        t = p.k ** 3
        shape = ((plan.slices, t, p.c_in, p.c_out) if plan.tap_reuse
                 else (plan.slices, p.c_in, p.k, p.k, p.k, p.c_out))
        partials = torch.randn(shape, device="cuda")
        new_f, old_f = (lambda: launch._finish(partials, p)), (lambda: old_finish(partials, p))
        fr = rel(new_f(), old_f())
        fg = [gpu_only(f, reps) for f in (new_f, old_f)]
        fh = [host_only(f, reps) for f in (new_f, old_f)]
        sums = torch.randn(torch.cuda.get_device_properties(0).multi_processor_count, p.c_out, device="cuda")
        new_r, old_r = (lambda: row_sums(sums)), (lambda: sums.sum(0))
        rr = rel(new_r(), old_r())
        rg = [gpu_only(f, reps) for f in (new_r, old_r)]
        rh = [host_only(f, reps) for f in (new_r, old_r)]
        print(f"{nm:12s} {prec:6s} {plan.slices:6d} {partials.numel() * 4 / 1e6:6.1f} | "
              f"{fg[0]:7.4f}/{fg[1]:7.4f} {fh[0]:6.4f}/{fh[1]:6.4f} {fr:7.1e} | "
              f"{rg[0]:7.4f}/{rg[1]:7.4f} {rh[0]:6.4f}/{rh[1]:6.4f} {rr:7.1e}", flush=True)
