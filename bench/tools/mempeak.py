"""Where a training step's peak extra memory goes: ours against cuDNN, and the blocks live at our peak.

Measures as the benchmark does (bench.timing.peak_extra_mb: empty cache, peak above what was allocated
before one step), then runs the step once more under the allocator's history recorder and replays its
trace: at the moment of the peak, every block allocated during the step and still live, largest first,
with its size in MiB and the innermost Python frames (blocks from the C++ node show none). Usage:

    python bench/tools/mempeak.py [LAYER:LAYOUT,...] [PRECISION]     # LAYOUT: cl or nc
"""
import sys

import torch

from bench.runner import CaseTensors, _native_fns, _our_fns
from bench.shapes import HEADLINE, SWEEP
from bench.timing import peak_extra_mb

spec = (sys.argv[1] if len(sys.argv) > 1 else
        "unet3d-dec1:nc,unet3d-k2:nc,unet3d-k2:cl,gan3d-g1:nc,medium:cl").split(",")
prec = sys.argv[2] if len(sys.argv) > 2 else "tf32"
cases = {c.name: c for c in list(SWEEP) + [HEADLINE]}
torch.backends.cudnn.allow_tf32 = prec != "fp32"
torch.backends.cudnn.benchmark = True


def live_at_peak(step):
    """(peak extra MiB, [(MiB, frames)] of the step's blocks live at the peak)."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.memory._record_memory_history(max_entries=100000, stacks="python")
    step()
    torch.cuda.synchronize()
    snap = torch.cuda.memory._snapshot()
    torch.cuda.memory._record_memory_history(enabled=None)
    live, cur, best, best_live = {}, 0, 0, {}
    for ev in snap["device_traces"][torch.cuda.current_device()]:
        if ev["action"] == "alloc":
            live[ev["addr"]] = ev
            cur += ev["size"]
            if cur > best:
                best, best_live = cur, dict(live)
        elif ev["action"] == "free_requested" and ev["addr"] in live:
            cur -= live.pop(ev["addr"])["size"]
    blocks = []
    for ev in best_live.values():
        frames = [f"{f['filename'].split('/')[-1]}:{f['line']} {f['name']}" for f in ev.get("frames", [])
                  if "torch/" not in f["filename"]][:3]
        blocks.append((ev["size"] / 2 ** 20, frames))
    return best / 2 ** 20, sorted(blocks, key=lambda b: -b[0])


for item in spec:
    name, lay = item.split(":")
    t = CaseTensors(cases[name], lay == "cl")
    _, ours = _our_fns(t, prec)
    native = _native_fns(t)
    for side, step in (("cudnn", native["step"]), ("ours", ours["step"])):
        for _ in range(3):
            step()
        mb = peak_extra_mb(step)
        gross, blocks = live_at_peak(step)
        print(f"== {name} {lay} {side}: peak extra {mb:.2f} MiB (bench); allocated during the step, live at "
              f"the peak: {gross:.2f} MiB in {len(blocks)} blocks")
        if side == "ours":
            for size, frames in blocks[:12]:
                print(f"   {size:9.3f}  {' < '.join(frames) or '(C++)'}")
    del t, ours, native
    torch.cuda.empty_cache()
