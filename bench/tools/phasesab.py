"""The stock forward's stride phases in one grouped launch (v0.43) against one launch per phase on side
streams (dgrad_phases' grouped=False, the v0.42 form), per layer: GPU and host ms, same process.

    python bench/tools/phasesab.py [SPECS [ROUNDS [REPS]]]

SPECS: comma-separated LAYER:PRECISION[:CONFIG]; CONFIG forces every phase's stock kernel (as on a GPU
without our Hopper rows), else the selector's. gpu = gpu_only (launches queued behind a busy GPU), host =
host_only (idle GPU at entry), each the median of REPS calls; the settings alternate within a round, the
first one reversed every other round; printed: medians over ROUNDS. The two results must be bitwise equal.
"""
import statistics
import sys

import torch

from bench.tools.common import LAYERS, layer_tensors
from bench.tools.hostgap import gpu_only, host_only
from convt3d_cutlass import launch
from convt3d_cutlass.layouts import empty_cl, ndhwc

specs = (sys.argv[1] if len(sys.argv) > 1 else
         "unet3d-dec1:fp32,gan3d-g1:fp32,unet3d-dec2:tf32:dgrad_tf32_128x64x32_64x32x32_s3,"
         "unet3d-dec3:tf32:dgrad_tf32_128x64x32_64x32x32_s3").split(",")
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 20
ops = torch.ops.convt3d_cutlass

print(f"{'layer':12s} {'prec':6s} {'phases':>6s} {'kernel':34s} | gpu one/per-phase  ratio | host one/per-phase "
      f"ratio | equal")
for spec in specs:
    name, prec, *cfg = spec.split(":")
    assert name in LAYERS, name
    p, x, w, _ = layer_tensors(name)
    names, rs, ints, _, splits = launch._stock_phases(p, prec, cfg[0] if cfg else None, torch.cuda.current_device(), "")
    filters = [launch.filter_ktrsc(w, r, p.stride) for r in rs]
    X = ndhwc(x)
    ys = {g: empty_cl((p.n, p.c_out) + p.out_spatial, x) for g in (True, False)}

    def run(g):
        return lambda: ops.dgrad_phases(list(names), X, filters, None, ys[g].permute(0, 2, 3, 4, 1), list(ints),
                                        p.stride, list(splits), g)

    for g in ys:
        ys[g].fill_(float("nan"))
        run(g)()
    equal = torch.equal(ys[True], ys[False])
    res = {(g, k): [] for g in (True, False) for k in ("gpu", "host")}
    for r in range(rounds):
        for g in ((True, False) if r % 2 == 0 else (False, True)):
            res[(g, "gpu")].append(gpu_only(run(g), reps))
            res[(g, "host")].append(host_only(run(g), reps))
    m = {k: statistics.median(v) for k, v in res.items()}
    kern = ",".join(sorted(set(names)))
    print(f"{name:12s} {prec:6s} {len(names):6d} {kern[:34]:34s} | {m[(True, 'gpu')]:7.4f}/{m[(False, 'gpu')]:7.4f} "
          f"{m[(False, 'gpu')] / m[(True, 'gpu')]:5.2f}x | {m[(True, 'host')]:6.4f}/{m[(False, 'host')]:6.4f} "
          f"{m[(False, 'host')] / m[(True, 'host')]:5.2f}x | {equal}", flush=True)
