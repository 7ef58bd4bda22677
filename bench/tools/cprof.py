"""cProfile of eager tf32 steps (own time per function, torch C calls included)."""
import cProfile, pstats, sys, torch
from bench.shapes import SWEEP
from bench.runner import CaseTensors, _our_fns
torch.backends.cudnn.allow_tf32 = True
c = [c for c in SWEEP if c.name == sys.argv[1]][0]
t = CaseTensors(c, sys.argv[2] == "NDHWC")
_, ours = _our_fns(t, "tf32")
for _ in range(20): ours["step"]()
torch.cuda.synchronize()
n = 300
pr = cProfile.Profile()
pr.enable()
for _ in range(n): ours["step"]()
pr.disable()
torch.cuda.synchronize()
st = pstats.Stats(pr); st.sort_stats("tottime")
print(f"== {sys.argv[1]} {sys.argv[2]}: {n} steps; times below are totals over the steps")
st.print_stats(45)
