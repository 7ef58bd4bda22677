"""GPU-only A/B of an environment knob the ws rows read at every launch (CONVT3D_WS_STAGES_BEYOND, unless VAR names
another: CONVT3D_WS_WCARRY) on the ws forward and
grad_input as the steps run them: channels_last_3d (grad_input with its bias sums) and NCDHW (forward read
and written NCDHW, grad_input on grad_y's converted copy, written NCDHW). Settings alternate ABBA in one
process; each kernel's time is hostgap.gpu_only's (launches queued behind a busy GPU, L2 flushed), so that
the sub-0.4 ms layers' host swing stays out (v0.69: envab's pass columns moved 0.21-0.34 ms on one
setting). Neither knob changes the arithmetic: every setting's outputs must equal the first's bit for bit.

    python bench/tools/wsstages.py A,B [LAYERS] [ROUNDS] [VAR] [PRECISION]   # v0.69: 99,0 headline,sr-head 5
    python bench/tools/wsstages.py 0,1 headline,sr-head,vnet-refine 5 CONVT3D_WS_WCARRY          # v0.70
"""
import os
import statistics
import sys

import torch

from bench.runner import CaseTensors
from bench.shapes import HEADLINE, SWEEP
from bench.tools.hostgap import gpu_only
from convt3d_cutlass import launch
from convt3d_cutlass.layouts import channels_last_with_sums

settings = sys.argv[1].split(",")
names = (sys.argv[2] if len(sys.argv) > 2 else "headline").split(",")
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
VAR = sys.argv[4] if len(sys.argv) > 4 else "CONVT3D_WS_STAGES_BEYOND"
prec = sys.argv[5] if len(sys.argv) > 5 else "tf32"
cases = {c.name: c for c in list(SWEEP) + [HEADLINE]}
torch.backends.cudnn.allow_tf32 = True


def first(r):
    return r[0] if isinstance(r, tuple) else r


print(f"GPU ms, {prec}, median of {rounds} rounds (ABBA); {VAR} = {settings[0]} against {settings[1]}; ratio = B / A")
for nm in names:
    c = cases[nm]
    p = c.problem()
    for cl in (True, False):
        t = CaseTensors(c, cl)
        if cl:
            fns = {"forward": lambda: launch.forward(t.x, t.w, t.b, p, prec),
                   "grad_input": lambda: launch.grad_input_with_bias(t.gy, t.w, p, prec, None)}
        else:
            g, _ = channels_last_with_sums(t.gy)
            fns = {"forward": lambda: launch.forward(t.x, t.w, t.b, p, prec, ncdhw=True),
                   "grad_input": lambda: launch.grad_input(g, t.w, p, prec, None, ncdhw=True)}
        ref = {}
        for v in settings:
            os.environ[VAR] = v
            for k, f in fns.items():
                out = first(f())
                if k in ref:
                    assert torch.equal(out, ref[k]), (nm, cl, k, v)
                ref[k] = out
        res = {(v, k): [] for v in settings for k in fns}
        for r in range(rounds):
            for v in (settings if r % 2 == 0 else settings[::-1]):
                os.environ[VAR] = v
                for k, f in fns.items():
                    res[(v, k)].append(gpu_only(f, reps=20))
        a, b = settings
        cells = []
        for k in fns:
            ma, mb = statistics.median(res[(a, k)]), statistics.median(res[(b, k)])
            cells.append(f"{k} {ma:.4f} / {mb:.4f} = {mb / ma:.3f}")
        print(f"{nm:10s} {'NDHWC' if cl else 'NCDHW'}  " + "   ".join(cells), flush=True)
os.environ.pop(VAR, None)
