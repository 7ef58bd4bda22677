"""convt3d_cutlass benchmark against cuDNN.

  python -m bench                 headline case, every precision pairing, both layouts, all passes
  python -m bench --sweep         realistic shapes (training step unless --passes says otherwise)
  python -m bench --check 1.0     exit 1 if any fast-path row is slower than that ratio
  python -m bench --configs       time every compiled config of every pass (selector vs best)
  python -m bench --shape 2,64,32,64,64,64,3,2,1   your own layer (N,C_in,C_out,D,H,W,k[,stride[,padding[,output_padding]]])
"""
import argparse
import sys
import warnings

import torch

from . import report
from .runner import PAIRINGS, PASSES, run_case
from .shapes import SHAPE_FORMAT, select_cases
from .timing import bench, ceilings


def _check_values(flag, text, allowed):
    """Raise ValueError unless ``text`` is a comma list of ``allowed`` values (naming the flag and them)."""
    bad = [v for v in text.split(",") if v not in allowed]  # an empty text gives [""]
    if bad:
        raise ValueError(f"{flag}: {', '.join(bad) or 'nothing'} not among {', '.join(allowed)}")


def _progress(i, n, label):
    bar = "#" * int(30 * i / n)
    print(f"\r[{bar:<30}] {i}/{n} {label[:60]:<60}", end="", file=sys.stderr, flush=True)


# --configs names the kernel table's conv kinds; --passes names the training passes they serve.
_CONV_PASS = {"dgrad": "forward", "fprop": "grad_input", "wgrad": "grad_weight"}


