"""Why a sub-millisecond step runs slower in the benchmark's long-running process than in a fresh one
(docs/performance.md, Next 9): one process, the same layer's step (ours and cuDNN, bench.runner's
functions and alternating rounds) measured fresh and again after each suspect is introduced.

    python bench/tools/procdrift.py [LAYER[,LAYER]] [NDHWC|NCDHW]

Suspects, in order: cudnn.benchmark on or off; the headline's large tensors run and freed (the caching
allocator's segments, cuDNN's autotuned plans); Python's garbage collector over the heap that builds up.
Each line: ours and cuDNN ms (median of rounds), the ratio, the host's enqueue time per step (20 steps
without a sync, us) for both, the allocator's segments and the process's OS threads.
"""
import gc
import os
import statistics
import sys

import torch

from bench.runner import CaseTensors, _native_fns, _our_fns, cudnn_mode, interleaved
from bench.shapes import HEADLINE, SWEEP
from bench.timing import bench
from bench.tools.common import host_ms

names = sys.argv[1].split(",") if len(sys.argv) > 1 else ["unet3d-k2", "unet3d-dec1"]
cl = (sys.argv[2] if len(sys.argv) > 2 else "NDHWC") == "NDHWC"
cases = {c.name: c for c in SWEEP}


def measure(label, benchmark=True):
    for name in names:
        t = CaseTensors(cases[name], cl)
        native = _native_fns(t)
        _, ours = _our_fns(t, "tf32")
        with cudnn_mode(True, benchmark):
            first = bench(native["step"], reps=10)
            o, n = interleaved(ours["step"], native["step"], first, 10, 3)
            ho = statistics.median(1e3 * host_ms(ours["step"], 20) for _ in range(3))
            hn = statistics.median(1e3 * host_ms(native["step"], 20) for _ in range(3))
        seg = torch.cuda.memory_stats().get("segment.all.current", 0)
        print(f"{label:34s} {name:12s} ours {o:.3f} cuDNN {n:.3f} ({n / o:.2f}x)  enqueue ours {ho:.0f} us "
              f"cuDNN {hn:.0f} us  segments {seg} threads {len(os.listdir('/proc/self/task'))}", flush=True)
        del t, native, ours


def big(case_layouts):
    for case, layout in case_layouts:
        t = CaseTensors(case, layout)
        native = _native_fns(t)
        _, ours = _our_fns(t, "tf32")
        with cudnn_mode(True, True):
            for _ in range(3):
                ours["step"]()
                native["step"]()
        torch.cuda.synchronize()
        del t, native, ours


print(f"layout {'NDHWC' if cl else 'NCDHW'}")
measure("fresh, cudnn.benchmark on")
measure("fresh, cudnn.benchmark off", benchmark=False)
measure("fresh again, on")
big([(HEADLINE, True), (HEADLINE, False)])
measure("after the headline (cache kept)")
torch.cuda.empty_cache()
measure("after the headline, empty_cache")
junk = [{"k": i, "v": [i] * 8} for i in range(2_000_000)]  # a long-running process's heap
measure("with 2M live Python objects")
gc.freeze()
measure("same, gc.freeze()")
gc.unfreeze()
del junk
gc.collect()
measure("objects freed")
# The sweep's own flow for the cases before the layers (autotuning, float64 references, the defaults
# subprocess, peak-memory probes), all passes, every case up to the first layer named.
import collections  # noqa: E402
from bench.runner import run_case  # noqa: E402
for c in SWEEP:
    if c.name in names:
        break
    run_case(c, [cl], ["tf32"], ["forward", "grad_input", "grad_weight", "step"], collections.defaultdict(lambda: 1.0),
             log=lambda row: None)
    measure(f"after run_case({c.name})")
