"""Same-process A/B of the eager call cache (functional._fast_calls, v0.35): our step with and without it.

    python bench/tools/hostcache.py [PRECISION [CASES [LAYOUTS [ROUNDS]]]]

Per (layer, layout), alternating rounds, cache on and off (functional._call_key answering None, so that
every call validates again): the benchmark's protocol (bench.timing.bench) and the host's time in the
step with an idle GPU at entry (hostgap.host_only), medians of the rounds' medians.
"""
import statistics
import sys

import torch

from bench.runner import CaseTensors, _our_fns
from bench.shapes import HEADLINE, SWEEP
from bench.timing import bench
from bench.tools.hostgap import host_only
from convt3d_cutlass import functional


def main():
    prec = sys.argv[1] if len(sys.argv) > 1 else "tf32"
    names = sys.argv[2].split(",") if len(sys.argv) > 2 else ["headline"]
    layouts = sys.argv[3].split(",") if len(sys.argv) > 3 else ["NDHWC", "NCDHW"]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    cases = {c.name: c for c in [HEADLINE] + list(SWEEP)}
    torch.backends.cudnn.allow_tf32 = prec != "fp32"
    key = functional._call_key
    modes = {"on": key, "off": lambda *a: None}
    print(f"{'layer':12s} {'layout':6s} {'bench on':>9s} {'bench off':>9s} {'host on':>8s} {'host off':>8s} "
          f"{'gain':>6s}  (ms; gain = bench off / on)")
    for name in names:
        for layout in layouts:
            t = CaseTensors(cases[name], layout == "NDHWC")
            _, fns = _our_fns(t, prec)
            step = fns["step"]
            res = {m: ([], []) for m in modes}
            for _ in range(rounds):
                for m, fn in modes.items():
                    functional._call_key = fn
                    functional._fast_calls.clear()
                    res[m][0].append(bench(step, reps=20))
                    res[m][1].append(host_only(step, reps=20))
            functional._call_key = key
            b = {m: statistics.median(v[0]) for m, v in res.items()}
            h = {m: statistics.median(v[1]) for m, v in res.items()}
            print(f"{name:12s} {layout:6s} {b['on']:9.4f} {b['off']:9.4f} {h['on']:8.4f} {h['off']:8.4f} "
                  f"{b['off'] / b['on']:6.3f}", flush=True)
            del t, fns, step


if __name__ == "__main__":
    main()
