"""Time forward / grad_input of every tap-reuse config vs cuDNN (benchmark on) on a few cases; each
config's output checked against the stock kernel's (rel L2 < 3e-3)."""
import os, sys, torch, torch.nn.functional as F
import convt3d_cutlass as ct
from convt3d_cutlass import ops, selector
from convt3d_cutlass.kernel_table import BY_NAME
from bench.timing import bench
from bench.tools.common import LAYERS, layer_tensors
which = sys.argv[1].split(",") if len(sys.argv) > 1 else list(LAYERS)
cc = torch.cuda.get_device_capability()
PREC = os.environ.get("PREC", "tf32")
keep = {'direct_tf32_4x8x16_n24', 'direct_tf32_2x8x16_n32', 'direct_tf32_1x8x16_n32', 'direct_tf32_2x8x16_n64', 'direct_tf32_2x8x16_n16', 'direct_tf32_1x8x16_n64'}
for name in which:
    prob, x, w, gy = layer_tensors(name)
    s, p = prob.stride, prob.padding
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = PREC == "tf32"
    with torch.no_grad():
        cf = bench(lambda: F.conv_transpose3d(x, w, None, s, p), reps=15)
        cb = bench(lambda: torch.ops.aten.convolution_backward(gy, x, w, None, [s]*3, [p]*3, [1]*3, True, [0]*3, 1, [True, False, False]), reps=15)
    fl = prob.flops()
    print(f"== {name}: cuDNN fwd {cf:.3f} ms, grad_input {cb:.3f} ms ({fl/cf/1e9:.0f} TFLOP/s fwd)")
    for op, fn, ref_ms in (("dgrad", lambda c: ct.conv_transpose3d(x, w, None, s, p, precision=PREC, config=c), cf),
                           ("fprop", lambda c: ops.grad_input_op(gy, w, s, p, 0, True, PREC, c), cb)):
        sel = selector.select_config(prob, op, PREC, capability=cc).name
        stock = selector.select_config(prob, op, PREC, capability=cc, family="cutlass2x").name
        res = []
        with torch.no_grad():
            ms = bench(lambda: fn(stock), reps=15)
        res.append((ms, stock))
        with torch.no_grad():
            ref_out = (F.conv_transpose3d(x.double(), w.double(), None, s, p) if op == "dgrad"
                       else F.conv3d(gy.double(), w.double(), None, s, p))
        for c in ct.configs():
            kc = BY_NAME[c["name"]]
            if kc.precision != PREC:
                continue
            if not c["compiled"] or not kc.tap_reuse or op not in c["passes"] or (kc.family == 'direct' and c['name'] not in keep):
                continue
            if not selector.direct_fits(prob, op, kc, capability=cc):
                continue
            with torch.no_grad():
                out = fn(c["name"])
                err = ((out.double() - ref_out).norm() / ref_out.norm()).item()
                if not err < (3e-3 if PREC == "tf32" else 1e-5):
                    print(f"  !! {op} {c['name']} rel err {err:.3e} vs float64")
                elif PREC != "tf32":
                    print(f"  .. {op} {c['name']} rel err {err:.3e} vs float64")
                ms = bench(lambda: fn(c["name"]), reps=15)
            res.append((ms, c["name"]))
        res.sort()
        for ms, c in res:
            print(f"  {op} {c:40s} {ms:8.3f} ms {fl/ms/1e9:6.1f} TFLOP/s  vs cuDNN {ref_ms/ms:5.2f}x{'  <- selector' if c == sel else ''}")
