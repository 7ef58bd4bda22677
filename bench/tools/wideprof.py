"""Where a wide-path step's time goes: GPU kernels per step (profiler) and CUDA-event step time,
for unet3d-k2 and unet-outpad, tf32, both layouts."""
import statistics, sys, torch
from bench.shapes import SWEEP
from bench.runner import CaseTensors, _our_fns
from bench.tools.common import gpu_kernels
torch.backends.cudnn.allow_tf32 = True
for nm in sys.argv[1].split(","):
    c = [c for c in SWEEP if c.name == nm][0]
    for cl in (True, False):
        t = CaseTensors(c, cl)
        fast, ours = _our_fns(t, sys.argv[2] if len(sys.argv) > 2 else "tf32")
        for _ in range(5):
            ours["step"]()
        torch.cuda.synchronize()
        ts = []
        for _ in range(30):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record(); ours["step"](); b.record(); b.synchronize(); ts.append(a.elapsed_time(b))
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA,
                                                torch.profiler.ProfilerActivity.CPU]) as prof:
            ours["step"](); torch.cuda.synchronize()
        total, lines = gpu_kernels(prof, 14)
        print(f"== {nm} {'NDHWC' if cl else 'NCDHW'} fast={fast}: step {statistics.median(ts):.3f} ms, "
              f"GPU kernels {total:.3f} ms")
        print("\n".join(lines))
        cpu = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CPU]
        for e in sorted(cpu, key=lambda e: -e.cpu_time_total)[:8]:
            print(f"   cpu {e.cpu_time_total/1000:7.3f} ms x{e.count} {e.key[:100]}")
