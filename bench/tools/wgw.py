"""Time grad_weight of the stock, mma.sync tap-reuse and wgmma configs vs cuDNN (benchmark on)."""
import os, sys, torch
import convt3d_cutlass as ct
from convt3d_cutlass import launch, selector, _extension
from convt3d_cutlass.kernel_table import BY_NAME
from bench.timing import bench
from bench.tools.common import LAYERS, layer_tensors
PREC = os.environ.get('PREC', 'tf32')
which = sys.argv[1].split(",") if len(sys.argv) > 1 else list(LAYERS)
cc = torch.cuda.get_device_capability()
dev = torch.cuda.current_device()
for name in which:
    prob, x, w, gy = layer_tensors(name)
    s, p = prob.stride, prob.padding
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = PREC == 'tf32'
    cud = lambda: torch.ops.aten.convolution_backward(gy, x, w, None, [s]*3, [p]*3, [1]*3, True, [0]*3, 1, [False, True, False])[1]
    with torch.no_grad():
        ref = cud() if PREC == 'tf32' else torch.ops.aten.convolution_backward(gy.double(), x.double(), w.double(), None, [s]*3, [p]*3, [1]*3, True, [0]*3, 1, [False, True, False])[1].float()
        cw = bench(cud, reps=15)
    fl = prob.flops()
    print(f"== {name}: cuDNN grad_weight {cw:.3f} ms ({fl/cw/1e9:.0f} TFLOP/s)")
    sel = selector.select_config(prob, "wgrad", PREC, capability=cc).name
    names = [selector.select_config(prob, "wgrad", PREC, capability=cc, family="cutlass2x").name]
    for c in ct.configs():
        kc = BY_NAME[c["name"]]
        if c["compiled"] and kc.op == "wgrad" and kc.precision == PREC and kc.tap_reuse and selector.direct_fits(prob, "wgrad", kc, _extension.smem_optin(dev), cc):
            names.append(c["name"])
    res = []
    for c in names:
        with torch.no_grad():
            try:
                out = launch.grad_weight(gy, x, prob, PREC, c)
            except Exception as e:
                print(f"  {c}: {str(e)[:200]}")
                continue
            diff = ((out - ref).norm() / ref.norm()).item()
            ms = bench(lambda: launch.grad_weight(gy, x, prob, PREC, c), reps=15)
        res.append((ms, c, diff))
    res.sort()
    for ms, c, diff in res:
        print(f"  wgrad {c:42s} {ms:8.3f} ms {fl/ms/1e9:6.1f} TFLOP/s  vs cuDNN {cw/ms:5.2f}x  diff {diff:.1e}{'  <- selector' if c == sel else ''}")
