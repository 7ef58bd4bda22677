"""grad_input of headline@96x96x94 (grad_y rows 96 wide, so the ring form reads NCDHW grad_y in place) in
tf32, written NCDHW: 'in' reads grad_y in place (the IN instantiation), 'sums' also sums the bias (IN + SUMS),
'copy' also writes grad_weight's channels_last_3d copy. Prints each mode's GPU time (hostgap.gpu_only) with
no argument after the modes; with 'ncu' runs the pass three times for

    ncu -k regex:wgmma_ws_kernel --launch-skip 2 --launch-count 1 ... python bench/tools/ncugisums.py MODE ncu

A third argument DxHxW sets x's size (96x96x96: the headline itself, grad_y rows 98 wide, read by rows; no
'in' mode there). v0.53: where the 0.6 ms that the sums cost on top of the in-place read goes.
"""
import dataclasses
import sys

import torch

from bench.runner import CaseTensors
from bench.shapes import HEADLINE
from bench.tools.hostgap import gpu_only
from convt3d_cutlass import direct, launch

direct.COPY_GRAD_Y = True
size = sys.argv[3] if len(sys.argv) > 3 else "96x96x94"
c = dataclasses.replace(HEADLINE, spatial=tuple(int(v) for v in size.split("x")))
t = CaseTensors(c, False)
p = c.problem()
modes = {
    "in": lambda: launch.grad_input(t.gy, t.w, p, "tf32", ncdhw=True),
    "sums": lambda: launch.grad_input_copying(t.gy, t.w, p, "tf32", ncdhw=True, with_copy=False),
    "copy": lambda: launch.grad_input_copying(t.gy, t.w, p, "tf32", ncdhw=True),
}
if len(sys.argv) > 2 and sys.argv[2] == "ncu":
    for _ in range(3):
        modes[sys.argv[1]]()
    torch.cuda.synchronize()
else:
    for m in sys.argv[1].split(","):
        print(f"{m:5s} {gpu_only(modes[m], 10):.3f} ms", flush=True)
