"""Opt-in autotuning: time every kernel that can run a pass, once per (layer shape, GPU), keep the fastest.

Off by default (the selector's measured heuristic runs). On with ``CONVT3D_AUTOTUNE=1`` or
:func:`set_autotune`. The first call of a layer shape then times each candidate kernel of that pass on the
call's own inputs (two warm-up runs, median of five, CUDA events on the current stream) and remembers
the winner in memory and in an on-disk cache keyed by GPU name and compute capability, CUDA, torch and
package versions, pass, precision, problem and output layout (a forward or grad_input written NCDHW is timed
and kept apart from one written channels_last_3d); later calls, in this or any other process, read it.
An eager training step on the C++ node (``eager._tuned``) asks for all three passes at the layer shape's first
forward, timing grad_input and grad_weight on a random grad_y of the output's shape and layout.

The cache file (``$CONVT3D_CACHE_DIR/autotune.json``, default ``~/.cache/convt3d_cutlass``) is updated
under an exclusive ``fcntl`` lock and replaced atomically, so several processes (one per GPU in DDP) can
tune at once. Not tuned: a forced config (``config=`` / ``CONVT3D_CONFIG``), calls during CUDA graph
capture, and passes with fewer than two candidates.
"""
from __future__ import annotations

import json
import os
import statistics
import threading
import warnings
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch

from .kernel_table import KERNELS
from .problem import Problem

_flag: Optional[bool] = None
_memo: Dict[str, Optional[str]] = {}
_lock = threading.Lock()
# Bumped by clear_memory(): the eager node keeps the three passes' choices per layer shape (eager._tuned) so
# that a step does not format three cache keys, and drops them when this changes.
generation = 0


def set_autotune(enabled: Optional[bool]) -> None:
    """Turn autotuning on or off for this process (None: follow ``CONVT3D_AUTOTUNE`` again)."""
    global _flag
    if enabled is not None and not isinstance(enabled, bool):
        raise ValueError(f"enabled must be True, False or None, got {enabled!r}")
    _flag = enabled


def enabled() -> bool:
    """Whether calls tune: :func:`set_autotune`, else ``CONVT3D_AUTOTUNE`` ("1" on; "0" or unset off)."""
    if _flag is not None:
        return _flag
    value = os.environ.get("CONVT3D_AUTOTUNE", "0")
    if value not in ("0", "1"):
        raise ValueError(f"CONVT3D_AUTOTUNE must be '0' or '1', got {value!r}")
    return value == "1"


def candidates(p: Problem, op: str, precision: str, compiled: Iterable[str], capability: Tuple[int, int],
               smem_limit: int) -> List[str]:
    """Kernel names that can run pass ``op`` of ``p`` in ``precision`` on this GPU and build, in table order."""
    from . import selector  # the selector imports nothing from here; this keeps the import one-way

    built = set(compiled)
    names = []
    for k in KERNELS:
        if not k.serves(op) or k.precision != precision or k.name not in built:
            continue
        if not selector._aligned(p, op, k):
            continue
        if k.tap_reuse and not selector.direct_fits(p, op, k, smem_limit, capability):
            continue
        names.append(k.name)
    return names


def cache_key(p: Problem, op: str, precision: str, gpu: str, capability: Tuple[int, int],
              out_ncdhw: bool = False) -> str:
    """The cache's key for pass ``op`` of ``p``: the whole problem, output_padding included, and whether the
    pass writes its output NCDHW (a kernel's time and the selector's rules depend on the output layout)."""
    from . import __version__

    d, h, w = p.spatial
    return (f"{gpu}|sm{capability[0]}{capability[1]}|cuda {torch.version.cuda}|torch {torch.__version__}|"
            f"convt3d_cutlass {__version__}|{op}|{precision}|N{p.n} {p.c_in}->{p.c_out} {d}x{h}x{w} "
            f"k{p.k} s{p.stride} p{p.padding} op{p.output_padding}" + ("|out NCDHW" if out_ncdhw else ""))


def cache_path() -> str:
    root = os.environ.get("CONVT3D_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "convt3d_cutlass")
    return os.path.join(root, "autotune.json")


def read_cache(path: Optional[str] = None) -> Dict[str, str]:
    """The on-disk choices ({} when the file is missing or unreadable)."""
    try:
        with open(path or cache_path()) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def store(key: str, name: str, path: Optional[str] = None) -> bool:
    """Adds one choice to the cache file: read, update and atomic replace under an exclusive lock, so
    concurrent writers (other processes) lose nothing. False, with a warning, when it cannot be written."""
    path = path or cache_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".lock", "a") as lock:
            try:
                import fcntl
                fcntl.flock(lock, fcntl.LOCK_EX)
            except ImportError:  # not POSIX: last writer wins, entries may be lost (never corrupted)
                pass
            data = read_cache(path)
            data[key] = name
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(tmp, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
        return True
    except OSError as e:
        warnings.warn(f"convt3d_cutlass: cannot write the autotune cache {path!r} ({e}); "
                      "choices are kept in memory for this process only")
        return False


def cuda_timer(run: Callable[[], object], warmup: int = 2, reps: int = 5) -> float:
    """Median milliseconds of run() on the current CUDA stream."""
    for _ in range(warmup):
        run()
    times = []
    stream = torch.cuda.current_stream()
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        run()
        end.record(stream)
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def fastest(names: List[str], run: Callable[[str], object],
            timer: Callable[[Callable[[], object]], float] = cuda_timer) -> Optional[str]:
    """The name whose run(name) times fastest; candidates that raise (cannot take this exact input) are
    skipped. None if none ran."""
    best = None
    for name in names:
        try:
            ms = timer(lambda: run(name))
        except (RuntimeError, ValueError):
            continue
        if best is None or ms < best[0]:
            best = (ms, name)
    return best[1] if best else None


def device_facts(index: int) -> Tuple[str, Tuple[int, int], frozenset, int]:
    """(GPU name, compute capability, compiled kernel names, opt-in shared memory per block)."""
    from . import _extension

    return (torch.cuda.get_device_name(index), _extension.capability(index), _extension.compiled_kernels(),
            _extension.smem_optin(index))


def choose(p: Problem, op: str, precision: str, index: int, run: Callable[[str], object],
           timer: Callable[[Callable[[], object]], float] = cuda_timer, out_ncdhw: bool = False) -> Optional[str]:
    """The tuned kernel name for pass ``op`` of ``p`` on CUDA device ``index``, timing the candidates
    with run(name) on first use; None to let the heuristic choose (nothing to tune, or graph capture).
    ``out_ncdhw``: the pass writes its output NCDHW, and run(name) times it so; tuned apart from the
    channels_last_3d output."""
    if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
        return None
    gpu, cap, compiled, smem = device_facts(index)
    key = cache_key(p, op, precision, gpu, cap, out_ncdhw)
    with _lock:
        if key in _memo:
            return _memo[key]
    names = candidates(p, op, precision, compiled, cap, smem)
    if len(names) < 2:
        choice = None
    else:
        choice = read_cache().get(key)
        if choice not in names:  # absent, or from another build: tune
            choice = fastest(names, run, timer)
            if choice is not None:
                store(key, choice)
    with _lock:
        _memo[key] = choice
    return choice


def clear_memory() -> None:
    """Forget this process's in-memory choices (the disk cache stays)."""
    global generation
    with _lock:
        _memo.clear()
        generation += 1
