"""Time forward / grad_input of every tap-reuse config vs cuDNN (benchmark on) on a few cases."""
import sys, torch, torch.nn.functional as F
import convt3d_cutlass as ct
from convt3d_cutlass import ops, selector, _extension
from convt3d_cutlass.kernel_table import BY_NAME
from convt3d_cutlass.layouts import CL
from convt3d_cutlass.problem import Problem
from bench.timing import bench
cases = {
 "headline": (8, 48, 24, (96, 96, 96), 3, 1, 0),
 "unet3d-dec3": (2, 64, 32, (64, 64, 64), 3, 2, 1),
 "video-gen": (4, 64, 32, (16, 64, 64), 3, 1, 1),
 "sr-head": (1, 32, 8, (128, 128, 128), 3, 1, 1),
 "sr-up2": (4, 64, 32, (48, 48, 48), 3, 2, 1),
 "gan3d-g2": (16, 128, 64, (16, 16, 16), 3, 2, 1),
 "medium": (2, 128, 64, (32, 32, 32), 3, 1, 1),
 "unet3d-dec2": (2, 128, 64, (32, 32, 32), 3, 2, 1),
 "unet3d-dec1": (2, 256, 128, (16, 16, 16), 3, 2, 1),
 "gan3d-g1": (16, 256, 128, (8, 8, 8), 3, 2, 1),
 "vnet-up": (1, 128, 64, (24, 24, 24), 5, 2, 2),
 "gan3d-g3": (16, 64, 32, (32, 32, 32), 5, 2, 2),
}
which = sys.argv[1].split(",") if len(sys.argv) > 1 else list(cases)
cc = torch.cuda.get_device_capability()
keep = {'direct_tf32_4x8x16_n24', 'direct_tf32_2x8x16_n32', 'direct_tf32_1x8x16_n32', 'direct_tf32_2x8x16_n64', 'direct_tf32_2x8x16_n16', 'direct_tf32_1x8x16_n64'}
for name in which:
    n, ci, co, sp, k, s, p = cases[name]
    prob = Problem(n, ci, co, sp, k, s, p)
    x = torch.randn(n, ci, *sp, device="cuda").to(memory_format=CL)
    w = torch.randn(ci, co, k, k, k, device="cuda") / (ci * k ** 3) ** 0.5
    y = F.conv_transpose3d(x, w, None, s, p)
    gy = torch.randn_like(y).contiguous(memory_format=CL)
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = True
    with torch.no_grad():
        cf = bench(lambda: F.conv_transpose3d(x, w, None, s, p), reps=15)
        cb = bench(lambda: torch.ops.aten.convolution_backward(gy, x, w, None, [s]*3, [p]*3, [1]*3, True, [0]*3, 1, [True, False, False]), reps=15)
    fl = prob.flops()
    print(f"== {name}: cuDNN fwd {cf:.3f} ms, grad_input {cb:.3f} ms ({fl/cf/1e9:.0f} TFLOP/s fwd)")
    for op, fn, ref_ms in (("dgrad", lambda c: ct.conv_transpose3d(x, w, None, s, p, precision="tf32", config=c), cf),
                           ("fprop", lambda c: ops.grad_input_op(gy, w, s, p, 0, True, "tf32", c), cb)):
        sel = selector.select_config(prob, op, "tf32", capability=cc).name
        stock = selector.select_config(prob, op, "tf32", capability=cc, family="cutlass2x").name
        res = []
        with torch.no_grad():
            ms = bench(lambda: fn(stock), reps=15)
        res.append((ms, stock))
        for c in ct.configs():
            kc = BY_NAME[c["name"]]
            if not c["compiled"] or not kc.tap_reuse or op not in c["passes"] or (kc.family == 'direct' and c['name'] not in keep):
                continue
            if not selector.direct_fits(prob, op, kc, capability=cc):
                continue
            with torch.no_grad():
                out = fn(c["name"])
                ms = bench(lambda: fn(c["name"]), reps=15)
            res.append((ms, c["name"]))
        res.sort()
        for ms, c in res:
            print(f"  {op} {c:40s} {ms:8.3f} ms {fl/ms/1e9:6.1f} TFLOP/s  vs cuDNN {ref_ms/ms:5.2f}x{'  <- selector' if c == sel else ''}")
