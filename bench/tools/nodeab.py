"""Same-process A/B of the eager step: the C++ autograd node against the Python Function, and cuDNN.

Per layer and layout, rounds alternate node on / node off / cuDNN (autotuned) so that drift of the host
or the GPU hits all three alike. Each round gives the step's median time as the benchmark measures it
(bench.timing.bench: L2 flushed, CUDA events, a sync per rep) and the host's enqueue time per step (a
loop of steps with no sync, divided). Usage: nodeab.py [precision] [layer,layer,...] [rounds]
"""
import os
import statistics
import sys

from bench.runner import CaseTensors, _native_fns, _our_fns, cudnn_mode
from bench.shapes import HEADLINE, SWEEP
from bench.timing import bench
from bench.tools.common import host_ms

prec = sys.argv[1] if len(sys.argv) > 1 else "tf32"
names = (sys.argv[2] if len(sys.argv) > 2 else
         "gan3d-g1,unet3d-dec1,unet3d-k2,medium,unet-outpad,gan3d-g2,unet3d-dec2,video-gen").split(",")
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
cases = {c.name: c for c in list(SWEEP) + [HEADLINE]}


def one(fn, node):
    if node is not None:
        os.environ["CONVT3D_EAGER_NODE"] = "1" if node else "0"
    return bench(fn, warmup=3, reps=30), host_ms(fn)


print(f"precision {prec}; per round: step ms (bench) / host enqueue ms per step; median over {rounds} rounds")
print(f"{'layer':14s} {'layout':6s} {'node':>16s} {'python':>16s} {'cuDNN':>16s} {'node/py':>8s} {'cuDNN/node':>10s}")
for nm in names:
    c = cases[nm]
    for cl in (True, False):
        t = CaseTensors(c, cl)
        _, ours = _our_fns(t, prec)
        native = _native_fns(t)
        res = {"node": [], "py": [], "cudnn": []}
        for _ in range(rounds):
            res["node"].append(one(ours["step"], True))
            res["py"].append(one(ours["step"], False))
            with cudnn_mode(prec == "tf32", True):
                res["cudnn"].append(one(native["step"], None))
        med = {k: (statistics.median(a for a, _ in v), statistics.median(b for _, b in v)) for k, v in res.items()}
        cell = lambda k: f"{med[k][0]:7.3f} / {med[k][1]:6.3f}"
        print(f"{nm:14s} {'NDHWC' if cl else 'NCDHW':6s} {cell('node'):>16s} {cell('py'):>16s} {cell('cudnn'):>16s} "
              f"{med['py'][0] / med['node'][0]:8.2f} {med['cudnn'][0] / med['node'][0]:10.2f}", flush=True)
        del t, ours, native
os.environ.pop("CONVT3D_EAGER_NODE", None)
