"""Three headline tf32 grad_input launches for ncu, grad_y channels_last_3d as the step hands it over,
grad_x written channels_last_3d ('cl') or NCDHW ('nc', the whole-sector stores): where the NCDHW step's
grad_input loses its 0.5 ms (steprof v0.48: 2.297 against 1.801 ms with the bias sums).

    ncu --clock-control none -k regex:wgmma_ws_kernel --launch-skip 2 --launch-count 1 --set full \\
        python bench/tools/ncugi.py cl|nc
"""
import sys

import torch

from bench.shapes import HEADLINE as c
from convt3d_cutlass import launch
from convt3d_cutlass.layouts import CL
from convt3d_cutlass.problem import Problem

mode = sys.argv[1]
p = Problem(c.n, c.c_in, c.c_out, c.spatial, c.k, c.stride, c.padding)
gy = torch.randn((c.n, c.c_out) + p.out_spatial, device="cuda").to(memory_format=CL)
w = torch.randn(c.c_in, c.c_out, c.k, c.k, c.k, device="cuda") * 0.1
for _ in range(3):
    gx = launch.grad_input(gy, w, p, "tf32", ncdhw=(mode == "nc"))
torch.cuda.synchronize()
print(mode, gx.is_contiguous(), gx.is_contiguous(memory_format=CL))
