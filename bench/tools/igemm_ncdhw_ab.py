"""Same-process A/B of the implicit-GEMM rows writing NCDHW themselves (direct.writes_ncdhw, "on")
against channels_last_3d plus our transpose ("off"), NCDHW layers: forward, grad_input and step, each
as its GPU time (hostgap.gpu_only: the host's enqueue hidden behind a 3 ms sleep, so the sub-millisecond
layers' host noise stays out), alternating rounds (ABBA). v0.32:

    python bench/tools/igemm_ncdhw_ab.py medium,vnet-up,unet3d-k2,unet-outpad 5 tf32
"""
import statistics
import sys

import torch

from bench.runner import CaseTensors, _our_fns
from bench.shapes import HEADLINE, SWEEP
from bench.tools.hostgap import gpu_only
from convt3d_cutlass import direct, eager

PASSES = ("forward", "grad_input", "step")


def main():
    names = sys.argv[1].split(",")
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    prec = sys.argv[3] if len(sys.argv) > 3 else "tf32"
    cases = {c.name: c for c in list(SWEEP) + [HEADLINE]}
    landed = direct.writes_ncdhw

    def off(k, p, op):
        return False if k.family == "igemm" else landed(k, p, op)

    def apply(v):
        direct.writes_ncdhw = off if v == "off" else landed
        eager._plans.clear()  # the node's plan holds the layout decisions

    print(f"{prec} NCDHW, GPU ms, median of {rounds} rounds (ABBA): off / on / gain")
    for nm in names:
        t = CaseTensors(cases[nm], False)
        res = {}
        for r in range(rounds):
            for v in (("off", "on") if r % 2 == 0 else ("on", "off")):
                apply(v)
                fns = _our_fns(t, prec)[1]
                for ps in PASSES:
                    res.setdefault((v, ps), []).append(gpu_only(fns[ps]))
        m = {key: statistics.median(x) for key, x in res.items()}
        print(f"{nm:12s} " + "  ".join(f"{ps} {m[('off', ps)]:.3f} {m[('on', ps)]:.3f} "
                                        f"{m[('off', ps)] / m[('on', ps)]:.3f}" for ps in PASSES))
        del t
        torch.cuda.empty_cache()
    apply("on")


if __name__ == "__main__":
    main()
