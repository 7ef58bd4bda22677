"""Three calls each of the implicit-GEMM kernels that v0.27 left as the next bounds, for ncu: the strided
forward on the n64 row (U-Net 128->64, dec2: 1.4x behind cuDNN's dgrad) and grad_input of U-Net 64->32 (dec3)
with and without the fused bias sums (the summing warps bind it there). channels_last_3d, tf32.

    ncu --clock-control none -k regex:igemm_kernel --launch-skip 2 --launch-count 1 --metrics ... \\
        python bench/tools/ncuig.py fwd|gi|gisums
"""
import sys

import torch

from bench.runner import CaseTensors
from bench.shapes import SWEEP
from convt3d_cutlass import launch

what = sys.argv[1]
name = "unet3d-dec2" if what == "fwd" else "unet3d-dec3"
c = [c for c in SWEEP if c.name == name][0]
t = CaseTensors(c, True)
p = c.problem()
for _ in range(3):
    if what == "fwd":
        launch.forward(t.x, t.w, t.b, p, "tf32")
    elif what == "gi":
        launch.grad_input(t.gy, t.w, p, "tf32")
    else:
        launch.grad_input_with_bias(t.gy, t.w, p, "tf32")
torch.cuda.synchronize()
