"""Same-process A/B of the eager training step with grad_input's kernel summing grad_y for the bias
gradient (launch.sum_rows > 0) against the separate channel_sums pass (sum_rows forced to 0).

Per layer (channels_last_3d, where the sums apply), rounds alternate on / off so that drift hits both
alike; each round is the step's median as the benchmark measures it (bench.timing.bench). The eager
node's plans are rebuilt at each switch. Usage: sumsab.py [precision] [layer,layer,...] [rounds]
"""
import statistics
import sys

from bench.runner import CaseTensors, _our_fns
from bench.shapes import HEADLINE, SWEEP
from bench.timing import bench
from convt3d_cutlass import eager, launch

prec = sys.argv[1] if len(sys.argv) > 1 else "tf32"
names = (sys.argv[2] if len(sys.argv) > 2 else "headline,video-gen,sr-head,vnet-refine").split(",")
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 7
cases = {c.name: c for c in list(SWEEP) + [HEADLINE]}
real_sum_rows = launch.sum_rows


def mode(on: bool):
    launch.sum_rows = real_sum_rows if on else (lambda plan, p, device: 0)
    eager._plans.clear()


print(f"precision {prec}, channels_last_3d; step ms (bench), median over {rounds} rounds")
print(f"{'layer':14s} {'sum rows':>8s} {'fused':>8s} {'separate':>8s} {'gain':>6s}")
for nm in names:
    c = cases[nm]
    t = CaseTensors(c, True)
    _, ours = _our_fns(t, prec)
    res = {True: [], False: []}
    for _ in range(rounds):
        for on in (True, False):
            mode(on)
            res[on].append(bench(ours["step"], warmup=3, reps=30))
    mode(True)
    p = c.problem()
    rows = real_sum_rows(launch._plan(p, "fprop", prec, None, t.x.device, None), p, t.x.device)
    on, off = statistics.median(res[True]), statistics.median(res[False])
    print(f"{nm:14s} {rows:8d} {on:8.3f} {off:8.3f} {off / on:6.3f}", flush=True)
    del t, ours
