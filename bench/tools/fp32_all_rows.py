"""fp32 per pass, every row that can run it (stock SIMT tiles, FFMA tap reuse, FFMA implicit GEMM) vs cuDNN
(best of benchmark on/off), channels_last; errors against the selected row. Args: comma-separated layer
names, then optionally comma-separated passes (fwd, gi, gw; default all)."""
import sys, torch
from convt3d_cutlass import launch, selector
from convt3d_cutlass.kernel_table import DIRECT_SIMT_KERNELS, DIRECT_WGRAD_SIMT_KERNELS, kernels_for
sys.path.insert(0, ".")
from bench.tools.common import cudnn_best_ms, cudnn_passes, layer_tensors, median_ms as med  # noqa: E402
torch.backends.cudnn.allow_tf32 = False
dev = torch.device("cuda", 0)
OPS = {"fwd": "dgrad", "gi": "fprop", "gw": "wgrad"}
passes = sys.argv[2].split(",") if len(sys.argv) > 2 else list(OPS)
for name in sys.argv[1].split(","):
    p, x, w, gy = layer_tensors(name)
    cud = cudnn_passes(p, x, w, gy)
    ours = {"fwd": lambda c: launch.forward(x, w, None, p, "fp32", c), "gi": lambda c: launch.grad_input(gy, w, p, "fp32", c),
            "gw": lambda c: launch.grad_weight(gy, x, p, "fp32", c)}
    for key, op in OPS.items():
        if key not in passes:
            continue
        best = cudnn_best_ms(cud[key], 7)
        sel = launch._select(p, op, "fp32", None, dev).name
        ref = ours[key](None).clone()
        rows = list(kernels_for(op, "fp32")) + list(kernels_for(op, "fp32", "ffma"))
        if op == "wgrad":
            rows += [k for k in DIRECT_WGRAD_SIMT_KERNELS if selector.direct_wgrad_fits(p, k)]
        else:
            rows += [k for k in DIRECT_SIMT_KERNELS if selector.direct_fits(p, op, k)]
        res = []
        for k in rows:
            o = ours[key](k.name)
            e = ((o - ref).norm() / ref.norm()).item()
            t = med(lambda: ours[key](k.name), 9)
            res.append((t, f"{k.name.split('_fp32_')[1]}{'*' if k.name == sel else ''}={t:.3f}{'' if e < 1e-5 else f'(e{e:.0e})'}"))
        res.sort()
        print(f"{name:12s} {key} cudnn={best:.3f} " + " ".join(r[1] for r in res), flush=True)
    x = gy = None
    torch.cuda.empty_cache()
