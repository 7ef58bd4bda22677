"""Same-process A/B of the backward's memory policy: step time and peak extra memory (as the benchmark
measures both) under several settings of grad_weight's slices and the backward's order, with cuDNN's
step in every round (autotuned).

Settings: ``base`` (v0.27's policy: no slice slack, grad_input first on tensor-core layers whose
grad_weight temporaries are under 32 MiB), ``slack`` (direct.IGEMM_WGRAD_SLICE_SLACK), ``slack+gw`` (and
grad_weight first on every layer, v0.28's policy), ``slack+gw+sk1`` (and the stock split-K grad_weight at
one wave of CTAs instead of four). Rounds alternate the settings, in reverse order every other round; figures are medians of the rounds'
medians. Usage: memab.py [LAYER:LAYOUT,...] [ROUNDS] [SETTINGS]   (LAYOUT cl or nc)
"""
import statistics
import sys

import torch

from bench.runner import CaseTensors, _native_fns, _our_fns
from bench.shapes import HEADLINE, SWEEP
from bench.timing import bench, peak_extra_mb
from convt3d_cutlass import direct, eager, launch, selector
from convt3d_cutlass.layouts import CL

spec = (sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else
        "unet3d-dec1:nc,unet3d-dec1:cl,gan3d-g1:nc,gan3d-g1:cl,unet3d-k2:nc,unet3d-k2:cl,medium:nc,medium:cl").split(",")
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
settings = (sys.argv[3] if len(sys.argv) > 3 else "base,slack,slack+gw,slack+gw+sk1").split(",")
cases = {c.name: c for c in list(SWEEP) + [HEADLINE]}
torch.backends.cudnn.allow_tf32 = True
torch.backends.cudnn.benchmark = True
SLACK, GW_FIRST, SPLIT_K = direct.IGEMM_WGRAD_SLICE_SLACK, launch.grad_weight_first, selector.split_k_slices


def v27_order(p, plan, x):
    """launch.grad_weight_first until v0.27: exact fp32, or temporaries of at least 32 MiB."""
    if plan.k.precision == "fp32":
        return True
    copy = 0 if x.is_contiguous(memory_format=CL) or direct.wgrad_reads_ncdhw(plan.k, x) else 4 * x.numel()
    return 4 * plan.slices * p.k ** 3 * p.c_in * p.c_out + copy >= 32 << 20


def use(setting: str):
    direct.IGEMM_WGRAD_SLICE_SLACK = SLACK if "slack" in setting else 0.0
    launch.grad_weight_first = GW_FIRST if "gw" in setting else v27_order
    # one wave: the policy's four waves of CTAs asked for with a quarter of the SMs
    selector.split_k_slices = ((lambda p, k, sms, **kw: SPLIT_K(p, k, max(1, sms // 4), **kw)) if "sk1" in setting
                               else SPLIT_K)
    direct.igemm_wgrad_slices.cache_clear()
    launch._plan_cached.cache_clear()
    eager._plans.clear()


print(f"tf32 step ms / peak extra MiB, median of {rounds} rounds; cuDNN autotuned in the same rounds")
print(f"{'layer':16s} {'cuDNN':>14s} " + " ".join(f"{s:>20s}" for s in settings))
for item in spec:
    name, lay = item.split(":")
    t = CaseTensors(cases[name], lay == "cl")
    native = _native_fns(t)["step"]
    native()
    ms = {s: [] for s in ["cudnn"] + settings}
    mem = {"cudnn": peak_extra_mb(native)}
    slices = {}
    for r in range(rounds):
        ms["cudnn"].append(bench(native))
        for s in settings if r % 2 == 0 else settings[::-1]:  # ABBA: no setting always runs first
            use(s)
            step = _our_fns(t, "tf32")[1]["step"]
            step()
            ms[s].append(bench(step))
            if s not in mem:
                mem[s] = peak_extra_mb(step)
                p = launch.Problem.of(t.x, t.w, t.case.stride, t.case.padding, t.case.output_padding)
                plan = launch._plan(p, "wgrad", "tf32", None, t.x.device, None)
                slices[s] = f"{plan.slices}{'w' if launch.grad_weight_first(p, plan, t.x) else 'i'}"
    use("base")
    med = {s: statistics.median(v) for s, v in ms.items()}
    print(f"{name + ' ' + lay:16s} {med['cudnn']:7.3f}/{mem['cudnn']:6.1f} " +
          " ".join(f"{med[s]:7.3f}/{mem[s]:6.1f} {slices[s]:>5s}" for s in settings))
    del t, native
    torch.cuda.empty_cache()
print("(after each setting: grad_weight's slices, and w = grad_weight first, i = grad_input first)")
