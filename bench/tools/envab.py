"""Same-process A/B of a kernel knob read from the environment at every launch (v0.29 measured
CONVT3D_WS_STAGGER with it, a knob since reverted with its kernel change): forward, grad_input and the training step as the benchmark times them, cuDNN's step in every
round; rounds alternate the settings, in reverse order every other round (ABBA). Each setting's forward
and grad_input are checked against the first's (the same tf32 operands: only the fp32 accumulation order
may differ).

    python bench/tools/envab.py VAR A,B [LAYERS] [ROUNDS] [LAYOUTS] [PRECISION] [PASSES]
    # PASSES: comma-separated, of forward, grad_input, grad_weight, step (default forward,grad_input,step)
    # v0.29: envab.py CONVT3D_WS_STAGGER 0,1 headline,vnet-refine 5 NDHWC,NCDHW tf32
    # LAYERS: sweep case names, or --shape specs separated by "/" (v0.79: ENVAB_TOL=1e-3 envab.py CONVT3D_THIN 1,0
    # 2,32,1,64,64,64,3,2,1,1/4,32,1,32,32,32,3,2,1,1 5 NDHWC,NCDHW tf32 grad_input,step)
"""
import os
import sys

import torch

from bench.shapes import HEADLINE, SWEEP, parse_shape
from bench.tools.common import AB_PASSES, abba, abba_header, abba_row
from convt3d_cutlass import eager, launch

var, values = sys.argv[1], sys.argv[2].split(",")
spec = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else "headline"
names = spec.split("/") if "/" in spec or spec[:1].isdigit() else spec.split(",")
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 5
layouts = (sys.argv[5] if len(sys.argv) > 5 else "NDHWC,NCDHW").split(",")
prec = sys.argv[6] if len(sys.argv) > 6 else "tf32"
passes = tuple(sys.argv[7].split(",")) if len(sys.argv) > 7 else AB_PASSES
cases = {c.name: c for c in list(SWEEP) + [HEADLINE]}
# The settings' outputs agree to 1e-5 where only the accumulation order differs; ENVAB_TOL for kernels that round
# their tf32 operands differently (v0.79: 1e-3 for the thin rows against the stock tile).
tol = float(os.environ.get("ENVAB_TOL", "1e-5"))
torch.backends.cudnn.allow_tf32 = prec != "fp32"
torch.backends.cudnn.benchmark = True


def apply(v):
    os.environ[var] = v
    eager._plans.clear()  # knobs the policy reads when the eager node's plan is built
    launch._plan_cached.cache_clear()  # ... or a pass's plan (e.g. CONVT3D_WGRAD_RANGES, v0.34)
    launch._select_cached.cache_clear()  # ... or the selector's choice (e.g. CONVT3D_PATCH, v0.74)


a, b = values
print(f"{prec}, ms, median of {rounds} rounds (ABBA); {var} = {a} against {b}")
print(abba_header(a, b, passes))
for nm in names:
    for lay in layouts:
        med, cud = abba(cases[nm] if nm in cases else parse_shape(nm), lay == "NDHWC", values, apply, prec, rounds,
                        tol=tol, passes=passes)
        print(abba_row(nm, lay, med, cud, a, b, passes))
os.environ.pop(var, None)
