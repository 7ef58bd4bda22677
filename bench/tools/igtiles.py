"""The implicit-GEMM rows of one N block against each other, per pass, on named layers (v0.41): every
compiled igemm row of the selector's pick's precision and N block that fits, timed in alternating rounds
(bench.timing: L2 flushed, CUDA events; the medians of the rounds' medians). Passes as the step runs them:
the forward (channels_last_3d, and NCDHW in the output form the policy gives each row) and grad_input with
the bias gradient from its read (launch.grad_input_with_bias; NCDHW too). Outputs checked against the
selector's pick's.

    python bench/tools/igtiles.py unet3d-dec2,unet3d-dec3 [ROUNDS] [tf32|3xtf32]
"""
import statistics
import sys

import torch

from bench.tools.common import layer_tensors
from bench.timing import bench
from convt3d_cutlass import _extension, launch, selector
from convt3d_cutlass.kernel_table import IGEMM_KERNELS

names = sys.argv[1].split(",")
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 4
prec = sys.argv[3] if len(sys.argv) > 3 else "tf32"
dev = torch.cuda.current_device()
limit, cc = _extension.smem_optin(dev), _extension.capability(dev)
compiled = set(_extension.compiled_kernels())
print(f"{prec}, ms, median of {rounds} rounds; ratio = the selector's pick / the row")
for nm in names:
    prob, x, w, gy = layer_tensors(nm)
    b = torch.randn(prob.c_out, device="cuda")
    xn, gyn = x.contiguous(), gy.contiguous()
    for op in ("dgrad", "fprop"):
        pick = selector.select_config(prob, op, prec, capability=cc)
        if pick.family != "igemm":
            print(f"{nm:12s} {op}: the selector picks {pick.name} (not igemm)")
            continue
        rows = [k for k in IGEMM_KERNELS if k.precision == prec and k.bn == pick.bn and k.name in compiled
                and selector.direct_fits(prob, op, k, limit, cc)]
        rows.sort(key=lambda k: k.name != pick.name)
        if op == "dgrad":
            def fns(k):
                return {"CL": lambda: launch.forward(x, w, b, prob, prec, k.name),
                        "NCDHW": lambda: launch.forward(xn, w, b, prob, prec, k.name, ncdhw=True)}
        else:
            def fns(k):
                return {"CL": lambda: launch.grad_input_with_bias(gy, w, prob, prec, k.name),
                        "NCDHW": lambda: launch.grad_input_with_bias(gy, w, prob, prec, k.name, ncdhw=True)}
        ref = {lay: f() for lay, f in fns(pick).items()}
        res = {}
        for k in rows:
            for lay, f in fns(k).items():
                out = f()
                a, r = (out[0], ref[lay][0]) if op == "fprop" else (out, ref[lay])
                err = ((a.double() - r.double()).norm() / r.double().norm()).item()
                assert err < 1e-5, (k.name, lay, err)
        for _ in range(rounds):
            for k in rows:
                for lay, f in fns(k).items():
                    res.setdefault((k.name, lay), []).append(bench(f, warmup=2, reps=15))
        m = {key: statistics.median(v) for key, v in res.items()}
        for k in rows:
            cells = "  ".join(f"{lay} {m[(k.name, lay)]:.3f} ({m[(pick.name, lay)] / m[(k.name, lay)]:.3f})"
                              for lay in ("CL", "NCDHW"))
            print(f"{nm:12s} {op:5s} {k.name:28s} {cells}{'  <- selector' if k is pick else ''}", flush=True)
