"""grad_input with the bias gradient, kernel by kernel: grad_input's kernel summing grad_y as it reads it
(launch.grad_input_with_bias, where launch.sum_rows > 0) against grad_input alone plus the separate
channel_sums pass, in alternating rounds (CUDA events, L2 flushed; the medians of the rounds' medians).

    python bench/tools/gisums.py [LAYERS] [ROUNDS]     # sweep case names, channels_last_3d, tf32
    GISUMS_GPU_ONLY=1: GPU time only (hostgap.gpu_only: the launches queued behind a busy GPU), for layers
    whose calls are host-bound (the sub-0.15 ms ones moved 20% between processes in v0.68)
"""
import os
import statistics
import sys

import torch

from bench.runner import CaseTensors
from bench.shapes import HEADLINE, SWEEP
from bench.timing import bench
from bench.tools.hostgap import gpu_only
from convt3d_cutlass import launch
from convt3d_cutlass.layouts import channel_sums

names = (sys.argv[1] if len(sys.argv) > 1 else "unet3d-dec2,medium").split(",")
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
cases = {c.name: c for c in list(SWEEP) + [HEADLINE]}
torch.backends.cudnn.allow_tf32 = True
print(f"{'layer':14s} {'kernel':28s} {'rows':>5s} {'fused':>7s} {'gi':>7s} {'sums':>7s} {'gi+sums':>7s} {'gain':>6s}")
for nm in names:
    c = cases[nm]
    t = CaseTensors(c, True)
    p = c.problem()
    plan = launch._plan(p, "fprop", "tf32", None, t.gy.device, None)
    rows = launch.sum_rows(plan, p, t.gy.device)
    fns = {"fused": lambda: launch.grad_input_with_bias(t.gy, t.w, p, "tf32", None),
           "gi": lambda: launch.grad_input(t.gy, t.w, p, "tf32", None),
           "sums": lambda: channel_sums(t.gy)}
    gx, gb = fns["fused"]()
    ref = t.gy.double().sum((0, 2, 3, 4))
    err = ((gb.double() - ref).norm() / ref.norm()).item() if gb is not None else float("nan")
    assert torch.equal(gx, fns["gi"]())
    res = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            res[k].append(gpu_only(f, reps=20) if os.environ.get("GISUMS_GPU_ONLY") else bench(f, warmup=3, reps=20))
    m = {k: statistics.median(v) for k, v in res.items()}
    print(f"{nm:14s} {plan.k.name[:28]:28s} {rows:5d} {m['fused']:7.3f} {m['gi']:7.3f} {m['sums']:7.3f} "
          f"{m['gi'] + m['sums']:7.3f} {(m['gi'] + m['sums']) / m['fused']:6.3f}  bias err {err:.1e}", flush=True)
