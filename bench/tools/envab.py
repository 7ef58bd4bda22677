"""Same-process A/B of a kernel knob read from the environment at every launch (v0.29 measured
CONVT3D_WS_STAGGER with it, a knob since reverted with its kernel change): forward, grad_input and the training step as the benchmark times them, cuDNN's step in every
round; rounds alternate the settings, in reverse order every other round (ABBA). Each setting's forward
and grad_input are checked against the first's (the same tf32 operands: only the fp32 accumulation order
may differ).

    python bench/tools/envab.py VAR A,B [LAYERS] [ROUNDS] [LAYOUTS] [PRECISION]
    # v0.29: envab.py CONVT3D_WS_STAGGER 0,1 headline,vnet-refine 5 NDHWC,NCDHW tf32
"""
import os
import statistics
import sys

import torch

from bench.runner import CaseTensors, _native_fns, _our_fns
from bench.shapes import HEADLINE, SWEEP
from bench.timing import bench

var, values = sys.argv[1], sys.argv[2].split(",")
names = (sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else "headline").split(",")
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 5
layouts = (sys.argv[5] if len(sys.argv) > 5 else "NDHWC,NCDHW").split(",")
prec = sys.argv[6] if len(sys.argv) > 6 else "tf32"
cases = {c.name: c for c in list(SWEEP) + [HEADLINE]}
torch.backends.cudnn.allow_tf32 = prec != "fp32"
torch.backends.cudnn.benchmark = True
passes = ("forward", "grad_input", "step")


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


a, b = values
print(f"{prec}, ms, median of {rounds} rounds (ABBA); {var} = {a} against {b}")
print(f"{'layer':12s} {'layout':6s} " + " ".join(f"{p + ' ' + a:>13s} {p + ' ' + b:>13s} {'gain':>5s}" for p in passes)
      + f" {'cuDNN step':>10s}")
for nm in names:
    for lay in layouts:
        t = CaseTensors(cases[nm], lay == "NDHWC")
        native = _native_fns(t)["step"]
        native()
        fns = _our_fns(t, prec)[1]
        res = {(v, p): [] for v in values for p in passes}
        ref, cud = None, []
        for v in values:
            os.environ[var] = v
            out = {p: fns[p]() for p in ("forward", "grad_input")}
            if ref is not None:
                errs = [rel(out[p], ref[p]) for p in out]
                assert max(errs) < 1e-5, (nm, lay, errs)
            ref = out
        for r in range(rounds):
            cud.append(bench(native))
            for v in (values if r % 2 == 0 else values[::-1]):
                os.environ[var] = v
                for p in passes:
                    res[(v, p)].append(bench(fns[p]))
        os.environ.pop(var, None)
        med = {k: statistics.median(x) for k, x in res.items()}
        print(f"{nm:12s} {lay:6s} " + " ".join(f"{med[(a, p)]:13.3f} {med[(b, p)]:13.3f} "
                                                f"{med[(a, p)] / med[(b, p)]:5.3f}" for p in passes)
              + f" {statistics.median(cud):10.3f}")
        del t, native, fns
        torch.cuda.empty_cache()
