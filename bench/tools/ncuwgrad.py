"""grad_weight of a named layer on a forced kernel row, three calls, the third in NVTX range 'prof', for ncu
(v0.38: the kw-fold implicit GEMM and its swapped form on the 256->128 layers):

    ncu --nvtx --nvtx-include "prof/" -k regex:igemm_wgrad --section SourceCounters -o rep \\
        python bench/tools/ncuwgrad.py unet3d-dec1 igemm_wgrad_tf32_1x4x8_n64_kx3_sw_s4

A fourth argument NCDHW gives x in its NCDHW storage (v0.63: the rows that read it in place), grad_y staying
channels_last_3d as the backward hands it over.
"""
import sys

import torch

from bench.tools.common import layer_tensors
from convt3d_cutlass import launch

prob, x, w, gy = layer_tensors(sys.argv[1])
if len(sys.argv) > 4 and sys.argv[4] == "NCDHW":
    x = x.contiguous()
for i in range(3):
    if i == 2:
        torch.cuda.nvtx.range_push("prof")
    launch.grad_weight(gy, x, prob, sys.argv[3] if len(sys.argv) > 3 else "tf32", sys.argv[2])
    if i == 2:
        torch.cuda.nvtx.range_pop()
torch.cuda.synchronize()
