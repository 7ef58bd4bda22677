"""Host microseconds per call of single binding ops, no profiler (v0.62: torch.profiler put a tap-reuse kernel's
run at 16-25 us of self time on channels_last_3d rows and about 7 on NCDHW ones, and a layout transpose at 18,
where hostparts.cu times a launch at 4.4 us and a tensor-map encode at 0.1; CUPTI's callbacks were the suspect).

Each figure is the best of ROUNDS batches of CALLS calls enqueued behind a GPU sleep long enough that no call
waits for the queue, divided by CALLS. The forward's direct op is called on the same layer with its input as
the caller's channels_last_3d x seen through a permuted view (what the eager node passes) and as a packed
NDHWC copy (what an NCDHW step passes after its transpose), so the two differ only in the tensor objects.

    python bench/tools/runhost.py [LAYER] [CALLS] [ROUNDS]
"""
import sys
import time

import torch

from bench.shapes import HEADLINE, SWEEP
from convt3d_cutlass import launch
from convt3d_cutlass.layouts import CL, empty_cl, ndhwc
from convt3d_cutlass.problem import Problem

name = sys.argv[1] if len(sys.argv) > 1 else "gan3d-g1"
calls = int(sys.argv[2]) if len(sys.argv) > 2 else 300
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 7
c = {c.name: c for c in list(SWEEP) + [HEADLINE]}[name]
ops = torch.ops.convt3d_cutlass


def per_call_us(fn):
    fn()
    torch.cuda.synchronize()
    best = 1e9
    for _ in range(rounds):
        torch.cuda._sleep(int(2e6 * calls / 10))  # about 0.1 ms of GPU per call: the queue never waits on it
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t) * 1e6 / calls)
        torch.cuda.synchronize()
    return best


x = torch.randn(c.n, c.c_in, *c.spatial, device="cuda").to(memory_format=CL)
w = torch.randn(c.c_in, c.c_out, c.k, c.k, c.k, device="cuda")
p = Problem.of(x, w, c.stride, c.padding, c.output_padding)
plan = launch._plan(p, "dgrad", "tf32", None, x.device, None)
print(f"{name}: forward on {plan.name} (tap reuse {plan.tap_reuse}); host us per call, best of {rounds} x {calls}")
y = empty_cl((p.n, p.c_out) + p.out_spatial, x)
Y = y.permute(0, 2, 3, 4, 1)
view = ndhwc(x)
packed = view.contiguous().clone()
assert view.is_contiguous() and packed.is_contiguous() and view.data_ptr() != packed.data_ptr()
res = {}
if plan.tap_reuse:
    wf = launch.forward_filter(w, p, plan.k)

    def fwd(inp):
        return lambda: ops.direct(plan.name, inp, wf, None, Y, plan.table, 1, p.stride, False, False, None, False,
                                  False, None)

    res["direct, x a permuted view of the caller's channels_last_3d x"] = per_call_us(fwd(view))
    res["direct, x a packed NDHWC tensor"] = per_call_us(fwd(packed))
    res["direct, the view again"] = per_call_us(fwd(view))
nc = x.contiguous()
G = torch.empty_like(view.contiguous())
res["transpose_layout NCDHW -> NDHWC, no sums"] = per_call_us(lambda: ops.transpose_layout(nc, G, True, None))
res["aten add_ on x (dispatcher + TensorIterator + launch)"] = per_call_us(lambda: x.add_(1.0))
res["torch.empty of y's size"] = per_call_us(lambda: torch.empty(y.shape, device="cuda"))
for k, v in res.items():
    print(f"  {v:7.2f}  {k}")
