"""Where a small layer's eager step spends host time: torch.profiler's CPU view (self time per op, the
autograd engine's node calls and the CUDA runtime calls) of ours and cuDNN's tf32 step.

    python bench/tools/hostprof.py LAYER [NDHWC|NCDHW] [ROWS] [cpu]

cpu: the CPU activity alone. With CUDA activity on, CUPTI intercepts every runtime call (a cudaGetDevice, a
cudaGetLastError), which inflated the self time of our scopes that make several of them (v0.62: 16-23 us per
kernel run in v0.61's view, where hostparts.cu times a launch at 4.4 us and an encode at 0.1).
"""
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from bench.runner import CaseTensors, _native_fns, _our_fns, cudnn_mode
from bench.shapes import SWEEP

name = sys.argv[1]
cl = (sys.argv[2] if len(sys.argv) > 2 else "NDHWC") == "NDHWC"
rows = int(sys.argv[3]) if len(sys.argv) > 3 else 22
activities = [ProfilerActivity.CPU] if len(sys.argv) > 4 and sys.argv[4] == "cpu" else \
    [ProfilerActivity.CPU, ProfilerActivity.CUDA]
t = CaseTensors(next(c for c in SWEEP if c.name == name), cl)
_, ours = _our_fns(t, "tf32")
native = _native_fns(t)
N = 50
for label, fn in (("ours", ours["step"]), ("cuDNN", native["step"])):
    with cudnn_mode(True, True):
        for _ in range(20):
            fn()
        torch.cuda.synchronize()
        with profile(activities=activities) as prof:
            for _ in range(N):
                fn()
            torch.cuda.synchronize()
    ev = prof.key_averages()
    print(f"== {label} {name} {'NDHWC' if cl else 'NCDHW'}: per step, self CPU time by op (us), calls")
    cpu = sorted((e for e in ev if e.self_cpu_time_total > 0), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in cpu) / N
    print(f"   total self CPU {total:.0f} us per step (profiler overhead included)")
    for e in cpu[:rows]:
        print(f"   {e.self_cpu_time_total / N:7.1f} self {e.cpu_time_total / N:7.1f} incl  x{e.count / N:4.1f}  {e.key[:90]}")
