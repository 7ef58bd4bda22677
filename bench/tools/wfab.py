"""Same-process A/B of the w-fold rows (selector.WGMMA_WFOLD) on the strided forwards: the forward and the
training step as the benchmark times them, the selector without the w fold ("old") against with it ("wf"),
with cuDNN's step in every round; rounds alternate the settings, in reverse order every other round (ABBA,
bench.tools.common.abba, as rsab.py). The selector's caches and the eager node's plans are cleared at every
switch, so each side plans as a fresh process would. Each setting's forward and grad_input are checked
against the other's at tf32 class (different kernels round differently).

    python bench/tools/wfab.py [LAYERS] [ROUNDS] [LAYOUTS]     # default: every strided layer, 3, NDHWC,NCDHW
"""
import sys

import torch

from bench.shapes import SWEEP
from bench.tools.common import abba, abba_header, abba_row, replan
from convt3d_cutlass import launch, selector

strided = [c.name for c in SWEEP if c.stride > 1]
names = sys.argv[1].split(",") if len(sys.argv) > 1 and sys.argv[1] else strided
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
layouts = (sys.argv[3] if len(sys.argv) > 3 else "NDHWC,NCDHW").split(",")
cases = {c.name: c for c in SWEEP}
passes = ("forward", "step")
torch.backends.cudnn.allow_tf32 = True
torch.backends.cudnn.benchmark = True


def use(setting: str):
    selector.WGMMA_WFOLD = setting == "wf"
    replan()


def pick(c, setting, layout):
    use(setting)
    p = c.problem()
    return launch._plan(p, "dgrad", "tf32", None, torch.device("cuda"), None, out_ncdhw=layout == "NCDHW").name


print(f"tf32, ms, median of {rounds} rounds (ABBA); old = the selector without the w fold, wf = with it")
print(abba_header("old", "wf", passes) + "  picks")
for nm in names:
    c = cases[nm]
    for lay in layouts:
        picks = f"{pick(c, 'old', lay)} -> {pick(c, 'wf', lay)}"
        med, cud = abba(c, lay == "NDHWC", ("old", "wf"), use, "tf32", rounds, tol=2e-3, passes=passes)
        print(abba_row(nm, lay, med, cud, "old", "wf", passes) + "  " + picks, flush=True)
use("wf")
