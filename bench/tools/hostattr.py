"""Inclusive host time per function inside an eager tf32 step (wrappers around the package's functions)."""
import sys, time, functools, collections, torch
from bench.shapes import SWEEP
from bench.runner import CaseTensors
import convt3d_cutlass as ct
from convt3d_cutlass import functional, fast_path, ops, launch
torch.backends.cudnn.allow_tf32 = True
PREC = sys.argv[2] if len(sys.argv) > 2 else "tf32"
import warnings
acc = collections.defaultdict(float); cnt = collections.Counter()
def wrap(mod, name, label=None):
    f = getattr(mod, name); label = label or f"{mod.__name__.split('.')[-1]}.{name}"
    @functools.wraps(f)
    def g(*a, **k):
        t0 = time.perf_counter_ns()
        try: return f(*a, **k)
        finally: acc[label] += time.perf_counter_ns() - t0; cnt[label] += 1
    setattr(mod, name, g); return g
for mod, name in [(functional, "_validate"), (fast_path, "check"), (ops, "apply"), (ops, "_fwd"), (ops, "_backward"),
                  (ops, "_grad_in"), (ops, "_grad_w"), (launch, "forward"), (launch, "grad_input"),
                  (launch, "grad_weight"), (launch, "_select"), (launch, "_config"), (launch, "ndhwc"),
                  (launch, "_empty_out"), (launch, "cached_filter"), (ops, "channel_sums"), (ops, "to_format"),
                  (ops, "channels_last_with_sums")]:
    if hasattr(mod, name): wrap(mod, name)
if hasattr(launch, "_finish"): wrap(launch, "_finish")
class Proxy:
    def __init__(self, real): self.real = real
    def __getattr__(self, name):
        f = getattr(self.real, name)
        def g(*a):
            t0 = time.perf_counter_ns()
            try: return f(*a)
            finally: acc["op." + name] += time.perf_counter_ns() - t0; cnt["op." + name] += 1
        return g
real = launch._ops; px = Proxy(real()); launch._ops = lambda: px
for cl in (True, False):
    for nm in sys.argv[1].split(","):
        c = [c for c in SWEEP if c.name == nm][0]
        t = CaseTensors(c, cl)
        xg, wg, bg = (t.x.detach().requires_grad_(), t.w.detach().requires_grad_(), t.b.detach().requires_grad_())
        def step():
            xg.grad = wg.grad = bg.grad = None
            t0 = time.perf_counter_ns()
            y = ct.conv_transpose3d(xg, wg, bg, c.stride, c.padding, c.output_padding, precision=PREC)
            t1 = time.perf_counter_ns()
            y.backward(t.gy)
            t2 = time.perf_counter_ns()
            acc["[forward call]"] += t1 - t0; acc["[backward call]"] += t2 - t1
            cnt["[forward call]"] += 1; cnt["[backward call]"] += 1
        for _ in range(10): step()
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode(1)
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            step()
        torch.cuda.set_sync_debug_mode(0)
        for r in rec: print("   SYNC:", str(r.message)[:150])
        torch.cuda.synchronize(); acc.clear(); cnt.clear()
        n = 50
        t0 = time.perf_counter()
        for _ in range(n): step()
        t1 = time.perf_counter(); torch.cuda.synchronize(); t2 = time.perf_counter()
        print(f"== {nm} {'NDHWC' if cl else 'NCDHW'}: host/step {1e3*(t1-t0)/n:.3f} ms wall/step {1e3*(t2-t0)/n:.3f} ms (wrapped)")
        for k in sorted(acc, key=lambda k: -acc[k]):
            print(f"   {k:28s} {acc[k]/n/1e3:7.1f} us/step  x{cnt[k]/n:.0f}")
