"""Timing and ceilings: CUDA events, warm-up, L2 flushed before every rep, median."""
import statistics
import time

import torch

_flush = None


def _l2_flush():
    global _flush
    if _flush is None:
        _flush = torch.empty(256 << 20, dtype=torch.int8, device="cuda")
    _flush.zero_()


# A series runs at least `reps` reps and goes on, up to MAX_REPS, until it has run MIN_SERIES_MS, so that a
# fast call's median rests on more than the sweep's 3 samples. It narrows a series' own spread (p10-p90
# within about 10% on sub-millisecond steps) but not the 10-25% by which such a step's median moves between
# rounds and machines with the host, nor the rare stall lasting tens of reps (v0.21,
# bench/tools/stepdrift.py); same-process alternating A/Bs (bench/tools/nodeab.py, cfgab.py) decide those.
MIN_SERIES_MS = 200.0
MAX_REPS = 50


def bench(fn, warmup: int = 2, reps: int = 10, max_ms: float = 4000.0) -> float:
    """Median milliseconds of fn() over at least reps reps (more for fast calls, see MIN_SERIES_MS; fewer,
    at least 3, once a series passes max_ms)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    while len(times) < reps or (sum(times) < MIN_SERIES_MS and len(times) < MAX_REPS):
        _l2_flush()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
        if sum(times) > max_ms and len(times) >= 3:
            break
    return statistics.median(times)


def peak_extra_mb(fn) -> float:
    """Peak memory above what was allocated before fn() (MiB)."""
    torch.cuda.synchronize()
    # A block served from a cached segment is counted whole when its remainder is too small to split
    # (up to 1 MiB more), so the figure depended on what ran before; with an empty cache it does not.
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2 ** 20


def ceilings() -> dict:
    """Measured TF32 and FP32 matmul TFLOP/s, device copy TB/s (read + write) and the host's pace (host_pace_us)."""
    out = {}
    n = 8192
    a = torch.randn(n, n, device="cuda")
    b = torch.randn(n, n, device="cuda")
    old = torch.backends.cuda.matmul.allow_tf32
    for key, tf32 in (("tf32_tflops", True), ("fp32_tflops", False)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        ms = bench(lambda: a @ b, warmup=2, reps=5)
        out[key] = 2 * n ** 3 / ms / 1e9
    torch.backends.cuda.matmul.allow_tf32 = old
    a = b = None  # frees the operands before the copy buffers (a del here reads as undefined names to pyflakes)
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = bench(lambda: dst.copy_(src), warmup=2, reps=5)
    out["copy_tbs"] = 2 * src.numel() / ms / 1e9
    src = dst = None
    out["host_us"] = host_pace_us()
    return out


def host_pace_us(calls: int = 100, batches: int = 21) -> float:
    """The host's pace: median microseconds of host time per launch of a one-element aten ``add_`` (the GPU
    keeps up, so this is enqueue time). Sub-millisecond steps are host-bound, and a process's pace is its own:
    two processes of one call read 4.7-5.4 and 8.5-9.3 us per ``torch.empty`` (v0.62), and two sweeps run at
    once on a two-GPU host read every small row slower for cuDNN and ours alike (v0.82). Printed with the
    ceilings, so that such a run can be told from a slower kernel."""
    t = torch.zeros(1, device="cuda")
    for _ in range(calls):
        t.add_(1.0)
    torch.cuda.synchronize()
    per = []
    for _ in range(batches):
        a = time.perf_counter()
        for _ in range(calls):
            t.add_(1.0)
        per.append((time.perf_counter() - a) / calls * 1e6)
        torch.cuda.synchronize()
    return statistics.median(per)
