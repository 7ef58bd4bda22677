"""A/B/C of the implicit-GEMM strided forward's NCDHW output (v0.40), NCDHW layers, forward and step as GPU
time (hostgap.gpu_only), rotating rounds, outputs bit-checked across the three:
T = channels_last_3d plus our transpose, P = plain NCDHW stores, S = the landed policy (rows of sibling
phases staged in shared memory, out_sectors, where direct.igemm_sector_pairs).

    python bench/tools/igemm_sectors_ab.py unet3d-dec3,sr-up2,unet3d-dec2 4 [tf32|3xtf32]
"""
import sys

import torch

from bench.runner import CaseTensors
from bench.shapes import HEADLINE, SWEEP
from bench.tools.layout_ab import measure
from convt3d_cutlass import direct, eager

PASSES = ("forward", "step")


def main():
    names = sys.argv[1].split(",")
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    prec = sys.argv[3] if len(sys.argv) > 3 else "tf32"
    cases = {c.name: c for c in list(SWEEP) + [HEADLINE]}
    lw, ls = direct.writes_ncdhw, direct.ncdhw_sectors

    def ig(k, op):
        return k.family == "igemm" and op == "dgrad"

    variants = {
        "T": (lambda k, p, op, n=None: False if ig(k, op) else lw(k, p, op, n), ls),
        "P": (lambda k, p, op, n=None: True if ig(k, op) else lw(k, p, op, n),
              lambda k, p, op, n=None: False if ig(k, op) else ls(k, p, op, n)),
        "S": (lw, ls),
    }

    def apply(v):
        direct.writes_ncdhw, direct.ncdhw_sectors = variants[v]
        eager._plans.clear()

    order = ["T", "P", "S"]
    print(f"{prec} NCDHW, GPU ms, median of {rounds} rounds: T / P / S, S gain over min(T, P); step MiB T / P / S")
    for nm in names:
        t = CaseTensors(cases[nm], False)
        m, mem, same = measure(t, prec, order, apply, rounds, PASSES, ("forward",))
        print(f"{nm:12s} " + "  ".join(f"{ps} {m[('T', ps)]:.3f} {m[('P', ps)]:.3f} {m[('S', ps)]:.3f} "
                                        f"{min(m[('T', ps)], m[('P', ps)]) / m[('S', ps)]:.3f}" for ps in PASSES)
              + f"  MiB {mem['T']:.0f} {mem['P']:.0f} {mem['S']:.0f}  same={same}", flush=True)
        del t
        torch.cuda.empty_cache()
    apply("S")


if __name__ == "__main__":
    main()
