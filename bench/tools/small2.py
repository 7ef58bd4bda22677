"""Small layers, NDHWC tf32 step: host enqueue vs wall per step, GPU kernels (profiler), cProfile top."""
import cProfile, pstats, io, sys, time, torch
from bench.shapes import SWEEP
from bench.runner import CaseTensors, _our_fns
from bench.tools.common import gpu_kernels
torch.backends.cudnn.allow_tf32 = True
names = sys.argv[1].split(",")
for nm in names:
    c = [c for c in SWEEP if c.name == nm][0]
    t = CaseTensors(c, True)
    _, ours = _our_fns(t, "tf32")
    for _ in range(5): ours["step"]()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(50): ours["step"]()
    t1 = time.perf_counter(); torch.cuda.synchronize(); t2 = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        ours["step"](); torch.cuda.synchronize()
    total, lines = gpu_kernels(prof, 8)
    print(f"== {nm}: host/step {1e3*(t1-t0)/50:.3f} ms, wall/step {1e3*(t2-t0)/50:.3f} ms, "
          f"GPU kernels {total:.3f} ms")
    print("\n".join(lines))
c = [c for c in SWEEP if c.name == names[0]][0]
t = CaseTensors(c, True)
_, ours = _our_fns(t, "tf32")
for _ in range(5): ours["step"]()
pr = cProfile.Profile(); pr.enable()
for _ in range(50): ours["step"]()
pr.disable(); torch.cuda.synchronize()
s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(25); print(s.getvalue()[:6000])
