"""Time grad_weight of the stock, mma.sync tap-reuse and wgmma configs vs cuDNN (benchmark on)."""
import os, sys, torch, torch.nn.functional as F
import convt3d_cutlass as ct
from convt3d_cutlass import launch, selector, _extension
from convt3d_cutlass.kernel_table import BY_NAME
from convt3d_cutlass.layouts import CL
from convt3d_cutlass.problem import Problem
from bench.timing import bench
cases = {
 "headline": (8, 48, 24, (96, 96, 96), 3, 1, 0),
 "video-gen": (4, 64, 32, (16, 64, 64), 3, 1, 1),
 "sr-head": (1, 32, 8, (128, 128, 128), 3, 1, 1),
 "medium": (2, 128, 64, (32, 32, 32), 3, 1, 1),
 "vnet-refine": (1, 32, 16, (64, 64, 64), 5, 1, 2),
 "unet3d-dec3": (2, 64, 32, (64, 64, 64), 3, 2, 1),
 "sr-up2": (4, 64, 32, (48, 48, 48), 3, 2, 1),
 "gan3d-g2": (16, 128, 64, (16, 16, 16), 3, 2, 1),
 "unet3d-dec2": (2, 128, 64, (32, 32, 32), 3, 2, 1),
 "unet3d-dec1": (2, 256, 128, (16, 16, 16), 3, 2, 1),
 "gan3d-g1": (16, 256, 128, (8, 8, 8), 3, 2, 1),
 "vnet-up": (1, 128, 64, (24, 24, 24), 5, 2, 2),
 "gan3d-g3": (16, 64, 32, (32, 32, 32), 5, 2, 2),
 "wide-s1": (2, 256, 128, (16, 16, 16), 3, 1, 1),
}
PREC = os.environ.get('PREC', 'tf32')
which = sys.argv[1].split(",") if len(sys.argv) > 1 else list(cases)
cc = torch.cuda.get_device_capability()
dev = torch.cuda.current_device()
for name in which:
    n, ci, co, sp, k, s, p = cases[name]
    prob = Problem(n, ci, co, sp, k, s, p)
    x = torch.randn(n, ci, *sp, device="cuda").to(memory_format=CL)
    w = torch.randn(ci, co, k, k, k, device="cuda") / (ci * k ** 3) ** 0.5
    y = F.conv_transpose3d(x, w, None, s, p)
    gy = torch.randn_like(y).contiguous(memory_format=CL)
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
