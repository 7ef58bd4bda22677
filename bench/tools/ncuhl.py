"""The headline's three tf32 passes as the eager step runs them (forward, grad_input with the bias sums,
grad_weight), channels_last_3d, the third call of each inside an NVTX range "prof", for ncu:

    ncu --clock-control none --nvtx --nvtx-include "prof/" --metrics ... python bench/tools/ncuhl.py
"""
import torch

from bench.runner import CaseTensors
from bench.shapes import HEADLINE as c
from convt3d_cutlass import launch
from convt3d_cutlass.problem import Problem

t = CaseTensors(c, True)
p = Problem(c.n, c.c_in, c.c_out, c.spatial, c.k, c.stride, c.padding, c.output_padding)
passes = (lambda: launch.forward(t.x, t.w, t.b, p, "tf32"),
          lambda: launch.grad_input_with_bias(t.gy, t.w, p, "tf32", None),
          lambda: launch.grad_weight(t.gy, t.x, p, "tf32", None))
for i in range(3):
    if i == 2:
        torch.cuda.nvtx.range_push("prof")
    for f in passes:
        f()
    if i == 2:
        torch.cuda.nvtx.range_pop()
torch.cuda.synchronize()
