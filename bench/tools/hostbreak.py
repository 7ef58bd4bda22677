"""Host-time breakdown of a small layer's eager tf32 step: ours vs cuDNN, per component."""
import sys, time, torch
from bench.shapes import SWEEP
from bench.runner import CaseTensors, _our_fns, _native_fns
from bench.tools.common import gpu_kernels
import convt3d_cutlass as ct
from convt3d_cutlass import launch, ops
torch.backends.cudnn.allow_tf32 = True
torch.backends.cudnn.benchmark = True

def host(fn, n=50):
    for _ in range(5): fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n): fn()
    t1 = time.perf_counter(); torch.cuda.synchronize(); t2 = time.perf_counter()
    return 1e3 * (t1 - t0) / n, 1e3 * (t2 - t0) / n

class Proxy:
    def __init__(self, real): self.real, self.t = real, {}
    def __getattr__(self, name):
        f = getattr(self.real, name)
        def g(*a):
            t0 = time.perf_counter(); r = f(*a); dt = time.perf_counter() - t0
            self.t.setdefault(name, []).append(dt); return r
        return g

names = sys.argv[1].split(",")
for cl in (True, False):
    for nm in names:
        c = [c for c in SWEEP if c.name == nm][0]
        t = CaseTensors(c, cl)
        _, ours = _our_fns(t, "tf32")
        nat = _native_fns(t)
        xg, wg, bg = (t.x.detach().requires_grad_(), t.w.detach().requires_grad_(), t.b.detach().requires_grad_())
        def fwd_grad():
            return ct.conv_transpose3d(xg, wg, bg, c.stride, c.padding, c.output_padding, precision="tf32")
        def fwd_nograd():
            with torch.no_grad():
                return ct.conv_transpose3d(t.x, t.w, t.b, c.stride, c.padding, c.output_padding, precision="tf32")
        def gi(): return ops._grad_in(t.gy, t.w, c.stride, c.padding, cl, "tf32", "")
        def gw(): return ops._grad_w(t.gy, t.x, c.k, c.stride, c.padding, "tf32", "")
        def gb(): return t.gy.sum((0, 2, 3, 4))
        def empty(): return torch.empty((c.n, c.c_out, 16, 16, 16), device="cuda", memory_format=torch.channels_last_3d)
        r = {}
        r["ours step"] = host(ours["step"])
        r["cudnn step"] = host(nat["step"])
        r["ours fwd (grad)"] = host(fwd_grad)
        r["ours fwd (no_grad)"] = host(fwd_nograd)
        r["cudnn fwd"] = host(nat["forward"])
        r["ours _grad_in"] = host(gi)
        r["ours _grad_w"] = host(gw)
        r["gy.sum bias"] = host(gb)
        from convt3d_cutlass import layouts as _lay
        if hasattr(_lay, "channel_sums"): r["channel_sums bias"] = host(lambda: _lay.channel_sums(t.gy))
        r["torch.empty"] = host(empty)
        real = launch._ops
        px = Proxy(real())
        launch._ops = lambda: px
        host(ours["step"])
        launch._ops = real
        print(f"== {nm} {'NDHWC' if cl else 'NCDHW'}")
        for k, (h, w) in r.items():
            print(f"   {k:22s} host {h:6.3f} ms  wall {w:6.3f} ms")
        for k, v in px.t.items():
            v = sorted(v)
            print(f"   op {k:19s} host {1e3*v[len(v)//2]:6.3f} ms median x{len(v)}")
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            ours["step"](); torch.cuda.synchronize()
        total, lines = gpu_kernels(prof, 8, "     ")
        print(f"   GPU kernels {total:.3f} ms")
        print("\n".join(lines))

c = [c for c in SWEEP if c.name == names[0]][0]
t = CaseTensors(c, True)
_, ours = _our_fns(t, "tf32")
for _ in range(5): ours["step"]()
torch.cuda.synchronize()
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    for _ in range(20): ours["step"]()
    torch.cuda.synchronize()
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
