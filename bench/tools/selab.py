"""Same-process A/B of a selector constant (selector.ATTR at two values, caches and eager plans cleared at
each switch), as the benchmark times the passes: ABBA rounds with cuDNN's step in each (common.abba, as
rsab.py and wfab.py for their one constant), forward and grad_input cross-checked between the settings;
then each setting's step peak extra memory beside cuDNN's (autotuned), as the benchmark measures it.
A layer is a sweep name or NAME=N,C_IN,C_OUT,SIDE,K,STRIDE,PADDING (a cubic x of that side); an empty value
is False. ATTR may name a constant of direct.py as direct.ATTR (its kernel modes, e.g. direct.FFMA_WGRAD_NCDHW).

    python bench/tools/selab.py [--set ATTR=V ...] ATTR A,B [LAYERS] [ROUNDS] [LAYOUTS] [PRECISION] [PASSES]
    # v0.56: selab.py SIMT_ONE_TAP_STOCK ,1 unet3d-k2,pw=2,64,32,32,1,1,0 5 NDHWC,NCDHW fp32 grad_input,step
    # v0.83: selab.py direct.FFMA_WGRAD_NCDHW ,1 medium,unet3d-dec3 3 NCDHW fp32 grad_weight,step
"""
import sys

import torch

from bench.runner import CaseTensors, _native_fns, _our_fns
from bench.shapes import HEADLINE, SWEEP, Case
from bench.timing import peak_extra_mb
from bench.tools.common import AB_PASSES, abba, abba_header, abba_row, replan
from convt3d_cutlass import direct, selector


def layer(spec: str) -> Case:
    if "=" not in spec:
        return {c.name: c for c in list(SWEEP) + [HEADLINE]}[spec]
    name, nums = spec.split("=")
    n, c_in, c_out, side, k, s, p = map(int, nums.split(","))
    return Case(name, n, c_in, c_out, (side,) * 3, k, s, p)


def knob(name):
    """(module, attribute) of a selector constant, or of direct.py's as direct.ATTR."""
    return (direct, name[len("direct."):]) if name.startswith("direct.") else (selector, name)


# --set ATTR=V (repeatable, before the arguments): another constant held at V for both settings.
while len(sys.argv) > 2 and sys.argv[1] == "--set":
    held, value = sys.argv[2].split("=")
    mod, name = knob(held)
    setattr(mod, name, type(getattr(mod, name))(value))
    print(f"held: {mod.__name__}.{name} = {value!r}")
    del sys.argv[1:3]
attr, values = sys.argv[1], sys.argv[2].split(",")
module, attr = knob(attr)
specs = sys.argv[3].split(",") if len(sys.argv) > 3 else ["headline"]
names = []
for s in specs:  # a layer of one's own carries six commas: rejoin its numbers
    if names and "=" in names[-1] and names[-1].count(",") < 6:
        names[-1] += "," + s
    else:
        names.append(s)
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 5
layouts = (sys.argv[5] if len(sys.argv) > 5 else "NDHWC,NCDHW").split(",")
prec = sys.argv[6] if len(sys.argv) > 6 else "tf32"
passes = tuple(sys.argv[7].split(",")) if len(sys.argv) > 7 else AB_PASSES
torch.backends.cudnn.allow_tf32 = prec != "fp32"
torch.backends.cudnn.benchmark = True
landed = getattr(module, attr)


def apply(v):
    setattr(module, attr, type(landed)(v))
    replan()


print(f"{prec}, ms, median of {rounds} rounds (ABBA); {module.__name__}.{attr} = {values[0]!r} against {values[1]!r}")
print(abba_header(*values, passes))
for nm in names:
    case = layer(nm)
    for lay in layouts:
        med, cud = abba(case, lay == "NDHWC", values, apply, prec, rounds, passes=passes)
        print(abba_row(case.name, lay, med, cud, *values, passes), flush=True)
        t = CaseTensors(case, lay == "NDHWC")
        mem = []
        for v in values:
            apply(v)
            step = _our_fns(t, prec)[1]["step"]
            step()  # the plan's cached filters, allocated on a setting's first call, are not the step's
            mem.append(peak_extra_mb(step))
        mem.append(peak_extra_mb(_native_fns(t)["step"]))
        print(f"{'':12s} {lay:6s} step peak extra MiB: {values[0]!r} {mem[0]:.0f}, {values[1]!r} {mem[1]:.0f}, "
              f"cuDNN (autotuned) {mem[2]:.0f}", flush=True)
        del t
setattr(module, attr, landed)
replan()
