"""Same-process A/B of NCDHW output rules (direct.writes_ncdhw, "on": as landed) against an "off" setting,
NCDHW layers: forward, grad_input and step, each as its GPU time (hostgap.gpu_only: the host's enqueue
hidden behind a 3 ms sleep, so the sub-millisecond layers' host noise stays out), alternating rounds
(ABBA), with the step's peak extra memory (as the benchmark measures it) and whether the forward and
grad_input outputs of both settings are the same bits.

"off" is by default the implicit-GEMM rows writing channels_last_3d plus our transpose (v0.32); with a
fourth argument ATTR=VALUE it is the landed rule with direct.ATTR set to VALUE (v0.36: 3xtf32 rows
counting one MMA per product, SPLIT_MMAS_PER_PRODUCT=1):

    python bench/tools/igemm_ncdhw_ab.py medium,vnet-up,unet3d-k2,unet-outpad 5 tf32
    python bench/tools/igemm_ncdhw_ab.py headline,sr-head 5 3xtf32 SPLIT_MMAS_PER_PRODUCT=1

ATTR may name the selector's module too (v0.51: "off" without the sector twins; a boolean takes 1/0, true/false, on/off, or
nothing for False):

    python bench/tools/igemm_ncdhw_ab.py sr-head 5 tf32 selector.SECTOR_TWINS=

A fifth argument lists the passes (v0.63: the swapped grad_weight rows reading an NCDHW x, "off" their
channels_last_3d copy):

    python bench/tools/igemm_ncdhw_ab.py unet3d-dec1,medium 7 tf32 IGEMM_WGRAD_NCDHW_X= forward,grad_input,grad_weight,step
"""
import sys

import torch

from bench.runner import CaseTensors
from bench.shapes import HEADLINE, SWEEP
from bench.tools.common import knob_value, split_knob
from bench.tools.layout_ab import measure
from convt3d_cutlass import direct, eager, launch, selector

PASSES = ("forward", "grad_input", "step")


def main():
    names = sys.argv[1].split(",")
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    prec = sys.argv[3] if len(sys.argv) > 3 else "tf32"
    knob = split_knob(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4] else None
    passes = tuple(sys.argv[5].split(",")) if len(sys.argv) > 5 else PASSES
    cases = {c.name: c for c in list(SWEEP) + [HEADLINE]}
    landed = direct.writes_ncdhw

    def off(k, p, op):
        return False if k.family == "igemm" else landed(k, p, op)

    module, attr = (selector, knob[0][len("selector."):]) if knob and knob[0].startswith("selector.") else \
        (direct, knob[0] if knob else None)

    def apply(v):
        if knob:
            if not hasattr(apply, "landed"):
                apply.landed = getattr(module, attr)
            setattr(module, attr, knob_value(apply.landed, knob[1]) if v == "off" else apply.landed)
        else:
            direct.writes_ncdhw = off if v == "off" else landed
        eager._plans.clear()  # the node's plan holds the layout decisions
        launch._plan_cached.cache_clear()  # ... and the passes' plans, the kernel choices
        launch._select_cached.cache_clear()

    print(f"{prec} NCDHW, GPU ms, median of {rounds} rounds (ABBA): off / on / gain; step peak MiB off / on")
    for nm in names:
        t = CaseTensors(cases[nm], False)
        m, mem, same = measure(t, prec, ["off", "on"], apply, rounds, passes, ("forward", "grad_input"))
        print(f"{nm:12s} " + "  ".join(f"{ps} {m[('off', ps)]:.3f} {m[('on', ps)]:.3f} "
                                        f"{m[('off', ps)] / m[('on', ps)]:.3f}" for ps in passes)
              + f"  MiB {mem['off']:.0f} {mem['on']:.0f}  same={same}", flush=True)
        del t
        torch.cuda.empty_cache()
    apply("on")


if __name__ == "__main__":
    main()
