"""convt3d_cutlass benchmark against cuDNN.

  python -m bench                 headline case, every precision pairing, both layouts, all passes
  python -m bench --sweep         realistic shapes (training step unless --passes says otherwise)
  python -m bench --check 1.0     exit 1 if any fast-path row is slower than that ratio
  python -m bench --configs       time every compiled forward config on the headline case
"""
import argparse
import sys
import warnings

import torch

from . import report
from .runner import PASSES, PAIRINGS, cudnn_mode, run_case
from .shapes import HEADLINE, SWEEP
from .timing import bench, ceilings


def _progress(i, n, label):
    bar = "#" * int(30 * i / n)
    print(f"\r[{bar:<30}] {i}/{n} {label[:60]:<60}", end="", file=sys.stderr, flush=True)


def run_configs(case, ceil):
    import convt3d_cutlass as ct
    from convt3d_cutlass import selector
    from convt3d_cutlass.problem import Problem
    from .runner import CaseTensors
    rows = []
    t = CaseTensors(case, True)
    p = Problem(case.n, case.c_in, case.c_out, case.spatial, case.k, case.stride, case.padding)
    for prec in PAIRINGS:
        chosen = selector.select_config(p, "dgrad", prec).name
        for cfg in ct.configs():
            if cfg["op"] != "dgrad" or cfg["precision"] != prec or not cfg["compiled"]:
                continue
            with torch.no_grad():
                ms = bench(lambda: ct.conv_transpose3d(t.x, t.w, t.b, case.stride, case.padding,
                                                       precision=prec, config=cfg["name"]))
            rows.append(dict(precision=prec, config=cfg["name"], ms=ms, tflops=case.flops / ms / 1e9,
                             selected=cfg["name"] == chosen))
            print(f"{prec:7s} {cfg['name']:40s} {ms:8.3f} ms {case.flops / ms / 1e9:6.1f} TFLOP/s"
                  f"{'  <- selector' if cfg['name'] == chosen else ''}", flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", action="store_true", help="realistic shape sweep")
    ap.add_argument("--passes", default=None, help=f"comma list of {PASSES}")
    ap.add_argument("--precisions", default="tf32,fp32,3xtf32")
    ap.add_argument("--layouts", default="NCDHW,NDHWC")
    ap.add_argument("--cases", default=None, help="comma list of case names (sweep)")
    ap.add_argument("--reps", type=int, default=None, help="timed reps per series (10; sweep 3)")
    ap.add_argument("--no-errors", action="store_true", help="skip the float64 references")
    ap.add_argument("--check", type=float, default=None, metavar="MIN_SPEEDUP")
    ap.add_argument("--configs", action="store_true", help="time every compiled forward tile config")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench: needs a CUDA GPU", file=sys.stderr)
        return 2
    import convt3d_cutlass as ct
    if not ct.available():
        print("bench: WARNING: the CUTLASS extension is not available here; 'ours' is PyTorch's fallback",
              file=sys.stderr)
    warnings.simplefilter("ignore")
    ceil = ceilings()
    env = report.environment(ceil)
    print(f"{env['gpu']}: TF32 matmul {ceil['tf32_tflops']:.0f} TFLOP/s, FP32 matmul {ceil['fp32_tflops']:.1f} "
          f"TFLOP/s, copy {ceil['copy_tbs']:.2f} TB/s; torch {env['torch']}, cuDNN {env['cudnn']}", flush=True)
    if args.configs:
        rows = run_configs(HEADLINE, ceil)
        report.save(rows, env, "configs")
        return 0
    cases = SWEEP if args.sweep else (HEADLINE,)
    if args.cases:
        names = set(args.cases.split(","))
        cases = [c for c in SWEEP if c.name in names]
    passes = tuple(args.passes.split(",")) if args.passes else (("step",) if args.sweep else PASSES)
    reps = args.reps or (3 if args.sweep else 10)
    layouts = [{"NCDHW": False, "NDHWC": True}[s] for s in args.layouts.split(",")]
    precisions = args.precisions.split(",")
    rows = []
    for i, c in enumerate(cases):
        _progress(i, len(cases), c.label())
        rows += run_case(c, layouts, precisions, passes, ceil, reps=reps, errors=not args.no_errors,
                         log=lambda r: None)
        # saved after every case, so a run cut short still leaves its numbers
        report.save(rows, env, ("sweep" if args.sweep else "headline") + "-partial")
    _progress(len(cases), len(cases), "done")
    print(file=sys.stderr)
    print(report.table(rows))
    gm = report.geomeans(rows, "step" if "step" in passes else passes[0])
    for (prec, lay), v in sorted(gm.items()):
        print(f"geomean speedup ({'step' if 'step' in passes else passes[0]}) {prec:6s} {lay}: {v:.2f}x")
    stem = "sweep" if args.sweep else "headline"
    d = report.save(rows, env, stem, extra={"geomean": {f"{p}/{l}": v for (p, l), v in gm.items()}})
    png = report.plot(rows, env, stem)
    print(f"results: {d}" + (f" (plot {png})" if png else ""))
    if args.check is not None:
        slow = [r for r in rows if r["fast_path"] and r["speedup"] < args.check]
        for r in slow:
            print(f"CHECK FAILED: {r['case']} {r['layout']} {r['precision']} {r['pass_']}: "
                  f"{r['speedup']:.2f}x < {args.check}")
        return 1 if slow else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
