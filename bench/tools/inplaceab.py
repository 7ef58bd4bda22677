"""Same-process A/B of the NCDHW exact-fp32 step: grad_y and x read in place by the backward (the v0.22
policy: direct.SIMT_PARITY_NCDHW, direct.FFMA_WGRAD_NCDHW) against converted copies (both off, the
v0.21 policy), beside cuDNN (autotuned). Per round and mode: the step's median (bench.timing.bench) and
its peak extra memory (bench.timing.peak_extra_mb). The C++ node orders the backward (grad_weight first)
the same way in both modes. Usage: inplaceab.py [layer,layer,...] [rounds]
"""
import statistics
import sys

from bench.runner import CaseTensors, _native_fns, _our_fns, cudnn_mode
from bench.shapes import HEADLINE, SWEEP
from bench.timing import bench, peak_extra_mb
from convt3d_cutlass import direct, eager

names = (sys.argv[1] if len(sys.argv) > 1 else
         "unet3d-dec3,sr-up2,unet3d-dec2,gan3d-g2,unet-outpad,unet3d-k2,medium,vnet-refine").split(",")
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
cases = {c.name: c for c in list(SWEEP) + [HEADLINE]}


def policy(in_place):
    direct.SIMT_PARITY_NCDHW = direct.FFMA_WGRAD_NCDHW = in_place
    eager._plans.clear()  # the node's plans carry the layout decisions


print(f"fp32 NCDHW step: ms (median of {rounds} rounds) and peak extra MiB")
print(f"{'layer':14s} {'in place':>18s} {'copies':>18s} {'cuDNN':>18s} {'copies/in':>9s} {'cuDNN/in':>9s}")
for nm in names:
    t = CaseTensors(cases[nm], False)
    _, ours = _our_fns(t, "fp32")
    native = _native_fns(t)
    res = {"in": [], "copies": [], "cudnn": []}
    for _ in range(rounds):
        for mode in (True, False):
            policy(mode)
            res["in" if mode else "copies"].append((bench(ours["step"], warmup=3, reps=20),
                                                    peak_extra_mb(ours["step"])))
        with cudnn_mode(False, True):
            res["cudnn"].append((bench(native["step"], warmup=3, reps=20), peak_extra_mb(native["step"])))
    med = {k: (statistics.median(a for a, _ in v), max(b for _, b in v)) for k, v in res.items()}
    cell = lambda k: f"{med[k][0]:8.3f} / {med[k][1]:6.0f}"
    print(f"{nm:14s} {cell('in'):>18s} {cell('copies'):>18s} {cell('cudnn'):>18s} "
          f"{med['copies'][0] / med['in'][0]:9.3f} {med['cudnn'][0] / med['in'][0]:9.3f}", flush=True)
    del t, ours, native
policy(True)
