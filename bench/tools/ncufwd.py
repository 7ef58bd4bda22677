"""Three tf32 forwards with x and y in the layouts named in argv[1] ('clcl', 'clnc', 'ncnc', 'nccl'), on the row
named in argv[2] if given and not empty (else the selector's), of the sweep case named in argv[3] (default: the
headline), with direct.ATTR set to VALUE by an optional argv[4] ATTR=VALUE (booleans: 1/0, true/false, on/off, or empty for False), for ncu:

    python bench/tools/ncufwd.py ncnc "" unet3d-dec3 WFOLD_WRITES_NCDHW=1   # v0.65 Next 6, on its branch
"""
import sys, torch
from bench.shapes import HEADLINE, SWEEP
from bench.tools.common import knob_value, split_knob
from convt3d_cutlass import direct, launch
from convt3d_cutlass.layouts import CL
mode = sys.argv[1]
row = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None
c = {s.name: s for s in list(SWEEP) + [HEADLINE]}[sys.argv[3] if len(sys.argv) > 3 else "headline"]
if len(sys.argv) > 4:
    attr, value = split_knob(sys.argv[4])
    setattr(direct, attr, knob_value(getattr(direct, attr), value))
p = c.problem()
x = torch.randn(c.n, c.c_in, *c.spatial, device="cuda")
if mode[:2] == "cl":
    x = x.to(memory_format=CL)
w = torch.randn(c.c_in, c.c_out, c.k, c.k, c.k, device="cuda") * 0.1
for _ in range(3):
    y = launch.forward(x, w, None, p, "tf32", row, ncdhw=(mode[2:] == "nc"))
torch.cuda.synchronize()
print(mode, c.name, y.is_contiguous(), y.is_contiguous(memory_format=CL))
