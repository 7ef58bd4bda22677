"""Exact-fp32 grad_weight on forms of the FFMA implicit GEMM's tiles (csrc/ffma_wgrad.cuh), per layer and
slice count: GPU ms of the kernel and the finish together, bitwise equality with the first form at the same count
(each output is one thread's sum over the slice's positions in order, in every form), and the error against
float64. v0.44 compared the 8-warp form (8 x 8 outputs per thread) with a 4-warp one (8 x 16, branch
wip/ffma-wgrad-t8x16); FORMS names any FFMA grad_weight rows of the build, the first being the base, all of one
tile size (v0.80: the 64- and 32-row tiles at other register caps, branch wip/ffma-wgrad-occupancy, and at slice
counts that fill whole waves).

    python bench/tools/ffmatile.py [LAYERS [REPS [COUNTS [FORMS]]]]

Each (form, count) is timed by gpu_only (launches queued behind a busy GPU, median of REPS) in two passes, the
second in reverse order; printed: the mean of the two medians and the ratio to the 8-warp form at the same count.
"""
import sys

import torch

from bench.tools.common import layer_tensors
from bench.tools.hostgap import gpu_only
from convt3d_cutlass import _extension, launch, selector
from convt3d_cutlass.kernel_table import BY_NAME
from convt3d_cutlass.layouts import ndhwc

names = (sys.argv[1] if len(sys.argv) > 1 else
         "unet3d-dec1,gan3d-g1,vnet-up,unet3d-dec2,gan3d-g2,medium").split(",")
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 15
COUNTS = tuple(int(c) for c in sys.argv[3].split(",")) if len(sys.argv) > 3 else (1, 2, 3, 4, 6, 8, 12, 16)
FORMS = tuple(sys.argv[4].split(",")) if len(sys.argv) > 4 else ("ffma_wgrad_fp32_128x128x32_s3",)
_extension.load()  # registers the ops
ops = torch.ops.convt3d_cutlass
sms = _extension.num_sms(0)

print(f"{'layer':12s} {'form':36s} {'slices':>6s} {'ctas':>5s} {'gpu ms':>8s} {'vs base':>7s} {'same':>5s} {'rel64':>8s}")
for name in names:
    p, x, w, gy = layer_tensors(name)
    X, G = ndhwc(x), ndhwc(gy)
    ref = torch.ops.aten.convolution_backward(
        gy.double(), x.double(), w.double(), None, [p.stride] * 3, [p.padding] * 3, [1] * 3, True,
        [p.output_padding] * 3, 1, [False, True, False])[1]
    m, n, _ = p.gemm("wgrad")
    tiles = -(-m // BY_NAME[FORMS[0]].tile[0]) * -(-n // BY_NAME[FORMS[0]].tile[1])
    plans = {f: selector.split_k_slices(p, BY_NAME[f], sms) for f in FORMS}
    counts = sorted(set(COUNTS) | set(plans.values()))

    def run(form, s):
        parts = torch.empty((s, p.c_in, p.k, p.k, p.k, p.c_out), device="cuda")
        return lambda: (ops.wgrad(form, X, G, parts, [p.padding] * 3, [p.stride] * 3), launch._finish(parts, p))[1]

    jobs = [(f, s) for s in counts for f in FORMS]
    t = {j: [] for j in jobs}
    for order in (jobs, jobs[::-1]):
        for j in order:
            t[j].append(gpu_only(run(*j), reps))
    for s in counts:
        outs = {f: run(f, s)() for f in FORMS}
        base = sum(t[(FORMS[0], s)]) / 2
        for f in FORMS:
            same = torch.equal(outs[FORMS[0]], outs[f])
            ms = sum(t[(f, s)]) / 2
            g = outs[f].double()
            rel = ((g - ref).norm() / ref.norm()).item()
            mark = " <- selector" if plans[f] == s else ""
            print(f"{name:12s} {f:36s} {s:6d} {tiles * s:5d} {ms:8.4f} {base / ms:6.3f}x {str(same):>5s} {rel:8.1e}{mark}",
                  flush=True)
    del x, w, gy
    torch.cuda.empty_cache()
print(f"num_sms {sms}; 'vs base': the first form's ms over this form's at the same count")
