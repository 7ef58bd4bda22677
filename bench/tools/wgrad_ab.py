"""Same-machine A/B of the Hopper grad_weight kernel (csrc/direct_wgrad_sm90.cuh) against a git revision's,
on every sweep layer whose grad_weight the selector gives it (tf32 and 3xtf32), without torch.

    python bench/tools/wgrad_ab.py OUTDIR [REV [same]]   # builds OUTDIR/wgab_new, wgab_old (REV, default
                                                         # main), wgab_newleg; `same`: old runs the new
                                                         # slices (and no newleg, which would be new)
    OUTDIR/wgab_old; OUTDIR/wgab_new; ...           # on the GPU machine, alternating rounds

No GPU needed to build. Each executable runs every (layer, kernel) pair 30 times on device-initialised
inputs (CUDA events, L2 not flushed: the inputs of the large layers exceed it) and prints the median and a
hash of the partial sums, which start as NaN bits: both revisions must print the same hash where they
compute the same sums in the same order. The old executable runs the old slice rule
(``wgmma_wgrad_slices(ranges=False)``, whole depth segments): where the new rule's ranges differ (the
warp-specialized rows since v0.34) the hashes differ too, and the times leave out the sum over slices.
"""
import os
import subprocess
import sys

import cutlass_library

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(ROOT, "python"), ROOT]

from bench.shapes import SWEEP  # noqa: E402
from convt3d_cutlass import direct, selector  # noqa: E402

MAIN = '#include "wgrad_one.cuh"\nusing namespace convt3d;\nint main() {\n'


def cases():
    seen = []
    for c in SWEEP:
        p = c.problem()
        for prec in ("tf32", "3xtf32"):
            k = selector.select_config(p, "wgrad", prec, capability=(9, 0))
            if not k.name.startswith("wgmma_wgrad"):
                continue
            slices = direct.wgmma_wgrad_slices(p, k.block, k.bn, k.warpgroups, k.stages, 132, split=k.split)
            legacy = direct.wgmma_wgrad_slices(p, k.block, k.bn, k.warpgroups, k.stages, 132, split=k.split,
                                               ranges=False)
            args = f"{k.ksize}, {k.block[1]}, {k.block[2]}, {k.bn}, {k.warpgroups}, {k.stages}" + (", true" if k.split else "")
            seen.append((f"{c.name}/{k.name}", args, c, (slices, legacy)))
    return seen


def run_line(args, label, c, slices):
    """The generated main's statement that runs WgmmaWgradKernel<args> on sweep case c (label and slices: C++
    expressions)."""
    d, h, w = c.spatial
    return (f"  wgrad_one<direct90::WgmmaWgradKernel<{args}>>({label}, {c.n}, {c.c_in}, {c.c_out}, {d}, {h}, {w}, "
            f"{c.k}, {c.stride}, {c.padding}, {c.output_padding}, {slices});")


def write_main(out, name, lines):
    """OUTDIR/name: the generated source (MAIN, the statements, return); its path."""
    src = os.path.join(out, name)
    with open(src, "w") as f:
        f.write("\n".join([MAIN] + lines + ["  return 0;\n}\n"]))
    return src


def build(src, out, builds):
    """nvcc src into OUTDIR/name for each (name, first include directory, extra flags), in parallel, for sm_90a
    (the first include directory goes before csrc/, so that a revision's header can stand in for the tree's)."""
    cl = os.path.join(os.path.dirname(cutlass_library.__file__), "source")
    procs = []
    for name, inc, flags in builds:
        cmd = ["nvcc", "-std=c++17", "-O3", "--expt-relaxed-constexpr", "-gencode=arch=compute_90a,code=sm_90a",
               "-I", inc, "-I", os.path.join(ROOT, "csrc"), "-I", os.path.dirname(os.path.abspath(__file__)),
               "-I", os.path.join(cl, "include"), "-I", os.path.join(cl, "tools", "util", "include"), *flags,
               src, "-o", os.path.join(out, name)]
        procs.append(subprocess.Popen(cmd))
    if any(p.wait() != 0 for p in procs):
        raise SystemExit(f"{os.path.basename(src)}: nvcc failed")


def main(out, rev, same=False):
    os.makedirs(os.path.join(out, "old"), exist_ok=True)
    with open(os.path.join(out, "old", "direct_wgrad_sm90.cuh"), "w") as f:
        f.write(subprocess.run(["git", "show", f"{rev}:csrc/direct_wgrad_sm90.cuh"], cwd=ROOT, check=True,
                               capture_output=True, text=True).stdout)
    src = write_main(out, "wgrad_ab.cu", [
        run_line(args, f'"{label} " VARIANT', c, f"OLD ? {slices[0 if same else 1]} : {slices[0]}")
        for label, args, c, slices in cases()])
    # newleg: the working tree's kernel on the old slice rule (what the rule alone changes); with `same`
    # it would be wgab_new again.
    variants = [("new", os.path.join(ROOT, "csrc")), ("old", os.path.join(out, "old"))]
    if not same:
        variants.append(("newleg", os.path.join(ROOT, "csrc")))
    build(src, out, [(f"wgab_{name}", inc, [f'-DVARIANT="{name}"', f"-DOLD={int(name != 'new')}"])
                     for name, inc in variants])
    print("built", ", ".join(f"wgab_{name}" for name, _ in variants), "in", out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/wgrad_ab", sys.argv[2] if len(sys.argv) > 2 else "main",
         len(sys.argv) > 3 and sys.argv[3] == "same")
