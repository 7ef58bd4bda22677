"""GPU kernels of one headline tf32 training step (NDHWC and NCDHW), profiler sums."""
import torch
from bench.shapes import HEADLINE
from bench.runner import CaseTensors, _our_fns
from bench.tools.common import gpu_kernels
torch.backends.cudnn.allow_tf32 = True
for cl in (True, False):
    t = CaseTensors(HEADLINE, cl)
    fast, ours = _our_fns(t, "tf32")
    for _ in range(3):
        ours["step"]()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        ours["step"](); torch.cuda.synchronize()
    total, lines = gpu_kernels(prof, 12)
    print(f"== {'NDHWC' if cl else 'NCDHW'}: GPU kernels {total:.3f} ms")
    print("\n".join(lines))
