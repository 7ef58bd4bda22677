"""The GPU timeline of a training step as the benchmark times it (L2 flushed before the call, bench.timing):
each kernel's launch time on the host, its start and duration on the GPU, and the idle time before it.
Where a step takes longer than its kernels, this says whether the GPU waited for a launch (the host) or
for something else.

    python bench/tools/stepgaps.py [PRECISION [CASES [LAYOUTS [PASSES]]]]   # tf32 headline NDHWC,NCDHW step

Times are microseconds from the host's entry into the step. "idle" is the GPU's idle time before a kernel
(from the end of the previous GPU operation, the flush for the first); "late" is the part of it after which
the kernel was still not launched, i.e. the host's share. One profiled series per side (ours, cuDNN with
cudnn.benchmark on); the rep shown is the one with the median span.
"""
import json
import os
import statistics
import sys
import tempfile

import torch

from bench.runner import CaseTensors, _native_fns, _our_fns, cudnn_mode
from bench.shapes import HEADLINE, SWEEP
from bench.timing import _l2_flush

GPU_CATS = ("kernel", "gpu_memset", "gpu_memcpy")


def trace(step, reps):
    """Chrome-trace events of reps flushed calls of step, each inside a "stepgaps:i" host range."""
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=acts) as prof:
        for i in range(reps):
            _l2_flush()
            with torch.profiler.record_function(f"stepgaps:{i}"):
                step()
            torch.cuda.synchronize()
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as f:
            return json.load(f)["traceEvents"]
    finally:
        os.unlink(path)


def reps_of(events, reps):
    """Per rep: (host start, host end, [(launch ts or None, start, dur, name)] of its GPU ops, flush end)."""
    launch = {}
    for e in events:
        if e.get("cat") == "cuda_runtime" and "correlation" in e.get("args", {}):
            launch[e["args"]["correlation"]] = e["ts"]
    gpu = sorted((e for e in events if e.get("cat") in GPU_CATS and e.get("ph") == "X"), key=lambda e: e["ts"])
    ranges = {}
    for e in events:
        name = e.get("name", "")
        if e.get("cat") == "user_annotation" and name.startswith("stepgaps:"):
            ranges[int(name.split(":")[1])] = (e["ts"], e["ts"] + e["dur"])
    out = []
    for i in range(reps):
        t0, t1 = ranges[i]
        ops, flush_end = [], None
        for e in gpu:
            lt = launch.get(e.get("args", {}).get("correlation"))
            if lt is not None and lt < t0 and e["ts"] + e["dur"] > t0 - 5e4:
                flush_end = e["ts"] + e["dur"]  # the last op launched before the step: the flush
            elif lt is not None and t0 <= lt <= t1:
                ops.append((lt, e["ts"], e["dur"], e["name"]))
        out.append((t0, t1, ops, flush_end))
    return out


def report(label, rep):
    t0, t1, ops, flush_end = rep
    prev = flush_end if flush_end is not None else (ops[0][1] if ops else t0)
    span = (ops[-1][1] + ops[-1][2] - prev) if ops else 0.0
    busy = sum(o[2] for o in ops)
    print(f"== {label}: GPU span {span:8.1f} us (flush end to last op end), ops {busy:8.1f} us, idle "
          f"{span - busy:7.1f} us; host in step {t1 - t0:7.1f} us")
    for lt, ts, dur, name in ops:
        idle = max(0.0, ts - prev)
        late = max(0.0, min(idle, lt - prev))
        print(f"   launch {lt - t0:8.1f}  start {ts - t0:8.1f}  dur {dur:8.1f}  idle {idle:7.1f}  late {late:7.1f}  "
              f"{name[:70]}")
        prev = max(prev, ts + dur)


def main():
    prec = sys.argv[1] if len(sys.argv) > 1 else "tf32"
    names = sys.argv[2].split(",") if len(sys.argv) > 2 else ["headline"]
    layouts = sys.argv[3].split(",") if len(sys.argv) > 3 else ["NDHWC", "NCDHW"]
    passes = sys.argv[4].split(",") if len(sys.argv) > 4 else ["step"]
    cases = {c.name: c for c in [HEADLINE] + list(SWEEP)}
    reps = 7
    for name in names:
        for layout in layouts:
            t = CaseTensors(cases[name], layout == "NDHWC")
            _, ours = _our_fns(t, prec)
            native = _native_fns(t)
            allow = prec == "tf32"
            for ps, who, step in [(ps, who, fns[ps]) for ps in passes
                                  for who, fns in (("ours", ours), ("cuDNN", native))]:
                with cudnn_mode(allow, True):
                    rs = reps_of(trace(step, reps), reps)
                spans = []
                for t0, t1, ops, fe in rs:
                    start = fe if fe is not None else (ops[0][1] if ops else t0)
                    spans.append(ops[-1][1] + ops[-1][2] - start if ops else 0.0)
                med = statistics.median(spans)
                i = min(range(reps), key=lambda j: abs(spans[j] - med))
                report(f"{name} {layout} {prec} {ps} {who} (spans {min(spans):.0f}-{max(spans):.0f} us)", rs[i])
            del t, ours, native
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
