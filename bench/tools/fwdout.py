"""What the forward's output layout costs, kernel by kernel (GPU time, hostgap.gpu_only, the same process):
the forward of an NCDHW x and of a channels_last_3d x on the row chosen for NCDHW output (and, since v0.59, of a
channels_last_3d x on the row chosen for channels_last_3d output), each writing NCDHW y (the kernel's out_ncdhw mode,
plain or sector stores as direct.ncdhw_sectors says) and channels_last_3d y. Where the NCDHW-x rows are
bound (L2, v0.48) and what a better NCDHW epilogue could give at most.

    python bench/tools/fwdout.py headline,sr-head 10 [tf32]
"""
import sys

import torch

from bench.runner import CaseTensors
from bench.shapes import HEADLINE, SWEEP
from bench.tools.hostgap import gpu_only
from convt3d_cutlass import direct, launch


def main():
    names = sys.argv[1].split(",")
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    prec = sys.argv[3] if len(sys.argv) > 3 else "tf32"
    cases = {c.name: c for c in list(SWEEP) + [HEADLINE]}
    for nm in names:
        c = cases[nm]
        t = CaseTensors(c, False)
        p = c.problem()
        x_cl = t.x.contiguous(memory_format=torch.channels_last_3d)
        # the NCDHW-output choice with either x, and (v0.59) the channels_last_3d choice with channels_last_3d x
        for xname, x, out_nc in (("NCDHW x", t.x, True), ("CL x", x_cl, True), ("CL x", x_cl, False)):
            plan = launch._plan(p, "dgrad", prec, None, x.device, None, out_ncdhw=out_nc)
            k = plan.k  # forced for both outputs: the same kernel
            for yname, nc in (("NCDHW y", True), ("CL y", False)):
                ms = gpu_only(lambda: launch.forward(x, t.w, t.b, p, prec, k.name, ncdhw=nc), reps)
                print(f"{nm:10s} {xname:8s} -> {yname:8s} {ms:.3f} ms  {k.name} reads NCDHW "
                      f"{direct.reads_ncdhw(k, plan.table, p.c_in, x, strided_forward=p.stride > 1)} sectors "
                      f"{nc and direct.ncdhw_sectors(k, p, 'dgrad')}", flush=True)
        t = x_cl = None
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
