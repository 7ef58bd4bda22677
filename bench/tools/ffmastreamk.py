"""Exact-fp32 grad_weight on the FFMA implicit GEMM (csrc/ffma_wgrad.cuh): split-K at the selector's slice count
against the stream-K twin (`_sk`, one slot), per layer: GPU ms of kernel and finish (launch._finish) together.

    python bench/tools/ffmastreamk.py [LAYERS [REPS [ROWS]]]    # ROWS: 128,64,32 (tile rows to force; default:
                                                                # the selector's row only)

Per layer and tile: the split row at selector.split_k_slices and its `_sk` twin, timed by gpu_only (launches
queued behind a busy GPU, median of REPS) in two passes, the second in reverse order; printed: the mean of the
two medians, the partial sums' MB, the stream-K grid's pieces per tile (its CTAs over tiles), whether three
stream-K runs are bitwise equal, and the relative L2 error of each against float64.
"""
import sys

import torch
import torch.nn.functional as F

from bench.tools.common import ffma_wgrad_layers
from bench.tools.hostgap import gpu_only
from convt3d_cutlass import _extension, launch, selector
from convt3d_cutlass.kernel_table import BY_NAME, FFMA_WGRAD_KERNELS
from convt3d_cutlass.layouts import ndhwc

names = (sys.argv[1] if len(sys.argv) > 1 else
         "unet3d-dec1,gan3d-g1,vnet-up,unet3d-dec2,gan3d-g2,medium,unet3d-dec3,sr-up2,gan3d-g3,unet3d-k2,"
         "vnet-refine").split(",")
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 15
rows = [int(r) for r in sys.argv[3].split(",")] if len(sys.argv) > 3 else None
ops = torch.ops.convt3d_cutlass
sms = _extension.num_sms(0)

print(f"{'layer':12s} {'kernel':34s} {'slices':>6s} {'MB':>6s} {'pieces':>6s} {'gpu ms':>8s} {'vs split':>8s} "
      f"{'rel64':>8s} {'bitwise':>7s}")
for name, p, x, w, gy, plan in ffma_wgrad_layers(names, 34):
    X, G = ndhwc(x), ndhwc(gy)
    wd = torch.zeros(p.c_in, p.c_out, p.k, p.k, p.k, dtype=torch.float64, device="cuda", requires_grad=True)
    F.conv_transpose3d(x.double(), wd, None, p.stride, p.padding).backward(gy.double())
    ref = wd.grad
    m, n, kk = p.gemm("wgrad")
    for bm in rows or [plan.k.tile[0]]:
        split = next(k for k in FFMA_WGRAD_KERNELS if k.tile[0] == bm and not k.streamk)
        sk = BY_NAME[split.name + "_sk"]
        forms = {split.name: (split, selector.split_k_slices(p, split, sms)), sk.name: (sk, 1)}
        base_plan = launch._plan(p, "wgrad", "fp32", split.name, x.device, None)
        assert base_plan.slices == forms[split.name][1]

        def run(k, s):
            parts = torch.empty((s, p.c_in, p.k, p.k, p.k, p.c_out), device="cuda")
            return lambda: (ops.wgrad(k.name, X, G, parts, [p.padding] * 3, [p.stride] * 3),
                            launch._finish(parts, p))[1]

        t = {nm: [] for nm in forms}
        for order in (list(forms), list(forms)[::-1]):
            for nm in order:
                t[nm].append(gpu_only(run(*forms[nm]), reps))
        base = sum(t[split.name]) / 2
        for nm, (k, s) in forms.items():
            outs = [run(k, s)() for _ in range(3 if k.streamk else 1)]
            same = all(torch.equal(outs[0], o) for o in outs[1:]) if k.streamk else ""
            rel = ((outs[0].double() - ref).norm() / ref.norm()).item()
            pieces = f"{selector.streamk_pieces(p, k, sms):6.1f}" if k.streamk else ""
            ms = sum(t[nm]) / 2
            mark = " <- selector" if nm == plan.name else ""
            print(f"{name:12s} {nm:34s} {s:6d} {4 * s * m * n / 1e6:6.1f} {pieces:>6s} {ms:8.4f} {ms / base:8.3f} "
                  f"{rel:8.1e} {str(same):>7s}{mark}", flush=True)
    del x, w, gy, wd, ref
    torch.cuda.empty_cache()
print(f"num_sms {sms}")
