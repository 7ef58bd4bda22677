"""The GPU's SM clock, power and throttle reasons while each side runs a pass in a loop (nvidia-smi sampled
every 50 ms in the background): whether our kernels and cuDNN's run at the same clock.

    python bench/tools/clocks.py [PRECISION [CASE [LAYOUT [PASSES [SECONDS]]]]]   # tf32 headline NDHWC step,forward

Per (pass, side): the event-timed median ms of the loop's calls, and over the samples of its last
SECONDS - 0.5 s the median SM clock (MHz), power (W), temperature (C) and the throttle-reason bits seen
(nvidia-smi's clocks_event_reasons.active: 0x4 SW power cap, 0x20 SW thermal, 0x40 HW thermal, 0x80 HW power
brake, 0x1 idle).
"""
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from bench.runner import CaseTensors, _native_fns, _our_fns, cudnn_mode
from bench.shapes import HEADLINE, SWEEP
from bench.tools.common import event_ms



def fields():
    """The query fields; the throttle reasons under their current name, or the one older drivers know."""
    for reasons in ("clocks_event_reasons.active", "clocks_throttle_reasons.active"):
        q = subprocess.run(["nvidia-smi", f"--query-gpu={reasons}", "--format=csv,noheader"], capture_output=True)
        if q.returncode == 0:
            return f"timestamp,clocks.sm,power.draw,temperature.gpu,{reasons}"
    return "timestamp,clocks.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active"


def loop(fn, seconds):
    """(start, end) wall times of a loop of fn() for about `seconds`, and the median event time of its calls."""
    fn()
    torch.cuda.synchronize()
    ts = []
    t0 = time.time()
    while time.time() - t0 < seconds:
        ts.append(event_ms(fn))
    return t0, time.time(), statistics.median(ts)


def samples(path):
    out = []
    with open(path) as f:
        for line in f:
            parts = [p.strip() for p in line.split(",")]
            if len(parts) != 5:
                continue
            try:
                t = datetime.datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
                out.append((t, float(parts[1]), float(parts[2]), float(parts[3]), int(parts[4], 16)))
            except ValueError:
                continue
    return out


def main():
    prec = sys.argv[1] if len(sys.argv) > 1 else "tf32"
    name = sys.argv[2] if len(sys.argv) > 2 else "headline"
    layout = sys.argv[3] if len(sys.argv) > 3 else "NDHWC"
    passes = sys.argv[4].split(",") if len(sys.argv) > 4 else ["step", "forward"]
    seconds = float(sys.argv[5]) if len(sys.argv) > 5 else 4.0
    case = {c.name: c for c in [HEADLINE] + list(SWEEP)}[name]
    t = CaseTensors(case, layout == "NDHWC")
    _, ours = _our_fns(t, prec)
    native = _native_fns(t)
    fd, path = tempfile.mkstemp(suffix=".csv")
    os.close(fd)
    with open(path, "w") as log:
        smi = subprocess.Popen(["nvidia-smi", f"--query-gpu={fields()}", "--format=csv,noheader,nounits", "-lms", "50"],
                               stdout=log, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        phases = []
        with cudnn_mode(prec == "tf32", True):
            for ps in passes:
                native[ps]()  # autotune first
                for who, fns in (("ours", ours), ("cuDNN", native), ("ours", ours)):
                    phases.append((ps, who) + loop(fns[ps], seconds))
        time.sleep(0.3)
    finally:
        smi.terminate()
        smi.wait()
    ss = samples(path)
    os.unlink(path)
    print(f"{name} {layout} {prec}: {len(ss)} nvidia-smi samples")
    print(f"{'pass':8s} {'side':5s} {'ms':>8s} {'SM MHz':>7s} {'W':>6s} {'C':>4s}  reasons")
    for ps, who, a, b, ms in phases:
        win = [s for s in ss if a + 0.5 <= s[0] <= b]
        if not win:
            print(f"{ps:8s} {who:5s} {ms:8.3f}  (no samples)")
            continue
        reasons = sorted({s[4] for s in win})
        print(f"{ps:8s} {who:5s} {ms:8.3f} {statistics.median(s[1] for s in win):7.0f} "
              f"{statistics.median(s[2] for s in win):6.0f} {statistics.median(s[3] for s in win):4.0f}  "
              f"{' '.join(hex(r) for r in reasons)}")


if __name__ == "__main__":
    main()
