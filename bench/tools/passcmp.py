"""Per pass, ours (the selector's pick, through the benchmark's own functions) against cuDNN autotuned, in one
process, 3 alternating rounds, each a bench() median (CUDA events, L2 flushed before every rep) (v0.63):

    python bench/tools/passcmp.py tf32 NDHWC [unet3d-dec1,medium]

Read the small passes with care: a pass under about 0.1 ms carries our custom op's host time when the host is
slower than the GPU (v0.63: U-Net k2 up's grad_input 0.090 ms here, 0.033 as `--configs` times the same kernel
under no_grad); `--configs` and bench/tools/hostgap.py separate the two."""
import sys, statistics, torch
from bench.runner import PAIRINGS, CaseTensors, cudnn_mode, _native_fns, _our_fns
from bench.shapes import SWEEP
from bench.timing import bench
prec, lay = sys.argv[1], sys.argv[2]
names = sys.argv[3].split(",") if len(sys.argv) > 3 else [c.name for c in SWEEP if c.name != "headline"]
cases = {c.name: c for c in SWEEP}
print(f"{'case':12s} {lay:6s} {'pass':12s} {'ours':>8s} {'cuDNN':>8s} {'ratio':>6s}")
for nm in names:
    c = cases[nm]
    t = CaseTensors(c, lay == "NDHWC")
    with cudnn_mode(PAIRINGS[prec], True):
        nat = _native_fns(t)
        fast, ours = _our_fns(t, prec)
        for ps in ("forward", "grad_input", "grad_weight", "step"):
            a, b = [], []
            for r in range(3):
                a.append(bench(ours[ps], reps=10)); b.append(bench(nat[ps], reps=10))
            oa, ob = statistics.median(a), statistics.median(b)
            print(f"{nm:12s} {lay:6s} {ps:12s} {oa:8.3f} {ob:8.3f} {ob/oa:6.2f}", flush=True)
    del t
    torch.cuda.empty_cache()
