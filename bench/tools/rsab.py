"""Same-process A/B of the warp-specialized tap-reuse rows against their RS twins (A from registers,
selector.WGMMA_RS_TWINS; kernel_table.WGMMA_RS_KERNELS keeps the k5 twin, v0.28 measured the k3 ones too): forward, grad_input and the training step as the benchmark times them, with
cuDNN's step in every round; rounds alternate the settings, in reverse order every other round (ABBA).
Each setting's forward and grad_input are checked against the other's (the same tf32 operands: only the
fp32 accumulation order differs).

    python bench/tools/rsab.py [LAYERS] [ROUNDS] [LAYOUTS]     # default vnet-refine 5 NDHWC,NCDHW
"""
import statistics
import sys

import torch

from bench.runner import CaseTensors, _native_fns, _our_fns
from bench.shapes import HEADLINE, SWEEP
from bench.timing import bench
from convt3d_cutlass import eager, launch, selector

names = (sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else "vnet-refine").split(",")
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
layouts = (sys.argv[3] if len(sys.argv) > 3 else "NDHWC,NCDHW").split(",")
cases = {c.name: c for c in list(SWEEP) + [HEADLINE]}
torch.backends.cudnn.allow_tf32 = True
torch.backends.cudnn.benchmark = True
passes = ("forward", "grad_input", "step")


def use(rs: bool):
    selector.WGMMA_RS_TWINS = rs
    launch._select_cached.cache_clear()
    launch._plan_cached.cache_clear()
    eager._plans.clear()


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


print(f"tf32, ms, median of {rounds} rounds (ABBA); ss = the ws rows, rs = their RS twins")
print(f"{'layer':12s} {'layout':6s} " + " ".join(f"{p + ' ss':>13s} {p + ' rs':>13s} {'gain':>5s}" for p in passes)
      + f" {'cuDNN step':>10s}  picks")
for nm in names:
    for lay in layouts:
        t = CaseTensors(cases[nm], lay == "NDHWC")
        native = _native_fns(t)["step"]
        native()
        res = {(s, p): [] for s in (False, True) for p in passes}
        cud, picks, ref = [], {}, None
        for s in (False, True):
            use(s)
            fns = _our_fns(t, "tf32")[1]
            picks[s] = launch._plan(launch.Problem.of(t.x, t.w, t.case.stride, t.case.padding, t.case.output_padding),
                                    "dgrad", "tf32", None, t.x.device, None).name
            out = {p: fns[p]() for p in ("forward", "grad_input")}
            if s:
                errs = [rel(out[p], ref[p]) for p in ("forward", "grad_input")]
                assert max(errs) < 1e-5, (nm, lay, errs)
            ref = out
        for r in range(rounds):
            cud.append(bench(native))
            for s in ((False, True) if r % 2 == 0 else (True, False)):
                use(s)
                fns = _our_fns(t, "tf32")[1]
                for p in passes:
                    res[(s, p)].append(bench(fns[p]))
        use(True)
        med = {k: statistics.median(v) for k, v in res.items()}
        print(f"{nm:12s} {lay:6s} " + " ".join(f"{med[(False, p)]:13.3f} {med[(True, p)]:13.3f} "
                                                f"{med[(False, p)] / med[(True, p)]:5.3f}" for p in passes)
              + f" {statistics.median(cud):10.3f}  {picks[False]} -> {picks[True]}")
        del t, native
        torch.cuda.empty_cache()
