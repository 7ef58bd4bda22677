"""The eager-mode autograd node in C++ (csrc/eager_node.cpp): plans made here, replayed there.

A small layer's eager step was host-bound: the Python autograd.Function crossed into C++ about a dozen
times per step and the engine called back into Python for the backward (docs/performance.md v0.10-v0.12).
Here the policy of all three passes (the kernels, phase tables, slices and layouts that ``launch``
would choose) is computed once per layer shape and handed to C++ as a plan; a step is then one op call
for the forward, and a backward that never leaves C++.

Taken where x is packed channels_last_3d or NCDHW; the forward on a tap-reuse kernel, or on stock CUTLASS
phases (``dgrad_phases``, their filters end to end in one cached tensor). With autotuning on, the three passes'
kernels are the tuner's (``_tuned``: timed from Python at a layer shape's first call, grad_y a random stand-in,
then planned like forced configs). k < stride: the outputs no tap reaches get the bias in C++ as
launch.forward fills them. Everything else (strided views, a shape not tuned yet during CUDA graph capture, a
forced config that runs no backward pass) returns None and the caller keeps the Python Function
(``ops.ConvTranspose3dFunction``), which computes the same thing with the same kernels.
``CONVT3D_EAGER_NODE=0`` turns the node off (for A/B runs).
"""
from __future__ import annotations

import os
from typing import Optional

import torch

from . import autotune, direct, launch, weights
from .layouts import CL, _has_op
from .problem import Problem, phases

_MISSING = object()
# (Problem, precision, config, device index, CONVT3D_CONFIG, x channels_last, tuned) -> (plan id, the
# forward's filter from the weight, gi plan) or None where the node does not apply; tuned: _tuned's triple or
# None.
_plans: dict = {}
# (Problem, precision, device index, x channels_last, backward tuned) -> (autotune.generation, the tuned triple).
_tuned_configs: dict = {}


def enabled() -> bool:
    return os.environ.get("CONVT3D_EAGER_NODE", "1") != "0" and _has_op("eager_conv_transpose3d")


def _x_layout(x: torch.Tensor) -> Optional[bool]:
    """True: channels_last_3d storage; False: packed NCDHW; None: neither (strided views)."""
    cl, packed = x.is_contiguous(memory_format=CL), x.is_contiguous()
    if cl == packed:  # both (degenerate sizes) or neither
        return None
    return cl


def plan_ints(p: Problem, precision: str, x_cl: bool, fwd, gi, gw, gw_x_ncdhw: bool, fwd_x_ncdhw: bool,
              gi_sum_rows: int = 0, gw_first: bool = False) -> list:
    """The node's integers (csrc/eager_node.cpp, register_plan) from the three passes' launch.Plan: 23, then 5 per
    depth slab of grad_weight.

    Items 16 and 17: whether grad_input's and grad_weight's kernels read a packed NCDHW grad_y in place
    (the exact-fp32 rows; grad_input not over grad_y's parities; grad_input's 3xtf32 tensor-core rows that can, which
    the node runs after grad_weight has read and released its copy; grad_weight's FFMA rows in their NC mode, item
    12 set as well). Where every gradient asked for can, the node converts no grad_y at all. Item 18: the forward
    runs stock CUTLASS phases (stock_forward_table).
    Item 19: serial split-K slices of the stock grad_input (1 on tap reuse). Item 20: the backward runs
    grad_weight before grad_input (launch.grad_weight_first). The last: grad_input's kernel reads a packed
    NCDHW grad_y in place and leaves grad_weight its channels_last_3d copy and the bias gradient
    (launch.grad_input_copying, direct.copies_input), where grad_weight does not read it in place. Item 22: the
    count of grad_weight's depth slabs (direct.ffma_wgrad_slabs; 0: whole), then each slab's z0, z1, a0, a1, pad_d
    (the slab rows set items 12 and 17 as the NC mode does: they read an NCDHW x and grad_y, a slab at a time)."""
    # The FFMA grad_weight rows' NC mode (direct.ffma_wgrad_reads_ncdhw) reads an NCDHW x and grad_y both, with
    # items 12 and 17 set and no tap reuse; the node checks at each backward that grad_y is packed NCDHW.
    gw_gy = launch.plan_reads_grad_y(gw, p, "wgrad", not x_cl)
    gw_nc = gw_gy and not gw.tap_reuse
    slabs = () if x_cl or gw.tap_reuse else direct.ffma_wgrad_slabs(gw.k, p)
    # grad_input's FFMA row in its NC mode (direct.ffma_fprop_reads_ncdhw): item 16 without tap reuse; it writes
    # grad_x NCDHW itself.
    gi_gy = launch.plan_reads_grad_y(gi, p, "fprop", not x_cl)
    return [p.k, p.stride, p.padding, p.output_padding, int(x_cl), int(precision == "tf32"),
            _ncdhw_mode(fwd, p, "dgrad") if not x_cl else 0,
            int(gi.tap_reuse), _ncdhw_mode(gi, p, "fprop") if gi.tap_reuse and not x_cl else 0,
            int(gw.tap_reuse), gw.slices, gw.taps_per_group, int(gw.tap_reuse and gw_x_ncdhw or gw_nc),
            int(fwd_x_ncdhw), gi_sum_rows, int(gi.tap_reuse and direct.sums_parities(gi.k, p)),
            int(gi_gy), int(gw_gy),
            int(not fwd.tap_reuse), 1 if gi.tap_reuse else gi.slices, int(gw_first),
            int(gi.tap_reuse and gi_sum_rows > 0 and not gw_gy
                and direct.copies_input(gi.k, gi.table, p.c_out, p.out_spatial)),
            len(slabs)] + [v for s in slabs for v in s]


