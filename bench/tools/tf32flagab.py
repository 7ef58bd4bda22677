"""Same-process A/B of ``torch.backends.cudnn.allow_tf32`` around our passes (common.abba: ABBA rounds, cuDNN's
step in each, outputs cross-checked). The benchmark times ours with the flag as cuDNN's pairing wants it (off for
3xtf32 and fp32), selab.py and envab.py with it on for 3xtf32; v0.81 read the U-Net k2 up's 3xtf32
channels_last_3d step at 0.45-0.50 ms in the benchmark's processes and 0.22-0.34 in selab's on the same code.
Nothing in the package reads the flag for an explicit precision, so a difference here would be torch's.
v0.82 (logs/v82.log, call574): forward, grad_input and grad_weight 0.987-1.001x on the k2 up, its step 1.111x
and U-Net 256->128's grad_input 0.782x the other way: the rows' own swings; the sweep's k2 row read 0.266 ms.

    python bench/tools/tf32flagab.py [LAYERS] [ROUNDS] [LAYOUTS] [PRECISION] [PASSES]
    # v0.81 next: tf32flagab.py unet3d-k2,unet3d-dec1 7 NDHWC 3xtf32 forward,grad_input,grad_weight,step
"""
import sys

import torch

from bench.shapes import HEADLINE, SWEEP
from bench.tools.common import AB_PASSES, abba, abba_header, abba_row

names = (sys.argv[1] if len(sys.argv) > 1 else "unet3d-k2").split(",")
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
layouts = (sys.argv[3] if len(sys.argv) > 3 else "NDHWC").split(",")
prec = sys.argv[4] if len(sys.argv) > 4 else "3xtf32"
passes = tuple(sys.argv[5].split(",")) if len(sys.argv) > 5 else AB_PASSES
cases = {c.name: c for c in list(SWEEP) + [HEADLINE]}
torch.backends.cudnn.benchmark = True
values = ["off", "on"]


def apply(v):
    torch.backends.cudnn.allow_tf32 = v == "on"


print(f"{prec}, ms, median of {rounds} rounds (ABBA); cudnn.allow_tf32 off against on (cuDNN's step under the "
      f"setting last applied)")
print(abba_header(*values, passes))
for nm in names:
    for lay in layouts:
        med, cud = abba(cases[nm], lay == "NDHWC", values, apply, prec, rounds, passes=passes)
        print(abba_row(nm, lay, med, cud, *values, passes), flush=True)
