"""Same-process A/B of the exact-fp32 strided forward writing NCDHW itself (its phases' CTAs side by side)
against channels_last_3d plus our transpose, on NCDHW x and grad_y: forward and training step (bench.timing,
medians over rounds), and whether both give the same bits. The rule under test is
direct.SIMT_STRIDED_NCDHW_MAX_REDUCTION; 'on' forces the NCDHW epilogue, 'off' forces the transpose.
Usage: stridedncdhw.py layer,layer,... [rounds]"""
import statistics, sys, torch
sys.path.insert(0, ".")
from bench.runner import CaseTensors, _our_fns
from bench.shapes import SWEEP
from bench.timing import bench
from convt3d_cutlass import direct, eager
names = sys.argv[1].split(",")
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 4
cases = {c.name: c for c in SWEEP}
RULE = direct.SIMT_STRIDED_NCDHW_MAX_REDUCTION
for nm in names:
    t = CaseTensors(cases[nm], False)
    _, ours = _our_fns(t, "fp32")
    res = {True: {"step": [], "forward": []}, False: {"step": [], "forward": []}}
    outs = {}
    for r in range(rounds):
        for on in (True, False):
            direct.SIMT_STRIDED_NCDHW_MAX_REDUCTION = 1 << 30 if on else -1
            eager._plans.clear()
            for ps in ("forward", "step"):
                res[on][ps].append(bench(ours[ps], warmup=3, reps=20))
            if r == 0:
                outs[on] = ours["forward"]()
    y1, y0 = outs[True], outs[False]
    same = torch.equal(y1, y0)
    m = {on: {k: statistics.median(v) for k, v in d.items()} for on, d in res.items()}
    print(f"{nm:12s} NCDHW forward on {m[True]['forward']:.3f} off {m[False]['forward']:.3f} "
          f"({m[False]['forward'] / m[True]['forward']:.3f}x)  step on {m[True]['step']:.3f} off {m[False]['step']:.3f} "
          f"({m[False]['step'] / m[True]['step']:.3f}x)  y NCDHW={y1.is_contiguous()} bitwise_same={same}", flush=True)
    del t, ours, outs, y1, y0
    torch.cuda.empty_cache()
direct.SIMT_STRIDED_NCDHW_MAX_REDUCTION = RULE
