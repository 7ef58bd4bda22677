"""A/B of the warp-specialized Hopper grad_weight (csrc/direct_wgrad_sm90.cuh, PW) at two and three stages
(S = 3: TMA two steps ahead, two x^T buffers), on every sweep layer whose tf32 grad_weight the selector
gives a k3 PW row, in one executable without torch.

    python bench/tools/wgrad_stages.py OUTDIR [ROUNDS]   # builds OUTDIR/wgstages, wgstages_a1 (no GPU)
    OUTDIR/wgstages; OUTDIR/wgstages_a1                  # on the GPU machine

Rounds alternate the two forms (ABBA); each run is the median of 30 CUDA-event times on device-initialised
inputs (L2 not flushed), and prints a hash of the partial sums (NaN bits before the run): both forms add
the same products in the same order, so the hashes must be equal. A form whose shared memory does not fit
the layer prints "skip".
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(ROOT, "python"), ROOT]

from bench.shapes import SWEEP  # noqa: E402
from bench.tools.wgrad_ab import build, run_line, write_main  # noqa: E402
from convt3d_cutlass import direct, selector  # noqa: E402


def cases():
    """(label, template arguments without S, case, slices) of each sweep layer on a k3 PW row (tf32)."""
    seen = []
    for c in SWEEP:
        p = c.problem()
        k = selector.select_config(p, "wgrad", "tf32", capability=(9, 0))
        if not (k.name.startswith("wgmma_wgrad") and k.warpgroups == 4):
            continue
        slices = {st: direct.wgmma_wgrad_slices(p, k.block, k.bn, k.warpgroups, st, 132) for st in (2, 3)}
        seen.append((f"{c.name}/{k.name}", f"{k.ksize}, {k.block[1]}, {k.block[2]}, {k.bn}, {k.warpgroups}",
                     c, slices))
    return seen


def main(out, rounds):
    os.makedirs(out, exist_ok=True)
    lines = []
    for r in range(rounds):
        for label, args, c, slices in cases():
            for st in (2, 3) if r % 2 == 0 else (3, 2):
                lines.append(run_line(f"{args}, {st}", f'"{label} S{st}"', c, slices[st]))
    src = write_main(out, "wgrad_stages.cu", lines)
    csrc = os.path.join(ROOT, "csrc")
    # wgstages_a1: S = 3 issuing one step ahead, as soon as a step's slots are free (step v - 3's MMAs retired),
    # i.e. right after staging the step before: the deeper ring without loads in flight during staging.
    build(src, out, [("wgstages", csrc, []), ("wgstages_a1", csrc, ["-DCONVT3D_WGRAD_AHEAD=1"])])
    print("built wgstages, wgstages_a1 in", out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/wgrad_stages", int(sys.argv[2]) if len(sys.argv) > 2 else 4)
