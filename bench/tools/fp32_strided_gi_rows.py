"""fp32 strided grad_input: every FFMA row (parity sum) vs stock vs cuDNN, channels_last and NCDHW gy."""
import sys, torch
from convt3d_cutlass import launch, selector
from convt3d_cutlass.kernel_table import DIRECT_SIMT_KERNELS
from convt3d_cutlass.layouts import CL
sys.path.insert(0, ".")
from bench.shapes import SWEEP  # noqa: E402
from bench.tools.common import cudnn_best_ms, cudnn_passes, median_ms as med  # noqa: E402
torch.backends.cudnn.allow_tf32 = False
dev = torch.device("cuda", 0)
for c in SWEEP:
    if c.stride == 1:
        continue
    p = c.problem()
    x = torch.randn(c.n, c.c_in, *c.spatial, device="cuda").to(memory_format=CL)
    w = torch.randn(c.c_in, c.c_out, c.k, c.k, c.k, device="cuda")
    gy = torch.randn((c.n, c.c_out) + p.out_spatial, device="cuda").to(memory_format=CL)
    gyn = gy.contiguous()
    best = cudnn_best_ms(cudnn_passes(p, x, w, gy)["gi"])
    sel = launch._select(p, "fprop", "fp32", None, dev).name
    res = {"cudnn": best}
    ref = launch.grad_input(gy, w, p, "fp32", selector.select_config(p, "fprop", "fp32", family="cutlass2x").name)
    res["stock"] = med(lambda: launch.grad_input(gy, w, p, "fp32",
                                                 selector.select_config(p, "fprop", "fp32", family="cutlass2x").name))
    for k in DIRECT_SIMT_KERNELS:
        if not selector.direct_fits(p, "fprop", k):
            continue
        g = launch.grad_input(gy, w, p, "fp32", k.name)
        e = ((g - ref).norm() / ref.norm()).item()
        res[k.name[12:] + f"(e{e:.0e})"] = med(lambda: launch.grad_input(gy, w, p, "fp32", k.name))
        res[k.name[12:] + "-nc"] = med(lambda: launch.grad_input(gyn, w, p, "fp32", k.name, ncdhw=True))
    print(f"{c.name:12s} sel={sel} " + "  ".join(f"{k}={v:.3f}" for k, v in res.items()), flush=True)
    x = gy = gyn = None
    torch.cuda.empty_cache()
