"""What the measurement scripts share: named layers as channels_last_3d tensors, CUDA-event timings and
medians, the host's enqueue time per call, and the profiler's GPU kernel summary."""
import time

import torch
import torch.nn.functional as F

from bench.shapes import HEADLINE, SWEEP
from convt3d_cutlass.layouts import CL
from convt3d_cutlass.problem import Problem

# (N, C_in, C_out, spatial, k, stride, padding): the sweep's layers and the headline by name, and two more.
LAYERS = {c.name: (c.n, c.c_in, c.c_out, c.spatial, c.k, c.stride, c.padding) for c in (*SWEEP, HEADLINE)
          if not c.output_padding}
LAYERS.update({"wide-s1": (2, 256, 128, (16, 16, 16), 3, 1, 1), "narrow-s2": (2, 32, 64, (32, 32, 32), 3, 2, 1)})


def knob_value(current, text: str):
    """VALUE of an ATTR=VALUE argument, as the type of the attribute's current value. Booleans take '1', 'true'
    or 'on' for True and '', '0', 'false' or 'off' for False (bool('0') would be True); anything else raises."""
    if isinstance(current, bool):
        t = text.strip().lower()
        if t in ("1", "true", "on"):
            return True
        if t in ("", "0", "false", "off"):
            return False
        raise ValueError(f"a boolean knob takes 1/true/on or 0/false/off or nothing, got {text!r}")
    return type(current)(text)


def split_knob(arg: str):
    """ATTR=VALUE -> (ATTR, VALUE text); raises ValueError naming the argument when there is no '='."""
    attr, sep, value = arg.partition("=")
    if not sep or not attr:
        raise ValueError(f"expected ATTR=VALUE, got {arg!r}")
    return attr, value


def layer_tensors(name):
    """(Problem, x, w, grad_y) of a named layer: random channels_last_3d x and grad_y, w scaled so y
    has unit variance."""
    n, ci, co, sp, k, s, p = LAYERS[name]
    prob = Problem(n, ci, co, sp, k, s, p)
    x = torch.randn(n, ci, *sp, device="cuda").to(memory_format=CL)
    w = torch.randn(ci, co, k, k, k, device="cuda") / (ci * k ** 3) ** 0.5
    gy = torch.randn_like(F.conv_transpose3d(x, w, None, s, p)).contiguous(memory_format=CL)
    return prob, x, w, gy


def ffma_wgrad_layers(names, width=32):
    """(name, Problem, x, w, grad_y, fp32 grad_weight Plan) of each named layer whose selector takes an FFMA
    grad_weight row (csrc/ffma_wgrad.cuh); the others are printed as skipped."""
    from convt3d_cutlass import launch
    for name in names:
        p, x, w, gy = layer_tensors(name)
        try:
            plan = launch._plan(p, "wgrad", "fp32", None, x.device, None)
        except LookupError as e:  # a filtered build (CONVT3D_KERNELS) without this layer's row
            print(f"{name:12s} ({e})")
            continue
        if plan.k.family != "ffma":
            print(f"{name:12s} {plan.name:{width}s} (not an FFMA grad_weight row)")
            continue
        yield name, p, x, w, gy, plan
        del x, w, gy  # before the next layer's tensors are made


def gpu_kernels(prof, top=8, indent="   "):
    """(total GPU kernel ms, lines of the top kernels) of a torch.profiler run."""
    ev = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    lines = [f"{indent}{e.device_time_total / 1000:7.3f} ms x{e.count} {e.key[:110]}"
             for e in sorted(ev, key=lambda e: -e.device_time_total)[:top]]
    return sum(e.device_time_total for e in ev) / 1000, lines


def cudnn_passes(p, x, w, gy):
    """{"fwd", "gi", "gw"}: callables running layer p's forward, grad_input and grad_weight on PyTorch's
    native op (cuDNN) with x [N, C_in, D, H, W], w [C_in, C_out, k, k, k], grad_y gy."""
    S, P, O = [p.stride] * 3, [p.padding] * 3, [p.output_padding] * 3
    conv, back = torch.ops.aten.convolution, torch.ops.aten.convolution_backward
    return {"fwd": lambda: conv(x, w, None, S, P, [1] * 3, True, O, 1),
            "gi": lambda: back(gy, x, w, None, S, P, [1] * 3, True, O, 1, [True, False, False]),
            "gw": lambda: back(gy, x, w, None, S, P, [1] * 3, True, O, 1, [False, True, False])}


def cudnn_best_ms(fn, reps=5):
    """The faster of fn's medians (ms) with cudnn.benchmark on and off; leaves it off."""
    best = float("inf")
    for bm in (True, False):
        torch.backends.cudnn.benchmark = bm
        best = min(best, median_ms(fn, reps))
    torch.backends.cudnn.benchmark = False
    return best