def _ncdhw_mode(plan, p: Problem, op: str) -> int:
    """The node's fwd_ncdhw / gi_ncdhw item: 0 channels_last_3d, 1 NCDHW, 2 NCDHW by whole sectors."""
    if not direct.writes_ncdhw(plan.k, p, op):
        return 0
    return 2 if direct.ncdhw_sectors(plan.k, p, op) else 1


def stock_forward_table(p: Problem, phase_ints, splits, bias_only=()) -> list:
    """The stock forward's phases (launch._stock_phases) as the node's forward table: 13 integers per phase
    with taps, its pad, first output and count (3 each), its filter's taps along d, h and w (the shape of its
    block of the flat filter, weights.stock_phase_filter), and its serial split-K slices (one at unit stride,
    where launch.forward runs the single phase unsplit); then, for k < stride, 13 per phase without taps:
    zeros but its first output (ints 3-5), whose outputs get the bias alone (``bias_only``)."""
    taps = [ph.taps for ph in phases(p) if not ph.empty and not ph.no_taps]
    assert len(phase_ints) == 9 * len(taps) == 9 * len(splits)
    table = []
    for i, t in enumerate(taps):
        table += list(phase_ints[9 * i:9 * i + 9]) + list(t) + [splits[i] if p.stride > 1 else 1]
    for first in bias_only:
        table += [0, 0, 0] + list(first) + [0] * 7
    return table


def _tuned(p: Problem, precision: str, x: torch.Tensor, weight: torch.Tensor, x_cl: bool, index: int,
           backward: bool):
    """The autotuner's kernels for the forward, grad_input and grad_weight of layer p (x [N, C_in, D, H, W],
    weight [C_in, C_out, k, k, k]), each a name or None (the heuristic's pass), or None for all three where the
    shape is not tuned yet and a CUDA graph is being captured (nothing can be timed then; the Python Function
    plans each pass itself).

    As the Python Function asks for them (launch._plan: the same cache keys, outputs in x's layout), so both
    paths run the same choices; on a shape's first call the tuner times the candidates on x, weight and a
    random grad_y in x's layout (timing does not depend on the values). backward False (a call that builds no
    graph): the forward alone is tuned, the backward passes left to the heuristic (the node's plan names them;
    they never run). Remembered per shape until autotune.clear_memory()."""
    key = (p, precision, index, x_cl, backward)
    hit = _tuned_configs.get(key)
    if hit is not None and hit[0] == autotune.generation:
        return hit[1]
    if torch.cuda.is_current_stream_capturing():
        return None
    stand_in = []

    def grad_y():
        if not stand_in:
            shape = (p.n, p.c_out) + p.out_spatial
            stand_in.append(torch.randn(shape, device=x.device, dtype=x.dtype).contiguous(
                memory_format=CL if x_cl else torch.contiguous_format))
        return stand_in[0]

    ncdhw = not x_cl
    with torch.no_grad():
        xd, wd = x.detach(), weight.detach()
        fwd = launch._plan(p, "dgrad", precision, None, x.device,
                           lambda name: launch.forward(xd, wd, None, p, precision, name, ncdhw=ncdhw), out_ncdhw=ncdhw)
        if backward:
            gi = launch._plan(p, "fprop", precision, None, x.device,
                              lambda name: launch.grad_input(grad_y(), wd, p, precision, name, ncdhw=ncdhw),
                              out_ncdhw=ncdhw).config
            gw = launch._plan(p, "wgrad", precision, None, x.device,
                              lambda name: launch.grad_weight(grad_y(), xd, p, precision, name),
                              out_ncdhw=ncdhw).config
        else:
            gi = gw = None
    configs = (fwd.config, gi, gw)
    _tuned_configs[key] = (autotune.generation, configs)
    return configs