def run_configs(cases, precisions, reps, save=lambda rows: None, passes=PASSES):
    """Time every compiled config of the given passes on each case (channels_last_3d): what the
    selector leaves on the table. Returns rows; prints the selector's pick against the best per case/pass."""
    import convt3d_cutlass as ct
    from convt3d_cutlass import _extension, fast_path, launch, ops, selector
    from convt3d_cutlass.kernel_table import BY_NAME
    from convt3d_cutlass.problem import phases
    from .runner import CaseTensors
    rows = []
    # The device's own limits, as the selector uses them (the filter's defaults are an H100's).
    cap, smem = torch.cuda.get_device_capability(), _extension.smem_optin(torch.cuda.current_device())
    for case in cases:
        t = CaseTensors(case, True)
        if fast_path.check(t.x, t.w, t.b, case.stride, case.padding, case.output_padding, 1, 1):
            continue  # fallback shape: no kernel of ours runs
        p = case.problem()
        biggest = max(phases(p), key=lambda ph: ph.count[0] * ph.count[1] * ph.count[2]).count
        runs = {
            "dgrad": lambda prec, name: ct.conv_transpose3d(t.x, t.w, t.b, case.stride, case.padding,
                                                            case.output_padding, precision=prec, config=name),
            "fprop": lambda prec, name: ops.grad_input_op(t.gy, t.w, case.stride, case.padding, case.output_padding, True,
                                                          prec, name),
            "wgrad": lambda prec, name: ops.grad_weight_op(t.gy, t.x, case.k, case.stride, case.padding, case.output_padding,
                                                           prec, name),
        }
        for op, fn in runs.items():
            if _CONV_PASS[op] not in passes:
                continue
            for prec in precisions:
                mn = (case.n * biggest[0] * biggest[1] * biggest[2], case.c_out) if op == "dgrad" else None
                chosen = launch._select(p, op, prec, None, t.x.device, gemm_mn=mn,  # what a call runs
                                        out_ncdhw=op == "dgrad" and not t.channels_last).name
                timed = []
                for cfg in ct.configs():
                    if op not in cfg["passes"] or cfg["precision"] != prec or not cfg["compiled"]:
                        continue
                    if case.c_in % cfg["align"] or case.c_out % cfg["align"]:
                        continue
                    kc = BY_NAME[cfg["name"]]
                    if kc.tap_reuse and not selector.direct_fits(p, op, kc, smem, capability=cap):
                        continue
                    try:
                        with torch.no_grad():
                            ms = bench(lambda: fn(prec, cfg["name"]), reps=reps)
                    except ValueError as e:  # a refusal the filter above does not foresee: skip, say why
                        print(f"{case.name:14s} {op:5s} {prec:6s} skipped {cfg['name']}: {str(e)[:100]}", flush=True)
                        continue
                    timed.append((ms, cfg["name"]))
                    rows.append(dict(case=case.name, pass_=op, precision=prec, config=cfg["name"], ms=ms,
                                     tflops=case.flops / ms / 1e9, selected=cfg["name"] == chosen))
                if not timed:
                    continue
                best_ms, best = min(timed)
                sel_ms = next((ms for ms, n in timed if n == chosen), float("nan"))
                print(f"{case.name:14s} {op:5s} {prec:6s} selector {chosen:36s} {sel_ms:8.3f} ms | best "
                      f"{best:36s} {best_ms:8.3f} ms | left {sel_ms / best_ms:5.2f}x", flush=True)
        save(rows)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", action="store_true", help="realistic shape sweep")
    ap.add_argument("--passes", default=None, help=f"comma list of {PASSES}")
    ap.add_argument("--precisions", default="tf32,fp32,3xtf32")
    ap.add_argument("--layouts", default="NCDHW,NDHWC")
    ap.add_argument("--cases", default=None, help="comma list of case names (sweep)")
    ap.add_argument("--shape", action="append", default=[], metavar="SPEC",
                    help=f"a layer of your own, {SHAPE_FORMAT}; repeat for several (with --cases too)")
    ap.add_argument("--reps", type=int, default=None, help="timed reps per series, at least (10; sweep 3); fast series run more "
                    "(bench.timing.MIN_SERIES_MS)")
    ap.add_argument("--no-errors", action="store_true", help="skip the float64 references")
    ap.add_argument("--check", type=float, default=None, metavar="MIN_SPEEDUP")
    ap.add_argument("--out", default=None, metavar="STEM",
                    help="file stem under bench/results/<gpu>/ (default: headline, sweep or configs); "
                         "runs split over several GPUs save under their own stems, then bench.merge joins them")
    ap.add_argument("--configs", action="store_true",
                    help="time every compiled tile config of every pass (headline, or --sweep / --cases / --shape)")
    args = ap.parse_args(argv)
    try:  # bad arguments fail here, naming the allowed values, before any GPU work
        cases = select_cases(args.sweep, args.cases, args.shape)
        _check_values("--precisions", args.precisions, PAIRINGS)
        _check_values("--layouts", args.layouts, ("NCDHW", "NDHWC"))
        if args.passes:
            _check_values("--passes", args.passes, PASSES)
    except ValueError as e:
        ap.error(str(e))
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
    print(report.ceilings_line(env), flush=True)
    if args.configs:
        stem = args.out or "configs"
        rows = run_configs(cases, args.precisions.split(","), args.reps or 5,
                           save=lambda rows: report.save(rows, env, stem + "-partial"),
                           passes=tuple(args.passes.split(",")) if args.passes else PASSES)
        report.save(rows, env, stem)
        return 0
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
        report.save(rows, env, (args.out or ("sweep" if args.sweep else "headline")) + "-partial")
    _progress(len(cases), len(cases), "done")
    print(file=sys.stderr)
    print(report.table(rows))
    gm = report.summary(rows)
    print(report.summary_text(gm))
    stem = args.out or ("sweep" if args.sweep else "headline")
    d = report.save(rows, env, stem, extra={"geomean": gm})
    png = report.plot(rows, env, stem)
    print(f"results: {d}" + (f" (plot {png})" if png else ""))
    if args.check is not None:
        slow = report.slower_than(rows, args.check)
        for r in slow:
            print(f"CHECK FAILED: {r['case']} {r['layout']} {r['precision']} {r['pass_']}: "
                  f"{r['speedup']:.2f}x < {args.check}")
        return 1 if slow else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
