"""fp32 grad_weight: every FFMA row (9 vs 18 warps) on k3 layers, x channels_last and NCDHW."""
import sys, torch
from convt3d_cutlass import launch, selector
from convt3d_cutlass.kernel_table import DIRECT_WGRAD_SIMT_KERNELS
from convt3d_cutlass.layouts import CL
sys.path.insert(0, ".")
from bench.shapes import SWEEP  # noqa: E402
from bench.tools.common import median_ms as med  # noqa: E402
dev = torch.device("cuda", 0)
for c in SWEEP:
    if c.k != 3:
        continue
    p = c.problem()
    x = torch.randn(c.n, c.c_in, *c.spatial, device="cuda")
    xc = x.to(memory_format=CL)
    gy = torch.randn((c.n, c.c_out) + p.out_spatial, device="cuda").to(memory_format=CL)
    fl = p.flops() / 1e9
    sel = launch._select(p, "wgrad", "fp32", None, dev).name
    res = {}
    ref = None
    for k in DIRECT_WGRAD_SIMT_KERNELS:
        if not selector.direct_wgrad_fits(p, k):
            continue
        g = launch.grad_weight(gy, xc, p, "fp32", k.name)
        if ref is None: ref = g
        err = ((g - ref).norm() / ref.norm()).item()
        res[k.name[18:]] = (med(lambda: launch.grad_weight(gy, xc, p, "fp32", k.name)),
                            med(lambda: launch.grad_weight(gy, x, p, "fp32", k.name)), err)
    print(f"{c.name:12s} sel={sel[18:]} " + "  ".join(f"{k}={a:.3f}/{b:.3f}({fl / a:.1f}) e{e:.0e}" for k, (a, b, e) in res.items()), flush=True)
    x = xc = gy = None
    torch.cuda.empty_cache()
