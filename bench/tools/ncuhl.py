"""The headline's three tf32 passes as the eager step runs them (forward, grad_input with the bias sums,
grad_weight), the third call of each inside an NVTX range "prof", for ncu. argv[1] "nc": NCDHW x and grad_y, as
the NCDHW step runs them (forward reading and writing NCDHW, grad_y converted once with its sums, grad_input
writing NCDHW, grad_weight reading x in place); default channels_last_3d.

    ncu --clock-control none --nvtx --nvtx-include "prof/" --metrics ... python bench/tools/ncuhl.py [nc]
"""
import sys

import torch

from bench.runner import CaseTensors
from bench.shapes import HEADLINE as c
from convt3d_cutlass import launch
from convt3d_cutlass.layouts import channels_last_with_sums

nc = len(sys.argv) > 1 and sys.argv[1] == "nc"
t = CaseTensors(c, not nc)
p = c.problem()
if nc:
    def backward():
        g, _ = channels_last_with_sums(t.gy)
        launch.grad_input(g, t.w, p, "tf32", None, ncdhw=True)
        launch.grad_weight(g, t.x, p, "tf32", None)

    passes = (lambda: launch.forward(t.x, t.w, t.b, p, "tf32", ncdhw=True), backward)
else:
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
