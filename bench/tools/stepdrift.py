"""Per-rep step times of ours and cuDNN (autotuned) over long series: whether a step drifts or stalls
within a series (the benchmark's protocol per rep: L2 flushed, CUDA events, a sync), with the host's
enqueue time per step before each series.

    python bench/tools/stepdrift.py [PREC:LAYER,...] [REPS] [ROUNDS]    # default fp32:unet3d-k2,tf32:unet3d-dec1
Prints the median, p10 / p90, and the medians of consecutive chunks of 10 reps."""
import statistics
import sys

import torch

from bench.runner import CaseTensors, _native_fns, _our_fns, cudnn_mode
from bench.shapes import SWEEP
from bench.tools.common import host_ms, rep_times

pairs = [a.split(":") for a in (sys.argv[1] if len(sys.argv) > 1 else "fp32:unet3d-k2,tf32:unet3d-dec1").split(",")]
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 100
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 2
cases = {c.name: c for c in SWEEP}


def describe(ts):
    q = statistics.quantiles(ts, n=10)
    chunks = " ".join(f"{statistics.median(ts[i:i + 10]):.3f}" for i in range(0, len(ts), 10))
    return f"med {statistics.median(ts):.3f} p10 {q[0]:.3f} p90 {q[-1]:.3f} chunks {chunks}"


for prec, name in pairs:
    torch.backends.cudnn.allow_tf32 = prec == "tf32"
    t = CaseTensors(cases[name], True)
    _, ours = _our_fns(t, prec)
    native = _native_fns(t)
    for rnd in range(rounds):
        print(f"{name} {prec} round {rnd} ours : host {host_ms(ours['step'], 50):.3f}  "
              + describe(rep_times(ours["step"], reps, flush=True)), flush=True)
        with cudnn_mode(prec == "tf32", True):
            print(f"{name} {prec} round {rnd} cuDNN: host {host_ms(native['step'], 50):.3f}  "
                  + describe(rep_times(native["step"], reps, flush=True)), flush=True)
