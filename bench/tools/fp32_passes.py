"""fp32 per pass: ours (selected) vs cuDNN (benchmark on/off, best), sweep cases, channels_last."""
import sys, torch
from convt3d_cutlass import launch
from convt3d_cutlass.layouts import CL
sys.path.insert(0, ".")
from bench.shapes import SWEEP  # noqa: E402
from bench.tools.common import cudnn_best_ms, cudnn_passes, median_ms as med  # noqa: E402
torch.backends.cudnn.allow_tf32 = False
dev = torch.device("cuda", 0)
for c in SWEEP[1:]:
    p = c.problem()
    x = torch.randn(c.n, c.c_in, *c.spatial, device="cuda").to(memory_format=CL)
    w = torch.randn(c.c_in, c.c_out, c.k, c.k, c.k, device="cuda")
    gy = torch.randn((c.n, c.c_out) + p.out_spatial, device="cuda").to(memory_format=CL)
    cud = cudnn_passes(p, x, w, gy)
    ours = {"fwd": lambda: launch.forward(x, w, None, p, "fp32"), "gi": lambda: launch.grad_input(gy, w, p, "fp32"),
            "gw": lambda: launch.grad_weight(gy, x, p, "fp32")}
    out = []
    for k in ("fwd", "gi", "gw"):
        best = cudnn_best_ms(cud[k])
        sel = launch._select(p, {"fwd": "dgrad", "gi": "fprop", "gw": "wgrad"}[k], "fp32", None, dev).name
        o = med(ours[k])
        out.append(f"{k} {o:.3f}/{best:.3f}={best / o:.2f}x [{sel}]")
    print(f"{c.name:12s} s{c.stride} k{c.k} " + "  ".join(out), flush=True)
    x = gy = None
    torch.cuda.empty_cache()
