"""How much of a pass's benchmark time is the GPU waiting for the host, without a profiler's overhead.

    python bench/tools/hostgap.py [PRECISION [CASES [LAYOUTS [PASSES [ROUNDS]]]]]

Per side (ours, cuDNN with cudnn.benchmark on), alternating rounds:
  bench    the benchmark's protocol (bench.timing.bench: L2 flushed, CUDA events around the call);
  gpu      the same, with the GPU first held busy for 3 ms (torch.cuda._sleep) after the flush, so that the
           host has enqueued the whole call before the GPU reaches it: the GPU's own time;
  host     the host's time in the call with an idle GPU at entry (perf_counter, synchronised before);
and bench - gpu, the host's share of the benchmark figure. Then a cProfile of ours (20 calls), the
Python functions with the most own time.
"""
import cProfile
import io
import pstats
import statistics
import sys
import time

import torch

from bench.runner import CaseTensors, _native_fns, _our_fns, cudnn_mode
from bench.shapes import HEADLINE, SWEEP
from bench.timing import _l2_flush, bench
from bench.tools.common import event_ms

SLEEP_CYCLES = None


def _cycles_for(ms):
    """torch.cuda._sleep cycles lasting about ms (measured once)."""
    global SLEEP_CYCLES
    if SLEEP_CYCLES is None:
        n = 1 << 22
        torch.cuda._sleep(n)
        torch.cuda.synchronize()
        a, b = torch.cuda.Event(True), torch.cuda.Event(True)
        a.record()
        torch.cuda._sleep(n)
        b.record()
        b.synchronize()
        SLEEP_CYCLES = n / a.elapsed_time(b)
    return int(SLEEP_CYCLES * ms)


def gpu_only(fn, reps=10):
    """Median event time of fn() when its launches are all queued before the GPU gets to them."""
    fn()
    torch.cuda.synchronize()
    cyc = _cycles_for(3.0)

    def busy():
        _l2_flush()
        torch.cuda._sleep(cyc)

    return statistics.median(event_ms(fn, busy) for _ in range(reps))


def host_only(fn, reps=10):
    """Median host ms inside fn() with an idle GPU at entry."""
    fn()
    ts = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        ts.append(1e3 * (time.perf_counter() - t))
    torch.cuda.synchronize()
    return statistics.median(ts)


def main():
    prec = sys.argv[1] if len(sys.argv) > 1 else "tf32"
    names = sys.argv[2].split(",") if len(sys.argv) > 2 else ["headline"]
    layouts = sys.argv[3].split(",") if len(sys.argv) > 3 else ["NDHWC", "NCDHW"]
    passes = sys.argv[4].split(",") if len(sys.argv) > 4 else ["step"]
    rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    cases = {c.name: c for c in [HEADLINE] + list(SWEEP)}
    print(f"{'layer':12s} {'layout':6s} {'pass':10s} {'side':5s} {'bench':>8s} {'gpu':>8s} {'host':>8s} "
          f"{'bench-gpu':>9s}  (ms, medians of {rounds} rounds)")
    for name in names:
        for layout in layouts:
            t = CaseTensors(cases[name], layout == "NDHWC")
            _, ours = _our_fns(t, prec)
            native = _native_fns(t)
            for ps in passes:
                res = {"ours": [], "cuDNN": []}
                with cudnn_mode(prec == "tf32", True):
                    native[ps]()
                    for _ in range(rounds):
                        for who, fns in (("ours", ours), ("cuDNN", native)):
                            fn = fns[ps]
                            res[who].append((bench(fn, reps=10), gpu_only(fn), host_only(fn)))
                for who, rs in res.items():
                    b, g, h = (statistics.median(r[i] for r in rs) for i in range(3))
                    print(f"{name:12s} {layout:6s} {ps:10s} {who:5s} {b:8.3f} {g:8.3f} {h:8.3f} {b - g:9.3f}",
                          flush=True)
            if name == names[0] and layout == layouts[0]:
                fn = ours[passes[0]]
                pr = cProfile.Profile()
                for _ in range(20):
                    torch.cuda.synchronize()
                    pr.enable()
                    fn()
                    pr.disable()
                torch.cuda.synchronize()
                s = io.StringIO()
                pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(18)
                print(f"-- cProfile, ours, {name} {layout} {passes[0]}, 20 calls (own time):")
                print("\n".join(line for line in s.getvalue().splitlines()[4:] if line.strip()))
            del t, ours, native
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
