"""Median eager times (CUDA events) per case, layout and pass, for a cross-version A/B: run it under each
build (PYTHONPATH naming the other's install first) in alternating processes.

    python bench/tools/steptime.py CASES [PASSES [PRECISION]]   # passes: step (default), forward, ...
"""
import statistics
import sys

import torch

from bench.runner import CaseTensors, _our_fns
from bench.shapes import SWEEP

torch.backends.cudnn.allow_tf32 = True
passes = sys.argv[2].split(",") if len(sys.argv) > 2 else ["step"]
prec = sys.argv[3] if len(sys.argv) > 3 else "tf32"
out = []
for nm in sys.argv[1].split(","):
    c = [c for c in SWEEP if c.name == nm][0]
    for cl in (True, False):
        t = CaseTensors(c, cl)
        _, ours = _our_fns(t, prec)
        for ps in passes:
            for _ in range(10):
                ours[ps]()
            ts = []
            for _ in range(40):
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record(); ours[ps](); b.record(); b.synchronize(); ts.append(a.elapsed_time(b))
            tag = "" if passes == ["step"] else "/" + ps
            out.append(f"{nm}/{'NDHWC' if cl else 'NCDHW'}{tag}={statistics.median(ts):.4f}")
print(" ".join(out))
