"""Two tf32 forwards of a sweep layer (default U-Net 64->32) on its selected kernel, for ncu (v0.40):
argv[1] cl (channels_last_3d y), plain (NCDHW, plain stores) or rows (NCDHW as landed: the implicit GEMM's
SECTORS form where direct.igemm_sector_pairs); argv[2] the case name.

    ncu -k regex:igemm_kernel -s 1 -c 1 --metrics ... --csv --page raw python bench/tools/ncuigfwd.py rows unet3d-dec3
"""
import sys
import torch
from bench.shapes import SWEEP
from convt3d_cutlass import direct, launch
from convt3d_cutlass.layouts import CL
mode, name = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "unet3d-dec3"
c = {s.name: s for s in SWEEP}[name]
p = c.problem()
if mode == "plain":
    direct.writes_ncdhw = lambda k, p, op, n=None: True
    direct.ncdhw_sectors = lambda k, p, op, n=None: False
x = torch.randn(c.n, c.c_in, *c.spatial, device="cuda").to(memory_format=CL)
w = torch.randn(c.c_in, c.c_out, c.k, c.k, c.k, device="cuda") * 0.1
for _ in range(2):
    y = launch.forward(x, w, None, p, "tf32", ncdhw=(mode != "cl"))
torch.cuda.synchronize()
print(mode, name, y.is_contiguous(), y.is_contiguous(memory_format=CL))
