"""grad_input of stride-1 layers on NCDHW: CL kernel + our transpose vs the kernel writing NCDHW (ON)."""
import torch
from bench.shapes import SWEEP
from convt3d_cutlass import launch, direct
from convt3d_cutlass.layouts import CL, to_format
from convt3d_cutlass.problem import Problem

def med(fn, reps=25):
    for _ in range(3): fn()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(True), torch.cuda.Event(True)
        a.record(); fn(); b.record(); b.synchronize(); ts.append(a.elapsed_time(b))
    ts.sort(); return ts[len(ts) // 2]

for c in SWEEP:
    if c.stride != 1: continue
    p = Problem(c.n, c.c_in, c.c_out, c.spatial, c.k, c.stride, c.padding)
    gy = torch.randn(c.n, c.c_out, *p.out_spatial, device="cuda").to(memory_format=CL)
    w = torch.randn(c.c_in, c.c_out, c.k, c.k, c.k, device="cuda") * 0.05
    plan = launch._plan(p, "fprop", "tf32", None, gy.device, None)
    base = lambda: to_format(launch.grad_input(gy, w, p, "tf32"), False)
    old = direct.NCDHW_MIN_REDUCTION
    direct.NCDHW_MIN_REDUCTION = 0
    on = lambda: launch.grad_input(gy, w, p, "tf32", ncdhw=True)
    y_on = on(); direct.NCDHW_MIN_REDUCTION = old
    y0 = base()
    same = y_on.is_contiguous() and torch.equal(y0, y_on)
    t0 = med(base)
    direct.NCDHW_MIN_REDUCTION = 0
    t1 = med(on)
    direct.NCDHW_MIN_REDUCTION = old
    t2 = med(lambda: launch.grad_input(gy, w, p, "tf32"))
    print(f"{c.name:12s} {plan.name:40s} red {direct.reduction_length(p, 'fprop'):5d}  CL {t2:.3f}  CL+T {t0:.3f}  ON {t1:.3f}  ratio {t0/t1:.2f}x same={same}", flush=True)

# The forward reading NCDHW x (IN) against channels_last x, both writing NCDHW, at two C_in (filter sizes).
for cin in (48, 24, 16):
    p = Problem(8, cin, 24, (96, 96, 96), 3, 1, 0)
    x = torch.randn(8, cin, 96, 96, 96, device="cuda")
    xc = x.to(memory_format=CL)
    w = torch.randn(cin, 24, 3, 3, 3, device="cuda") * 0.05
    plan = launch._plan(p, "dgrad", "tf32", None, x.device, None)
    r = direct.reads_ncdhw(plan.k, plan.table, cin, x)
    smem = direct._wgmma_smem(plan.k.block, plan.k.kx, plan.k.bn, plan.k.warpgroups, plan.k.stages, 3, 3, cin, True, False, True)
    smem0 = direct._wgmma_smem(plan.k.block, plan.k.kx, plan.k.bn, plan.k.warpgroups, plan.k.stages, 3, 3, cin, True, False, False)
    ta = med(lambda: launch.forward(xc, w, None, p, "tf32", ncdhw=True))
    tb = med(lambda: launch.forward(x, w, None, p, "tf32", ncdhw=True))
    print(f"fwd cin {cin} {plan.name} reads_ncdhw={r} smem in {smem} cl {smem0}: CL-x {ta:.3f}  NCDHW-x {tb:.3f}", flush=True)
