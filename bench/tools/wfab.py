"""Same-process A/B of the w-fold rows (selector.WGMMA_WFOLD) on the strided forwards: forward and step, the
selector with the w fold against the selector without it, and cuDNN (the faster of cudnn.benchmark on and off).

    python bench/tools/wfab.py [LAYERS] [ROUNDS] [LAYOUTS]

LAYERS: comma list of sweep case names (default: every strided one). The selector's caches and the eager
node's plans are cleared at every switch, so each side plans as a fresh process would; bench() warms up
after the switch. Each cell is the median over rounds of bench()'s median. The two sides' forward outputs
are compared first (tf32 class)."""
import statistics
import sys

import torch

from bench.runner import CaseTensors, _native_fns, _our_fns, cudnn_mode
from bench.shapes import SWEEP
from bench.timing import bench
from convt3d_cutlass import eager, launch, selector
from convt3d_cutlass.problem import Problem

strided = [c.name for c in SWEEP if c.stride > 1]
names = sys.argv[1].split(",") if len(sys.argv) > 1 and sys.argv[1] else strided
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
layouts = sys.argv[3].split(",") if len(sys.argv) > 3 else ["NDHWC", "NCDHW"]
cases = {c.name: c for c in SWEEP}
torch.backends.cudnn.allow_tf32 = True
passes = ("forward", "step")


def use(wf: bool):
    selector.WGMMA_WFOLD = wf
    launch._select_cached.cache_clear()
    launch._plan_cached.cache_clear()
    eager._plans.clear()


for nm in names:
    for lay in layouts:
        t = CaseTensors(cases[nm], lay == "NDHWC")
        fns = _our_fns(t, "tf32")[1]
        native = _native_fns(t)
        picks, outs = {}, {}
        for wf in (True, False):
            use(wf)
            p = Problem.of(t.x, t.w, t.case.stride, t.case.padding, t.case.output_padding)
            picks[wf] = launch._plan(p, "dgrad", "tf32", None, t.x.device, None).name
            outs[wf] = fns["forward"]().double()
        e = ((outs[True] - outs[False]).norm() / outs[False].norm()).item()
        assert e < 2e-3, f"{nm} {lay}: w fold against without: relative error {e:.2e}"
        res = {(s, ps): [] for s in ("wf", "old", "cuDNN") for ps in passes}
        for _ in range(rounds):
            for wf in (True, False):
                use(wf)
                for ps in passes:
                    res[("wf" if wf else "old", ps)].append(bench(fns[ps], reps=15))
            for ps in passes:
                best = float("inf")
                for bm in (True, False):
                    with cudnn_mode(True, bm):
                        best = min(best, bench(native[ps], reps=15))
                res[("cuDNN", ps)].append(best)
        med = {k: statistics.median(v) for k, v in res.items()}
        for s in ("wf", "old", "cuDNN"):
            cells = "  ".join(f"{ps} {med[(s, ps)]:7.3f}" for ps in passes)
            pick = picks[True] if s == "wf" else picks[False] if s == "old" else ""
            print(f"{nm:12s} {lay:6s} {s:5s} {cells}  {pick}", flush=True)
        fwd, step = (med[("old", ps)] / med[("wf", ps)] for ps in passes)
        vs = [med[("cuDNN", "step")] / med[(s, "step")] for s in ("wf", "old")]
        print(f"{nm:12s} {lay:6s} ratio forward {fwd:.3f}x  step {step:.3f}x  (old / wf); step vs cuDNN "
              f"{vs[0]:.2f}x (wf) {vs[1]:.2f}x (old)", flush=True)
        del t, fns, native
