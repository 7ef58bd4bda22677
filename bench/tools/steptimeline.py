"""One training step's GPU timeline, ours, both layouts: every GPU activity (kernel, memset, memcpy) with its
start after the step's first one, its duration, the idle gap before it, when the host launched it and on
which stream, plus the host's synchronising or
allocating runtime calls. Why: on the headline NCDHW step the GPU is idle about 0.4 ms more than on
channels_last_3d (steprof v0.49: step 7.06 ms for 6.54 ms of kernels, against 5.49 for 5.40).

    python bench/tools/steptimeline.py [PRECISION [CASES]]
The GPU is first held busy for 5 ms (torch.cuda._sleep), so that gaps the host causes by being late show as
the host's, not the GPU's: run it both ways (argv[3] 'idle' for an idle GPU at entry)."""
import sys

import torch

from bench.runner import CaseTensors, _our_fns
from bench.shapes import HEADLINE, SWEEP
from bench.tools.hostgap import _cycles_for

prec = sys.argv[1] if len(sys.argv) > 1 else "tf32"
names = sys.argv[2].split(",") if len(sys.argv) > 2 else ["headline"]
busy = not (len(sys.argv) > 3 and sys.argv[3] == "idle")
cases = {c.name: c for c in [HEADLINE] + list(SWEEP)}
torch.backends.cudnn.allow_tf32 = prec != "fp32"
HOST = ("cudaMalloc", "cudaFree", "Synchronize", "cudaMemcpy", "cudaHostAlloc", "cudaStreamWaitEvent")

for name in names:
    for cl in (True, False):
        t = CaseTensors(cases[name], cl)
        _, ours = _our_fns(t, prec)
        step = ours["step"]
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        cyc = _cycles_for(5.0)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA,
                                                torch.profiler.ProfilerActivity.CPU]) as prof:
            if busy:
                torch.cuda._sleep(cyc)
            step()
            torch.cuda.synchronize()
        evs = prof.profiler.kineto_results.events()
        gpu = sorted((e for e in evs if e.device_type() == torch.autograd.DeviceType.CUDA),
                     key=lambda e: e.start_ns())
        gpu = [e for e in gpu if "sleep" not in e.name().lower()]
        host = sorted((e for e in evs if e.device_type() == torch.autograd.DeviceType.CPU
                       and any(h in e.name() for h in HOST)), key=lambda e: e.start_ns())
        launched = {e.correlation_id(): e.start_ns() for e in evs
                    if e.device_type() == torch.autograd.DeviceType.CPU and e.name().startswith("cu")}
        t0 = gpu[0].start_ns()
        end = t0
        print(f"== {name} {'NDHWC' if cl else 'NCDHW'} {prec} ({'busy' if busy else 'idle'} GPU at entry): "
              f"span {(max(e.start_ns() + e.duration_ns() for e in gpu) - t0) / 1e6:.3f} ms, "
              f"busy {sum(e.duration_ns() for e in gpu) / 1e6:.3f} ms")
        for e in gpu:
            gap = e.start_ns() - end
            at = launched.get(e.correlation_id())
            print(f"   +{(e.start_ns() - t0) / 1e6:7.3f}  {e.duration_ns() / 1e6:7.3f} ms  gap {gap / 1e3:7.1f} us"
                  f"  launched {(at - t0) / 1e6 if at else float('nan'):+8.3f}  s{e.device_resource_id()}"
                  f"  {e.name()[:80]}")
            end = max(end, e.start_ns() + e.duration_ns())
        for e in host:
            print(f"   host +{(e.start_ns() - t0) / 1e6:7.3f}  {e.duration_ns() / 1e3:8.1f} us  {e.name()}")