def _register(fwd_kernel: str, fwd_table, gi_kernel: str, gi_table, gw_kernel: str, ints) -> int:
    """The plan's id in C++ (csrc/eager_node.cpp, register_plan)."""
    return torch.ops.convt3d_cutlass.eager_plan(fwd_kernel, fwd_table, gi_kernel, gi_table, gw_kernel, ints)


def _build(key, x: torch.Tensor):
    p, precision, config, index, env_config, x_cl, tuned = key
    # per pass: the forced config, else the tuned kernel of that pass (None: the heuristic's)
    fwd_cfg, gi_cfg, gw_cfg = (config,) * 3 if tuned is None else tuned
    fwd = launch._plan_cached(p, "dgrad", precision, fwd_cfg, index, env_config, not x_cl)  # y takes x's layout
    try:
        # grad_x takes x's layout too
        gi = launch._plan_cached(p, "fprop", precision, gi_cfg, index, env_config, not x_cl)
        gw = launch._plan_cached(p, "wgrad", precision, gw_cfg, index, env_config, not x_cl)  # grad_y in x's layout
    except ValueError:
        # A forced config that runs the forward but not a backward pass: the node plans all three at the
        # first forward, so it would refuse even a forward without grad. The Python Function plans each
        # pass when it runs, and raises only if that backward is reached.
        if not (config or env_config):
            raise
        return None
    common = (direct.wgrad_reads_ncdhw(gw.k, x),
              direct.reads_ncdhw(fwd.k, fwd.table, p.c_in, x, strided_forward=p.stride > 1),
              launch.sum_rows(gi, p, x.device))
    ints = plan_ints(p, precision, x_cl, fwd, gi, gw, *common,
                     gw_first=launch.grad_weight_first(p, gw, x))
    if fwd.tap_reuse:
        pid = _register(fwd.name, fwd.table, gi.name, gi.table, gw.name, ints)
        return pid, lambda w: launch.forward_filter(w, p, fwd.k), gi
    # Stock phases: one launch each, with its own block of the filter.
    names, rs, phase_ints, bias_only, splits = launch._stock_phases(p, precision, fwd_cfg, index, env_config)
    if not names:  # no phase with taps (k >= 1 always has one)
        return None
    pid = _register(",".join(names), stock_forward_table(p, phase_ints, splits, bias_only), gi.name, gi.table,
                    gw.name, ints)
    return pid, lambda w: weights.stock_phase_filter(w, rs, p.stride), gi


def apply(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: int, padding: int,
          output_padding: int, precision: str, config: Optional[str],
          problem: Optional[Problem] = None) -> Optional[torch.Tensor]:
    """y [N, C_out, Do, Ho, Wo] from the C++ node (x [N, C_in, D, H, W] on the fast path, CUDA), or None
    where the node does not apply. ``problem``: Problem.of(x, weight, ...) where the caller has it."""
    if not enabled() or not x.is_cuda:
        return None
    x_cl = _x_layout(x)
    if x_cl is None:
        return None
    p = problem if problem is not None else Problem.of(x, weight, stride, padding, output_padding)
    index, env_config = launch._index(x.device), os.environ.get("CONVT3D_CONFIG", "")
    tuned = None
    if not (config or env_config) and autotune.enabled():
        backward = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or
                                                (bias is not None and bias.requires_grad))
        tuned = _tuned(p, precision, x, weight, x_cl, index, backward)
        if tuned is None:
            return None
    key = (p, precision, config or None, index, env_config, x_cl, tuned)
    hit = _plans.get(key, _MISSING)
    if hit is _MISSING:
        hit = _plans[key] = _build(key, x)
    if hit is None:
        return None
    pid, fwd_filter, gi = hit
    wf = fwd_filter(weight)
    gf = launch.grad_input_filter(weight, gi, p) if x.requires_grad and torch.is_grad_enabled() else None
    return torch.ops.convt3d_cutlass.eager_conv_transpose3d(x, weight, bias, wf, gf, pid)
