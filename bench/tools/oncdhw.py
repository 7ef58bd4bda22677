"""NCDHW output: the ws kernel's NCDHW epilogue vs its channels_last_3d epilogue + our transpose, per pass."""
import torch
from bench.shapes import SWEEP
from bench.timing import bench
from convt3d_cutlass import launch, direct
from convt3d_cutlass.layouts import CL, to_format
dev = torch.device("cuda", 0)
for c in SWEEP:
    if c.output_padding:
        continue
    p = c.problem()
    x = torch.randn(c.n, c.c_in, *c.spatial, device="cuda").to(memory_format=CL)
    w = torch.randn(c.c_in, c.c_out, c.k, c.k, c.k, device="cuda") * 0.05
    gy = torch.randn((c.n, c.c_out) + p.out_spatial, device="cuda").to(memory_format=CL)
    row = []
    for op, fn_on, fn_off in (
        ("dgrad", lambda: launch.forward(x, w, None, p, "tf32", ncdhw=True),
                  lambda: to_format(launch.forward(x, w, None, p, "tf32"), False)),
        ("fprop", lambda: launch.grad_input(gy, w, p, "tf32", ncdhw=True),
                  lambda: to_format(launch.grad_input(gy, w, p, "tf32"), False))):
        k = launch._select(p, op, "tf32", None, dev)
        if not direct.writes_ncdhw(k, p, op):
            row.append(f"{op}: n/a ({k.name})")
            continue
        a, b = bench(fn_on, reps=15), bench(fn_off, reps=15)
        cr = c.c_in if op == "dgrad" else c.c_out
        co = c.c_out if op == "dgrad" else c.c_in
        row.append(f"{op}: on {a:.3f} off {b:.3f} ({b/a:.2f}x) red {cr * c.k**3} co {co} [{k.name}]")
    print(f"{c.name:12s} " + " | ".join(row))
