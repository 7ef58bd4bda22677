"""Same-process A/B of the warp-specialized tap-reuse rows against their RS twins (A from registers,
selector.WGMMA_RS_TWINS; kernel_table.WGMMA_RS_KERNELS keeps the k5 twin, v0.28 measured the k3 ones too): forward, grad_input and the training step as the benchmark times them, with
cuDNN's step in every round; rounds alternate the settings, in reverse order every other round (ABBA).
Each setting's forward and grad_input are checked against the other's (the same tf32 operands: only the
fp32 accumulation order differs).

    python bench/tools/rsab.py [LAYERS] [ROUNDS] [LAYOUTS]     # default vnet-refine 5 NDHWC,NCDHW
"""
import sys

import torch

from bench.shapes import HEADLINE, SWEEP
from bench.tools.common import abba, abba_header, abba_row, replan
from convt3d_cutlass import launch, selector

names = (sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else "vnet-refine").split(",")
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
layouts = (sys.argv[3] if len(sys.argv) > 3 else "NDHWC,NCDHW").split(",")
cases = {c.name: c for c in list(SWEEP) + [HEADLINE]}
torch.backends.cudnn.allow_tf32 = True
torch.backends.cudnn.benchmark = True


def use(setting: str):
    selector.WGMMA_RS_TWINS = setting == "rs"
    replan()


def pick(c, setting):
    use(setting)
    p = c.problem()
    return launch._plan(p, "dgrad", "tf32", None, torch.device("cuda"), None).name


print(f"tf32, ms, median of {rounds} rounds (ABBA); ss = the ws rows, rs = their RS twins")
print(abba_header("ss", "rs") + "  picks")
for nm in names:
    c = cases[nm]
    picks = f"{pick(c, 'ss')} -> {pick(c, 'rs')}"
    for lay in layouts:
        med, cud = abba(c, lay == "NDHWC", ("ss", "rs"), use, "tf32", rounds)
        print(abba_row(nm, lay, med, cud, "ss", "rs") + "  " + picks)
use("rs")
