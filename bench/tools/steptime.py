"""Median eager tf32 step time (CUDA events) per case and layout, for a cross-version A/B."""
import sys, statistics, torch
from bench.shapes import SWEEP
from bench.runner import CaseTensors, _our_fns
torch.backends.cudnn.allow_tf32 = True
out = []
for nm in sys.argv[1].split(","):
    c = [c for c in SWEEP if c.name == nm][0]
    for cl in (True, False):
        t = CaseTensors(c, cl)
        _, ours = _our_fns(t, "tf32")
        for _ in range(10): ours["step"]()
        ts = []
        for _ in range(40):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record(); ours["step"](); b.record(); b.synchronize(); ts.append(a.elapsed_time(b))
        out.append(f"{nm}/{'NDHWC' if cl else 'NCDHW'}={statistics.median(ts):.4f}")
print(" ".join(out))
