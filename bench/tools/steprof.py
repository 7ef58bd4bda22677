"""GPU kernels of one training step, ours and cuDNN's (profiler sums), beside the CUDA-event step times.

    python bench/tools/steprof.py [PRECISION [CASES]]    # default: tf32 headline; CASES a comma list of
                                                         # sweep case names
cuDNN runs with cudnn.benchmark on (autotuned; the profiled step is after the tuning calls)."""
import sys

import torch
from bench.shapes import HEADLINE, SWEEP
from bench.runner import CaseTensors, _native_fns, _our_fns
from bench.tools.common import gpu_kernels, median_ms

prec = sys.argv[1] if len(sys.argv) > 1 else "tf32"
names = sys.argv[2].split(",") if len(sys.argv) > 2 else ["headline"]
cases = {c.name: c for c in [HEADLINE] + list(SWEEP)}
torch.backends.cudnn.allow_tf32 = prec != "fp32"
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.benchmark = True


def profile(step):
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    return gpu_kernels(prof, 12)


for name in names:
    for cl in (True, False):
        t = CaseTensors(cases[name], cl)
        _, ours = _our_fns(t, prec)
        native = _native_fns(t)
        for who, step in (("ours", ours["step"]), ("cuDNN", native["step"])):
            total, lines = profile(step)
            ms = median_ms(step, 15, 3)
            print(f"== {name} {'NDHWC' if cl else 'NCDHW'} {prec} {who}: step {ms:.3f} ms, GPU kernels {total:.3f} ms")
            print("\n".join(lines))
