"""GPU kernels of one headline tf32 training step (NDHWC and NCDHW), profiler sums."""
import torch
from bench.shapes import HEADLINE
from bench.runner import CaseTensors, _our_fns
torch.backends.cudnn.allow_tf32 = True
for cl in (True, False):
    t = CaseTensors(HEADLINE, cl)
    fast, ours = _our_fns(t, "tf32")
    for _ in range(3):
        ours["step"]()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        ours["step"](); torch.cuda.synchronize()
    ev = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    print(f"== {'NDHWC' if cl else 'NCDHW'}: GPU kernels {sum(e.device_time_total for e in ev)/1000:.3f} ms")
    for e in sorted(ev, key=lambda e: -e.device_time_total)[:12]:
        print(f"   {e.device_time_total/1000:7.3f} ms x{e.count} {e.key[:120]}")
