"""Times one case: ours vs cuDNN (defaults and cudnn.benchmark), per precision pairing, layout and pass."""
import contextlib
import math
import statistics

import torch
import torch.nn.functional as F

import convt3d_cutlass as ct
from convt3d_cutlass import channel_pad, fast_path, ops
from convt3d_cutlass.layouts import CL

from .timing import bench, peak_extra_mb

PASSES = ("forward", "grad_input", "grad_weight", "step")
# ours precision -> cuDNN's allow_tf32 for the same accuracy class
PAIRINGS = {"tf32": True, "fp32": False, "3xtf32": False}
CEILING_KEY = {"tf32": ("tf32_tflops", 1.0), "fp32": ("fp32_tflops", 1.0), "3xtf32": ("tf32_tflops", 1 / 3)}


@contextlib.contextmanager
def cudnn_mode(allow_tf32: bool, benchmark: bool):
    old = (torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = allow_tf32, benchmark
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = old


def _rel(out, ref):
    if out is None or ref is None:
        return float("nan")
    o = out.double()
    if not torch.isfinite(o).all():
        return math.inf
    return ((o - ref).norm() / ref.norm()).item()


class CaseTensors:
    def __init__(self, case, channels_last):
        g = torch.Generator(device="cuda").manual_seed(0)
        x = torch.randn((case.n, case.c_in) + case.spatial, device="cuda", generator=g)
        w = torch.randn(case.c_in, case.c_out, case.k, case.k, case.k, device="cuda", generator=g)
        w /= (case.c_in * case.k ** 3) ** 0.5
        self.b = torch.randn(case.c_out, device="cuda", generator=g)
        self.x = x.to(memory_format=torch.channels_last_3d) if channels_last else x
        self.w = w
        self.case = case
        self.channels_last = channels_last
        # Output shape by arithmetic: running cuDNN here would cache a heuristic plan for the
        # shape before the autotuned timing gets to choose one.
        out = tuple((s - 1) * case.stride - 2 * case.padding + case.k + case.output_padding
                    for s in case.spatial)
        self.gy = torch.randn((case.n, case.c_out) + out, device="cuda", generator=g).to(
            memory_format=torch.channels_last_3d if channels_last else torch.contiguous_format)
        self._refs = None

    def refs(self):
        """float64 forward output, grad_input and grad_weight (computed once)."""
        if self._refs is None:
            c = self.case
            xd, wd, bd, gyd = self.x.double(), self.w.double(), self.b.double(), self.gy.double()
            y = F.conv_transpose3d(xd, wd, bd, c.stride, c.padding, c.output_padding)
            gx, gw, _ = torch.ops.aten.convolution_backward(
                gyd, xd, wd, None, [c.stride] * 3, [c.padding] * 3, [1] * 3, True,
                [c.output_padding] * 3, 1, [True, True, False])
            self._refs = {"forward": y, "grad_input": gx, "grad_weight": gw}
            del xd, wd, gyd
        return self._refs


def _native_fns(t):
    c = t.case
    st, pd, op = [c.stride] * 3, [c.padding] * 3, [c.output_padding] * 3

    def forward():
        with torch.no_grad():
            return F.conv_transpose3d(t.x, t.w, t.b, c.stride, c.padding, c.output_padding)

    def grad_input():
        return torch.ops.aten.convolution_backward(t.gy, t.x, t.w, None, st, pd, [1] * 3, True, op, 1,
                                                   [True, False, False])[0]

    def grad_weight():
        return torch.ops.aten.convolution_backward(t.gy, t.x, t.w, None, st, pd, [1] * 3, True, op, 1,
                                                   [False, True, False])[1]

    xg, wg, bg = (t.x.detach().requires_grad_(), t.w.detach().requires_grad_(), t.b.detach().requires_grad_())

    def step():
        xg.grad = wg.grad = bg.grad = None
        F.conv_transpose3d(xg, wg, bg, c.stride, c.padding, c.output_padding).backward(t.gy)
        return None

    return dict(forward=forward, grad_input=grad_input, grad_weight=grad_weight, step=step)


def _our_fns(t, prec, config=None):
    c = t.case
    fast = not fast_path.check(t.x, t.w, t.b, c.stride, c.padding, c.output_padding, 1, 1)
    cfg = config or ""

    def forward():
        with torch.no_grad():
            return ct.conv_transpose3d(t.x, t.w, t.b, c.stride, c.padding, c.output_padding,
                                       precision=prec, config=config)

    padded = None
    if fast and channel_pad.enabled():
        padded = channel_pad.padded_problem(c.problem())
    if padded is not None:
        # Channels not multiples of 4: each pass as the step runs it (functional._apply_padded, the crop's backward):
        # grad_y padded in the output's format, x and the weight padded, the result cropped.
        fmt = CL if t.channels_last else torch.contiguous_format

        def grad_input():
            gy = channel_pad.pad_plain(t.gy, padded.c_out, fmt)
            wp = channel_pad.pad_weight(t.w, padded.c_in, padded.c_out)
            gx = ops.grad_input_op(gy, wp, c.stride, c.padding, c.output_padding, t.channels_last, prec, cfg)
            return gx[:, :c.c_in].contiguous(memory_format=fmt) if padded.c_in != c.c_in else gx

        def grad_weight():
            gy = channel_pad.pad_plain(t.gy, padded.c_out, fmt)
            x = channel_pad.pad_plain(t.x, padded.c_in, fmt) if padded.c_in != c.c_in else t.x
            return ops.grad_weight_op(gy, x, c.k, c.stride, c.padding, c.output_padding, prec, cfg)[:c.c_in, :c.c_out]
    elif fast:
        def grad_input():
            return ops.grad_input_op(t.gy, t.w, c.stride, c.padding, c.output_padding, t.channels_last, prec, cfg)

        def grad_weight():
            return ops.grad_weight_op(t.gy, t.x, c.k, c.stride, c.padding, c.output_padding, prec, cfg)
    else:
        native = _native_fns(t)
        grad_input, grad_weight = native["grad_input"], native["grad_weight"]

    xg, wg, bg = (t.x.detach().requires_grad_(), t.w.detach().requires_grad_(), t.b.detach().requires_grad_())

    def step():
        xg.grad = wg.grad = bg.grad = None
        ct.conv_transpose3d(xg, wg, bg, c.stride, c.padding, c.output_padding, precision=prec,
                            config=config).backward(t.gy)
        return None

    return fast, dict(forward=forward, grad_input=grad_input, grad_weight=grad_weight, step=step)


# Ours and cuDNN are compared only within one process, in alternating rounds, per pass: a sub-millisecond
# (host-bound) step's median moves 10-25% between rounds (bench/tools/stepdrift.py) and up to 2x between
# processes, for cuDNN as for ours (v0.23: the U-Net k2 up, ours 0.22 ms in a fresh process and 0.44 in the
# sweep's). Both sides get the same rounds; each figure is the median of its rounds' medians. cuDNN's
# defaults run in a fresh process (see time_native), so ours runs there too, against them (speedup_of).
ROUNDS = 3


def time_native(case, layouts, allow_list, passes, reps, benchmark):
    """{(layout, allow_tf32, pass): (ms, peak MiB)} for cuDNN in one mode.

    PyTorch caches one cuDNN plan per problem whatever ``cudnn.benchmark`` says, so the first mode
    a process runs on a shape is the one it keeps: the autotuned mode runs in the benchmark's own
    process before anything else touches the shape, the defaults in a fresh subprocess
    (``python -m bench.cudnn_defaults``).
    """
    out = {}
    for cl in layouts:
        t = CaseTensors(case, cl)
        for allow in allow_list:
            native = _native_fns(t)
            with cudnn_mode(allow, benchmark):
                for ps in passes:
                    native[ps]()  # autotune (benchmark mode) before timing
                    ms = bench(native[ps], reps=reps)
                    mem = peak_extra_mb(native[ps])
                    out[(cl, allow, ps)] = (ms, mem)
        del t
        torch.cuda.empty_cache()
    return out


def native_defaults_subprocess(case, layouts, allow_list, passes, reps, precisions=(), rounds=ROUNDS):
    """({(layout, allow_tf32, pass): (ms, peak MiB)} of cuDNN's defaults, {(layout, precision, pass): (ours
    ms, cuDNN defaults ms)} timed in alternating rounds), both from one fresh process (bench.cudnn_defaults)."""
    import json
    import subprocess
    import sys
    arg = json.dumps(dict(case=case.to_json(), layouts=layouts, allow=allow_list, passes=list(passes), reps=reps,
                          precisions=list(precisions), rounds=rounds))
    res = subprocess.run([sys.executable, "-m", "bench.cudnn_defaults", arg], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError("cuDNN defaults subprocess failed:\n" + res.stderr[-3000:])
    data = json.loads(res.stdout.strip().splitlines()[-1])
    native = {(bool(k[0]), bool(k[1]), k[2]): tuple(v) for k, v in data["native"]}
    ours = {(bool(k[0]), k[1], k[2]): tuple(v) for k, v in data["ours"]}
    return native, ours


def interleaved(ours, native, native_first_ms: float, reps: int, rounds: int):
    """(ours ms, cuDNN ms): medians over ``rounds`` rounds, each a bench series of ours then of native;
    native_first_ms, the series time_native already ran (its autotuning pass), counts as one of native's."""
    mine, theirs = [], [native_first_ms]
    for r in range(rounds):
        mine.append(bench(ours, reps=reps))
        if r + 1 < rounds:
            theirs.append(bench(native, reps=reps))
    return statistics.median(mine), statistics.median(theirs)


def speedup_of(ours_ms: float, tuned_ms: float, ours_beside_defaults_ms: float, defaults_ms: float) -> float:
    """The faster cuDNN mode counts: the lower of the two same-process ratios (autotuned cuDNN against ours
    in this process, cuDNN's defaults against ours in theirs)."""
    return min(tuned_ms / ours_ms, defaults_ms / ours_beside_defaults_ms)


def run_case(case, layouts, precisions, passes, ceil, reps=10, errors=True, log=print, rounds=ROUNDS):
    """Rows of measurements for one case (see report.HEADER): ours against autotuned cuDNN here and against
    cuDNN's defaults in their process, each in alternating rounds (``interleaved``, ``speedup_of``)."""
    allow_list = sorted({PAIRINGS[p] for p in precisions}, reverse=True)
    tuned = time_native(case, layouts, allow_list, passes, reps, benchmark=True)
    defaults, ours_beside_defaults = native_defaults_subprocess(case, layouts, allow_list, passes, reps,
                                                                precisions, rounds)
    rows = []
    for cl in layouts:
        t = CaseTensors(case, cl)
        refs = t.refs() if errors and set(passes) - {"step"} else {}
        native = _native_fns(t)
        nerrs = {}
        for allow in allow_list:
            with cudnn_mode(allow, True):
                for ps in passes:
                    if refs.get(ps) is None:  # no reference (step, or --no-errors): skip the run
                        nerrs[(allow, ps)] = float("nan")
                        continue
                    out = native[ps]()
                    nerrs[(allow, ps)] = _rel(out, refs[ps])
                    del out
        for prec in precisions:
            allow = PAIRINGS[prec]
            fast, ours = _our_fns(t, prec)
            key, scale = CEILING_KEY[prec]
            for ps in passes:
                flops = case.flops * (3 if ps == "step" else 1)
                nb_ms, nb_mem = tuned[(cl, allow, ps)]
                with cudnn_mode(allow, True):
                    ms, nb_ms = interleaved(ours[ps], native[ps], nb_ms, reps, rounds)
                    mem = peak_extra_mb(ours[ps])
                    out = ours[ps]()
                    err = _rel(out, refs.get(ps))
                    del out
                nd_mem = defaults[(cl, allow, ps)][1]
                ms_d, nd_ms = ours_beside_defaults[(cl, prec, ps)]
                speedup = speedup_of(ms, nb_ms, ms_d, nd_ms)
                best = min(nd_ms, nb_ms)
                row = dict(case=case.name, shape=case.label(), layout="NDHWC" if cl else "NCDHW",
                           precision=prec, cudnn_tf32=allow, pass_=ps, fast_path=fast,
                           ours_ms=ms, ours_default_ms=ms_d, ours_tflops=flops / ms / 1e9,
                           ours_ceiling_frac=flops / ms / 1e9 / (ceil[key] * scale),
                           cudnn_default_ms=nd_ms, cudnn_benchmark_ms=nb_ms,
                           cudnn_tflops=flops / best / 1e9, speedup=speedup,
                           ours_err=err, cudnn_err=nerrs[(allow, ps)], ours_mem_mb=mem,
                           cudnn_mem_mb=nb_mem if nb_ms <= nd_ms else nd_mem)
                rows.append(row)
                log(row)
        del t, refs, native
        torch.cuda.empty_cache()
    return rows
