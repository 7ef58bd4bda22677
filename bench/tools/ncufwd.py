"""Three headline tf32 forwards with x and y in the layouts named in argv[1] ('clcl', 'clnc', 'ncnc', 'nccl'),
on the row named in argv[2] if given (else the selector's), for ncu."""
import sys, torch
from bench.shapes import HEADLINE as c
from convt3d_cutlass import launch
from convt3d_cutlass.layouts import CL
from convt3d_cutlass.problem import Problem
mode = sys.argv[1]
p = Problem(c.n, c.c_in, c.c_out, c.spatial, c.k, c.stride, c.padding)
x = torch.randn(c.n, c.c_in, *c.spatial, device="cuda")
if mode[:2] == "cl":
    x = x.to(memory_format=CL)
w = torch.randn(c.c_in, c.c_out, c.k, c.k, c.k, device="cuda") * 0.1
for _ in range(3):
    y = launch.forward(x, w, None, p, "tf32", sys.argv[2] if len(sys.argv) > 2 else None, ncdhw=(mode[2:] == "nc"))
torch.cuda.synchronize()
print(mode, y.is_contiguous(), y.is_contiguous(memory_format=CL))
