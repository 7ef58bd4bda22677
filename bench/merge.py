"""Joins result files of one GPU (a sweep split over several GPUs or runs) into one table.

  python -m bench.merge sweep-a sweep-b --out sweep [--gpu NVIDIA_H100_80GB_HBM3]

Rows keep the sweep's case order; the environment of the first file is kept, with every file's
listed under "parts". Needs no GPU. Parts run at the same time on one host share its pace: the host-bound
sub-millisecond rows read slower than in a run alone (v0.82: two tf32 sweeps at once on a two-GPU host,
1.95x / 1.91x; the NCDHW one alone 2.06x), so compare the parts' host_us before reading those rows.
"""
import argparse
import json
import os
import sys

from . import report
from .shapes import SWEEP


def load(d, stem):
    for name in (stem, stem + "-partial"):
        path = os.path.join(d, name + ".json")
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
    raise FileNotFoundError(os.path.join(d, stem + ".json"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stems", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--gpu", default=None, help="results folder name (default: the only one, or this GPU's)")
    args = ap.parse_args(argv)
    root = report.RESULTS_ROOT
    gpu = args.gpu or (sorted(os.listdir(root))[0] if len(os.listdir(root)) == 1 else None)
    if gpu is None:
        print("bench.merge: several GPUs under bench/results; pass --gpu", file=sys.stderr)
        return 2
    d = os.path.join(root, gpu)
    parts = [load(d, s) for s in args.stems]
    order = {c.name: i for i, c in enumerate(SWEEP)}
    rows = sorted((r for p in parts for r in p["rows"]), key=lambda r: order.get(r["case"], len(order)))
    env = dict(parts[0]["environment"], parts=[p["environment"] for p in parts])
    summ = report.summary(rows)
    print(report.table(rows))
    print(report.summary_text(summ))
    for case, rs in report.worst(rows):
        r = min(rs, key=lambda r: r["speedup"])
        print(f"worst: {case}: {r['speedup']:.2f}x ({r['precision']} {r['layout']})")
    report.save(rows, env, args.out, extra={"geomean": summ})
    png = report.plot(rows, env, args.out)
    print(f"results: {d}/{args.out}.json" + (f" (plot {png})" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