def slice_counts(run, counts, chosen, reps):
    """{count: (GPU-only ms, relative L2 error against the chosen count's result)}: run(s) gives a callable that
    launches the pass at s slices and returns its result. Each count is timed by hostgap.gpu_only (median of
    reps) in two passes over the counts, the second in reverse order, and its two medians averaged."""
    from bench.tools.hostgap import gpu_only
    ref = run(chosen)().double()
    t = {s: [] for s in counts}
    for order in (counts, counts[::-1]):
        for s in order:
            t[s].append(gpu_only(run(s), reps))
    out = {}
    for s in counts:
        g = run(s)().double()
        out[s] = (sum(t[s]) / 2, ((g - ref).norm() / ref.norm()).item())
    return out


def event_ms(fn, before=None):
    """One call of fn() timed with CUDA events (ms), waited for; before() is enqueued first, untimed."""
    if before is not None:
        before()
    a, b = torch.cuda.Event(True), torch.cuda.Event(True)
    a.record()
    fn()
    b.record()
    b.synchronize()
    return a.elapsed_time(b)


def rep_times(fn, reps, warmup=2, flush=False):
    """CUDA-event timings of reps calls of fn() (ms) after warmup calls; with flush, L2 flushed before each
    (the benchmark's protocol, bench.timing)."""
    from bench.timing import _l2_flush
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    return [event_ms(fn, _l2_flush if flush else None) for _ in range(reps)]


def median_ms(fn, reps=7, warmup=2):
    """Median of reps CUDA-event timings of fn() (ms) after warmup calls."""
    ts = sorted(rep_times(fn, reps, warmup))
    return ts[len(ts) // 2]


def host_ms(fn, n=30):
    """The host's enqueue time per call of fn() (ms): n calls without a sync, divided."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    return (t1 - t0) * 1e3 / n


AB_PASSES = ("forward", "grad_input", "step")


def replan():
    """Forget every cached selection, plan and eager-node plan, so that a policy switch (a selector constant)
    takes effect at the next call, planned as a fresh process would."""
    from convt3d_cutlass import eager, launch
    launch._select_cached.cache_clear()
    launch._plan_cached.cache_clear()
    eager._plans.clear()


def abba(case, channels_last, settings, apply, prec, rounds, tol=1e-5, passes=AB_PASSES):
    """Same-process A/B of two settings of ours on one sweep case, as the benchmark times the passes.

    apply(setting) switches ours to a setting. Every round times cuDNN's step (cudnn.benchmark as the
    caller set it) and each setting's forward, grad_input and step, the settings in reverse order every
    other round (ABBA), so that drift and a fixed position in the round hit both alike. Each setting's
    forward and grad_input are checked against the first's (relative L2 below tol). Returns
    ({(setting, pass): median ms over rounds}, cuDNN's median step ms)."""
    import statistics

    from bench.runner import CaseTensors, _native_fns, _our_fns
    from bench.timing import bench

    t = CaseTensors(case, channels_last)
    native = _native_fns(t)["step"]
    native()
    ref = None
    for v in settings:
        apply(v)
        fns = _our_fns(t, prec)[1]
        out = {p: fns[p]() for p in ("forward", "grad_input")}
        if ref is not None:
            errs = [((out[p].double() - ref[p].double()).norm() / ref[p].double().norm()).item() for p in out]
            assert max(errs) < tol, (case.name, channels_last, v, errs)
        ref = out
    res = {(v, p): [] for v in settings for p in passes}
    cud = []
    for r in range(rounds):
        cud.append(bench(native))
        for v in (settings if r % 2 == 0 else settings[::-1]):
            apply(v)
            fns = _our_fns(t, prec)[1]
            for p in passes:
                res[(v, p)].append(bench(fns[p]))
    del t, native, fns, ref
    torch.cuda.empty_cache()
    return {k: statistics.median(x) for k, x in res.items()}, statistics.median(cud)


def abba_header(first, second, passes=AB_PASSES):
    """The column heads of an abba() table: each pass under both settings and their ratio."""
    return (f"{'layer':12s} {'layout':6s} "
            + " ".join(f"{p + ' ' + first:>13s} {p + ' ' + second:>13s} {'gain':>5s}" for p in passes)
            + f" {'cuDNN step':>10s}")


def abba_row(name, layout, med, cudnn, first, second, passes=AB_PASSES):
    """One abba() result as a table row (gain = first / second: above 1, the second is faster)."""
    return (f"{name:12s} {layout:6s} "
            + " ".join(f"{med[(first, p)]:13.3f} {med[(second, p)]:13.3f} {med[(first, p)] / med[(second, p)]:5.3f}"
                       for p in passes)
            + f" {cudnn:10.3f}")

