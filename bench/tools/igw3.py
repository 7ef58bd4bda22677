"""grad_weight per config on the strided wide layers (tf32, channels_last_3d): the kw-fold igemm_wgrad rows
against the per-tap ones, the selector's pick and cuDNN (autotuned), same process; then ncu-free
sanity: fold vs per-tap partials bitwise."""
import sys, torch
from bench.shapes import SWEEP
from bench.runner import CaseTensors, _native_fns
from bench.timing import bench
from convt3d_cutlass import ops, selector
from convt3d_cutlass.kernel_table import IGEMM_WGRAD_KERNELS
torch.backends.cudnn.allow_tf32 = True
torch.backends.cudnn.benchmark = True
names = sys.argv[1].split(",")
for c in [c for c in SWEEP if c.name in names]:
    t = CaseTensors(c, True)
    p = c.problem()
    sel = selector.select_config(p, "wgrad", "tf32").name
    flops = 2.0 * c.n * c.spatial[0] * c.spatial[1] * c.spatial[2] * c.c_in * c.c_out * c.k ** 3
    nat = _native_fns(t)["grad_weight"]
    res = [("cuDNN", bench(nat, reps=20))]
    for k in IGEMM_WGRAD_KERNELS:
        if not selector.igemm_wgrad_fits(p, k):
            continue
        res.append((k.name, bench(lambda: ops.grad_weight_op(t.gy, t.x, c.k, c.stride, c.padding,
                                                             c.output_padding, "tf32", k.name), reps=20)))
    res.append(("selected " + sel, bench(lambda: ops.grad_weight_op(t.gy, t.x, c.k, c.stride, c.padding,
                                                                     c.output_padding, "tf32", ""), reps=20)))
    print(f"== {c.label()}")
    for n, ms in res:
        print(f"   {n:44s} {ms:7.3f} ms {flops / ms / 1e9:6.1f} TFLOP/s")
