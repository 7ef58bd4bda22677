"""Build the timing variants of the headline's Hopper grad_weight kernel (bench/tools/wgrad_parts.cu).

    python bench/tools/wgrad_parts.py OUTDIR     # writes OUTDIR/wg_<variant>; run each on the GPU machine

No GPU needed to build (nvcc for sm_90a and the CUTLASS headers of the nvidia-cutlass wheel). The variant
header is csrc/direct_wgrad_sm90.cuh with each part behind a constexpr switch; every replaced line must occur
exactly once, so a change to the kernel that moves them fails here instead of timing the wrong thing.
"""
import os
import subprocess
import sys

import cutlass_library

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VARIANTS = {"full": (0, 0, 0), "nostage": (1, 0, 0), "nomma": (0, 1, 0), "neither": (1, 1, 0),
            "notma": (0, 0, 1), "mmaonly": (1, 0, 1)}  # NOSTAGE, NOMMA, NOTMA
EDITS = (
    ("namespace convt3d {\nnamespace direct90 {",
     "namespace convt3d {\nnamespace direct90 {\nconstexpr bool kNoStage = NOSTAGE, kNoMma = NOMMA, kNoTma = NOTMA;"),
    ("direct::round4_tf32(hp + i);", "if (!kNoStage) direct::round4_tf32(hp + i);"),
    ("for (int item = tid; item < C::GRANULES * BN; item += C::THREADS) {",
     "for (int item = tid; !kNoStage && item < C::GRANULES * BN; item += C::THREADS) {"),
    ("    dispatch_upto<K>(nt, mma);", "    if (!kNoMma) dispatch_upto<K>(nt, mma);"),
    ("    cutlass::arch::ClusterTransactionBarrier::wait(&full[st], (t / S) & 1);",
     "    if (!kNoTma) cutlass::arch::ClusterTransactionBarrier::wait(&full[st], (t / S) & 1);"),
    ("  if (tid == 0)\n    for (int t = 0; t < S - 1 && t < steps; ++t) issue(t);",
     "  if (tid == 0 && !kNoTma)\n    for (int t = 0; t < S - 1 && t < steps; ++t) issue(t);"),
    ("    if (tid == 0 && t + S - 1 < steps) issue(t + S - 1);",
     "    if (tid == 0 && !kNoTma && t + S - 1 < steps) issue(t + S - 1);"),
)


def main(out):
    os.makedirs(out, exist_ok=True)
    src = open(os.path.join(ROOT, "csrc", "direct_wgrad_sm90.cuh")).read()
    for old, new in EDITS:
        if src.count(old) != 1:
            raise SystemExit(f"wgrad_parts: the kernel changed, {old.splitlines()[0]!r} occurs {src.count(old)} times")
        src = src.replace(old, new)
    with open(os.path.join(out, "direct_wgrad_sm90_variant.cuh"), "w") as f:
        f.write(src)
    cl = os.path.join(os.path.dirname(cutlass_library.__file__), "source")
    procs = []
    for name, (stage, mma, tma) in VARIANTS.items():
        cmd = ["nvcc", "-std=c++17", "-O3", "--expt-relaxed-constexpr", "-gencode=arch=compute_90a,code=sm_90a",
               "-I", out, "-I", os.path.join(ROOT, "csrc"), "-I", os.path.join(ROOT, "bench", "tools"),
               "-I", os.path.join(cl, "include"),
               "-I", os.path.join(cl, "tools", "util", "include"), f"-DNOSTAGE={stage}", f"-DNOMMA={mma}",
               f"-DNOTMA={tma}", f'-DVARIANT="{name}"', os.path.join(ROOT, "bench", "tools", "wgrad_parts.cu"),
               "-o", os.path.join(out, f"wg_{name}")]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    if any(p.wait() != 0 for p in procs):
        raise SystemExit("wgrad_parts: nvcc failed (run the command by hand for its messages)")
    print("built", ", ".join(f"wg_{n}" for n in VARIANTS), "in", out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/wgrad_parts")
