"""Same-process A/B of kernel choices: the selector's pick against forced configs, per pass and step.

    python bench/tools/cfgab.py PRECISION LAYERS "CFGS;CFGS;..." [ROUNDS] [LAYOUTS]

LAYERS: comma list of sweep case names. Each CFGS is a comma list of kernel names forced for the ops they
serve (the selector picks the rest); an empty one is the selector alone. LAYOUTS: NDHWC,NCDHW (default
NDHWC). Rounds alternate the choices and cuDNN (the faster of cudnn.benchmark on and off), so drift of the
host or the GPU hits all alike; each cell is the median over rounds of the benchmark's median
(bench.timing.bench: L2 flushed, CUDA events). Every choice's outputs are checked against the selector's.
"""
import statistics
import sys

import torch

from bench.runner import CaseTensors, _native_fns, _our_fns, cudnn_mode
from bench.shapes import HEADLINE, SWEEP
from bench.timing import bench

prec, names = sys.argv[1], sys.argv[2].split(",")
sets = sys.argv[3].split(";")
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 5
layouts = sys.argv[5].split(",") if len(sys.argv) > 5 else ["NDHWC"]
cases = {c.name: c for c in list(SWEEP) + [HEADLINE]}
passes = ("forward", "grad_input", "step")
torch.backends.cudnn.allow_tf32 = prec != "fp32"


def check(fns, ref):
    for ps in ("forward", "grad_input"):
        o, r = fns[ps](), ref[ps]()
        e = ((o.double() - r.double()).norm() / r.double().norm()).item()
        if not e < (1e-5 if prec != "tf32" else 2e-3):
            raise AssertionError(f"{ps}: relative error {e:.2e} against the selector's pick")


for nm in names:
    for lay in layouts:
        t = CaseTensors(cases[nm], lay == "NDHWC")
        ours = {s: _our_fns(t, prec, s or None)[1] for s in sets}
        for s in sets[1:]:
            check(ours[s], ours[sets[0]])
        native = _native_fns(t)
        res = {(s, ps): [] for s in sets + ["cuDNN"] for ps in passes}
        for _ in range(rounds):
            for s in sets:
                for ps in passes:
                    res[(s, ps)].append(bench(ours[s][ps], reps=15))
            for ps in passes:
                best = float("inf")
                for bm in (True, False):
                    with cudnn_mode(prec != "fp32", bm):
                        best = min(best, bench(native[ps], reps=15))
                res[("cuDNN", ps)].append(best)
        med = {k: statistics.median(v) for k, v in res.items()}
        for s in sets + ["cuDNN"]:
            cells = "  ".join(f"{ps} {med[(s, ps)]:7.3f}" for ps in passes)
            print(f"{nm:12s} {lay:6s} {cells}  [{s or 'selector'}]", flush=True)
        del t, ours, native
