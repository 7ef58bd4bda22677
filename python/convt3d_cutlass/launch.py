"""The three passes of the layer on the CUTLASS kernels (CUDA tensors, fast path only).

Each takes PyTorch-layout tensors and hands the kernels packed NDHWC views; the output comes back
channels_last_3d (callers convert when the input was NCDHW).
"""
from __future__ import annotations

import functools
import os
from typing import NamedTuple, Optional

import torch

from . import _extension, autotune, direct, selector
from .layouts import aligned16, empty_cl, ndhwc, row_sums, wants_channels_last
from .problem import Problem, phases
from .weights import cached_filter, filter_ktrsc


def _ops():
    return torch.ops.convt3d_cutlass


def _index(device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def _select(p: Problem, op: str, precision: str, config: Optional[str], device, gemm_mn=None,
            out_ncdhw: bool = False):
    # The choice is a pure function of these and of CONVT3D_CONFIG: computed once per layer shape
    # instead of once per call (30-80 us of Python each, a visible share of a small layer's step).
    env_config = os.environ.get("CONVT3D_CONFIG", "")
    return _select_cached(p, op, precision, config, _index(device), gemm_mn, env_config, out_ncdhw)


@functools.lru_cache(maxsize=4096)
def _select_cached(p, op, precision, config, index, gemm_mn, env_config, out_ncdhw=False):
    return selector.select_config(p, op, precision, config=config or env_config or None,
                                  num_sms=_extension.num_sms(index),
                                  compiled=_extension.compiled_kernels(), gemm_mn=gemm_mn,
                                  smem_limit=_extension.smem_optin(index),
                                  capability=_extension.capability(index), out_ncdhw=out_ncdhw)


class Plan(NamedTuple):
    """What one pass of one layer shape runs: the kernel and, for the tap-reuse kernels, the launch
    arguments derived from the problem alone. Built once per (layer shape, pass, precision, config,
    device): a small layer's step is host-bound, and these took a third of its Python."""
    k: object            # kernel_table.KernelConfig
    name: str
    tap_reuse: bool
    table: list          # the direct op's phase table (forward, grad_input); [] otherwise
    slices: int          # grad_weight: partial-sum slices
    taps_per_group: int  # grad_weight, mma.sync tap reuse: (kh, kw) taps per CTA
    config: Optional[str]  # the forced or autotuned config the plan was made for (None: the heuristic)


def _plan(p: Problem, op: str, precision: str, config: Optional[str], device, tune, out_ncdhw: bool = False) -> Plan:
    """The pass's Plan: the forced config (``config=``, ``CONVT3D_CONFIG``), else the autotuned one
    when tuning is on (tune(name) runs the pass with that kernel), else the selector's. ``out_ncdhw``
    (the forward, grad_input): its output is wanted in NCDHW storage, which the selector weighs; grad_weight:
    the layer's tensors are NCDHW (x's layout, which the step's y and grad_y share; the eager node plans by x
    alone, before grad_y exists, and the Python Function asks the same so that both run one kernel)."""
    env_config = os.environ.get("CONVT3D_CONFIG", "")
    index = _index(device)
    if not (config or env_config) and autotune.enabled():
        config = autotune.choose(p, op, precision, index, tune, out_ncdhw=out_ncdhw)
    return _plan_cached(p, op, precision, config or None, index, env_config, out_ncdhw)


@functools.lru_cache(maxsize=4096)
def _plan_cached(p, op, precision, config, index, env_config, out_ncdhw=False) -> Plan:
    k = _select_cached(p, op, precision, config, index, None, env_config, out_ncdhw)
    table, slices, taps_per_group = [], 1, 1
    if k.tap_reuse and op in ("dgrad", "fprop"):
        table = list(direct.pass_plan(k, p, op)[0])
    elif k.tap_reuse:
        sms = _extension.num_sms(index)
        if k.family == "igemm":
            slices = direct.igemm_wgrad_slices(p, k.block, k.bn, sms, kx=k.kx)
        elif k.family == "patch":
            slices = direct.patch_wgrad_slices(p, sms)
        elif k.family == "wgmma":
            slices = direct.wgmma_wgrad_slices(p, k.block, k.bn, k.warpgroups, k.stages, sms, split=k.split,
                                               ranges=os.environ.get("CONVT3D_WGRAD_RANGES", "1") != "0")
        else:
            slices = direct.wgrad_slices(p, k.block, k.tile[0], k.tile[1], sms, all_taps=k.simt,
                                         ctas_per_sm=k.ctas_per_sm)
            taps_per_group = direct.wgrad_tap_groups(p.k)[0]
    elif op == "wgrad":
        # The FFMA rows' NC mode (an NCDHW layer) runs a kernel of its own residency (csrc/ffma_wgrad.cuh).
        nc = out_ncdhw and direct.ffma_wgrad_reads_ncdhw(k, p)
        resident = _extension.resident_ctas(k.name, index, nc) if k.family in ("cutlass2x", "ffma") else 0
        slices = selector.split_k_slices(p, k, _extension.num_sms(index), resident=resident)
    elif op == "fprop":
        slices = selector.fprop_slices(p, k, _extension.num_sms(index))
    return Plan(k, k.name, k.tap_reuse, table, slices, taps_per_group, config)


def forward_filter(weight: torch.Tensor, p: Problem, k) -> torch.Tensor:
    """The weight as tap-reuse row k reads it in the forward, cached per weight version (the patch rows: the
    weight itself)."""
    if k.family == "patch":
        return weight.detach().contiguous()
    return cached_filter(weight, ("direct-fwd", p.stride, p.padding, k.precision, bool(k.wf)),
                         lambda: direct.forward_filter(weight, p, k.precision, bool(k.wf)))


def grad_input_filter(weight: torch.Tensor, plan: Plan, p: Problem) -> torch.Tensor:
    """The weight as grad_input's kernel reads it (tap reuse: every tap, or per parity of grad_y where
    the row sums parities; stock CUTLASS's KTRSC), cached per weight version (the patch rows: the weight itself)."""
    if plan.k.family == "patch":
        return weight.detach().contiguous()
    if plan.tap_reuse and direct.sums_parities(plan.k, p):
        return cached_filter(weight, ("direct-dx-parity", p.stride, p.padding, plan.k.precision),
                             lambda: direct.grad_input_parity_filter(weight, p, plan.k.precision))
    if plan.tap_reuse:
        return cached_filter(weight, ("direct-dx", plan.k.precision),
                             lambda: direct.grad_input_filter(weight, plan.k.precision))
    return filter_ktrsc(weight)


def _bias(bias: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return aligned16(bias.detach().contiguous()) if bias is not None else None


def _empty_out(shape, like: torch.Tensor, ncdhw: bool) -> torch.Tensor:
    return torch.empty(shape, dtype=like.dtype, device=like.device) if ncdhw else empty_cl(shape, like)


def forward(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], p: Problem,
            precision: str, config: Optional[str] = None, out: Optional[torch.Tensor] = None,
            ncdhw: bool = False) -> torch.Tensor:
    """y [N, C_out, Do, Ho, Wo] (channels_last_3d) = conv_transpose3d(x [N, C_in, D, H, W]).

    Conv3d dgrad with dy := x. Stride s > 1 runs as s^3 unit-stride phases (problem.phases),
    each on its sub-kernel, written into a strided view of y. ``out`` (channels_last_3d, right
    shape) is written in place when given. ``ncdhw``: the caller wants NCDHW; y comes back stored
    NCDHW when the chosen kernel writes it directly (direct.writes_ncdhw), else channels_last_3d. A
    packed NCDHW x is read in place where the kernel can (direct.reads_ncdhw), else converted.
    """
    b = _bias(bias)
    plan = _plan(p, "dgrad", precision, config, x.device,
                 lambda name: forward(x, weight, bias, p, precision, name, ncdhw=ncdhw and out is None),
                 out_ncdhw=ncdhw and out is None)
    k = plan.k
    if plan.tap_reuse:
        # All stride phases in one launch; the filter blocks follow the phase table.
        w = forward_filter(weight, p, k)
        to_ncdhw = ncdhw and out is None and direct.writes_ncdhw(k, p, "dgrad")
        from_ncdhw = direct.reads_ncdhw(k, plan.table, p.c_in, x, strided_forward=p.stride > 1)
        y = out if out is not None else _empty_out((p.n, p.c_out) + p.out_spatial, x, to_ncdhw)
        _ops().direct(plan.name, aligned16(x) if from_ncdhw else ndhwc(x), w, b,
                      y if to_ncdhw else y.permute(0, 2, 3, 4, 1), plan.table, 1, p.stride, to_ncdhw, from_ncdhw,
                      None, False, to_ncdhw and direct.ncdhw_sectors(k, p, "dgrad"))
        return y
    X = ndhwc(x)
    # Stock CUTLASS: one launch per phase, each with the tile for its own GEMM shape.
    y = out if out is not None else empty_cl((p.n, p.c_out) + p.out_spatial, x)
    Y = y.permute(0, 2, 3, 4, 1)
    s = p.stride
    names, rs, ints, bias_only, splits = _stock_phases(p, precision, plan.config, _index(x.device),
                                                       os.environ.get("CONVT3D_CONFIG", ""))
    for f in bias_only:  # k < s: these outputs see no input, only the bias
        dst = Y[:, f[0]::s, f[1]::s, f[2]::s, :]
        dst.copy_(b.expand_as(dst) if b is not None else torch.zeros((), device=y.device).expand_as(dst))
    filters = [filter_ktrsc(weight, r, s) for r in rs]
    if s == 1:
        _ops().dgrad(names[0], X, filters[0], b, Y, ints[:3])
    elif names:
        _ops().dgrad_phases(names, X, filters, b, Y, ints, s, splits)
    return y


@functools.lru_cache(maxsize=4096)
def _stock_phases(p: Problem, precision: str, config: Optional[str], index: int, env_config: str):
    """The stock forward's phases with taps: (kernel names, filter phase offsets r, 9 ints each = pad,
    first output, count), the first outputs of the phases without taps (bias only), and each phase's
    serial split-K slices (selector.phase_split_k). Cached per layer shape like _select: the stock path
    of a small strided layer is host-bound."""
    names, rs, ints, bias_only, splits = [], [], [], [], []
    for ph in phases(p):
        if ph.empty:
            continue
        if ph.no_taps:
            bias_only.append(ph.first)
            continue
        cnt = ph.count
        m = p.n * cnt[0] * cnt[1] * cnt[2]
        names.append(_select_cached(p, "dgrad", precision, config, index, (m, p.c_out), env_config).name)
        rs.append(ph.r)
        ints += [*ph.pad, *ph.first, *cnt]
        splits.append(selector.phase_split_k(ph.taps[0] * ph.taps[1] * ph.taps[2], precision))
    return tuple(names), tuple(rs), tuple(ints), tuple(bias_only), tuple(splits)


def grad_input(grad_y: torch.Tensor, weight: torch.Tensor, p: Problem, precision: str,
               config: Optional[str] = None, out: Optional[torch.Tensor] = None,
               ncdhw: bool = False) -> torch.Tensor:
    """grad_x [N, C_in, D, H, W] (channels_last_3d) = conv3d(grad_y, weight, stride, padding).

    Conv3d fprop over grad_y [N, C_out, Do, Ho, Wo] with the same [C_in, k, k, k, C_out] filter;
    strided fprop skips nothing it needs, so no phases here. ``ncdhw`` and NCDHW grad_y as in forward().
    """
    return _grad_input(grad_y, weight, p, precision, config, out, ncdhw, False)[0]


def grad_input_with_bias(grad_y: torch.Tensor, weight: torch.Tensor, p: Problem, precision: str,
                         config: Optional[str] = None, ncdhw: bool = False):
    """(grad_x as grad_input() returns it, the bias gradient [C_out] or None).

    Where grad_input's kernel can sum grad_y as it reads it (``sum_rows``), the bias gradient comes from
    that read; else None, and the caller sums grad_y itself."""
    return _grad_input(grad_y, weight, p, precision, config, None, ncdhw, True)


def sum_rows(plan: Plan, p: Problem, device) -> int:
    """Rows of the partial-sum buffer of grad_input's kernel where it sums a channels_last grad_y as it
    reads it (direct.sums_input): one per producer warp of each CTA of the warp-specialized rows, one
    per CTA of the implicit-GEMM rows, a CTA per SM at most; 0 where it cannot."""
    if not (plan.tap_reuse and direct.sums_input(plan.k, plan.table, p.out_spatial, p.stride, p.c_out)):
        return 0
    per_cta = 1 if plan.k.family == "igemm" else direct.SUM_ROWS_PER_CTA
    return per_cta * _extension.num_sms(_index(device))


def _grad_input_plan(grad_y, weight, p, precision, config, ncdhw: bool) -> Plan:
    """grad_input's Plan with grad_x wanted NCDHW or not (autotuned, where on, writing it so)."""
    return _plan(p, "fprop", precision, config, grad_y.device,
                 lambda name: grad_input(grad_y, weight, p, precision, name, ncdhw=ncdhw), out_ncdhw=ncdhw)


def _grad_input(grad_y, weight, p, precision, config, out, ncdhw, want_sums):
    plan = _grad_input_plan(grad_y, weight, p, precision, config, ncdhw and out is None)
    k = plan.k
    if plan.tap_reuse:
        w = grad_input_filter(weight, plan, p)
        to_ncdhw = ncdhw and out is None and direct.writes_ncdhw(k, p, "fprop")
        parities = direct.sums_parities(k, p)
        from_ncdhw = direct.reads_ncdhw(k, plan.table, p.c_out, grad_y, parities, s_in=p.stride)
        rows = sum_rows(plan, p, grad_y.device) if want_sums and not from_ncdhw else 0
        sums = torch.empty((rows, p.c_out), device=grad_y.device, dtype=grad_y.dtype) if rows else None
        gx = out if out is not None else _empty_out((p.n, p.c_in) + p.spatial, grad_y, to_ncdhw)
        _ops().direct(plan.name, aligned16(grad_y) if from_ncdhw else ndhwc(grad_y), w, None,
                      gx if to_ncdhw else gx.permute(0, 2, 3, 4, 1), plan.table, p.stride, 1, to_ncdhw, from_ncdhw,
                      sums, parities, to_ncdhw and direct.ncdhw_sectors(k, p, "fprop"))
        return gx, (row_sums(sums) if sums is not None else None)
    if ncdhw and out is None and direct._packed_ncdhw(grad_y) and direct.ffma_fprop_reads_ncdhw(k, p):
        # The FFMA row's NC mode: grad_y as it is, grad_x written NCDHW, neither converted.
        gx = torch.empty((p.n, p.c_in) + p.spatial, device=grad_y.device, dtype=grad_y.dtype)
        _ops().fprop(plan.name, aligned16(grad_y), grad_input_filter(weight, plan, p), None, gx, [p.padding] * 3,
                     [p.stride] * 3, plan.slices, True)
        return gx, None
    G = ndhwc(grad_y)
    gx = out if out is not None else empty_cl((p.n, p.c_in) + p.spatial, grad_y)
    _ops().fprop(plan.name, G, grad_input_filter(weight, plan, p), None, gx.permute(0, 2, 3, 4, 1),
                 [p.padding] * 3, [p.stride] * 3, plan.slices)
    return gx, None


def grad_input_writes_channels_last(grad_y: torch.Tensor, weight: torch.Tensor, p: Problem, precision: str,
                                    config: Optional[str]) -> bool:
    """Whether grad_input's kernel for an NCDHW grad_x [N, C_in, D, H, W] writes it channels_last_3d anyway (the
    stock kernels, converted after them) and is the kernel a channels_last_3d grad_x would run, so that the
    caller may ask for channels_last_3d and convert grad_x itself, at a time of its choosing."""
    nc = _grad_input_plan(grad_y, weight, p, precision, config, True)
    if direct._packed_ncdhw(grad_y) and direct.ffma_fprop_reads_ncdhw(nc.k, p):  # writes NCDHW itself (NC mode)
        return False
    return not nc.tap_reuse and _grad_input_plan(grad_y, weight, p, precision, config, False).k == nc.k


def grad_input_copies_grad_y(grad_y: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, p: Problem,
                             precision: str, config: Optional[str]) -> bool:
    """Whether grad_input (grad_x in x's layout) reads grad_y [N, C_out, Do, Ho, Wo], packed NCDHW, in place
    and leaves grad_weight a channels_last_3d copy and the bias gradient (``grad_input_copying``), in place of
    the conversion pass before both (direct.copies_input)."""
    # direct.COPY_GRAD_Y first: with the copy off (the default) every backward asks, and needs no plan.
    if not direct.COPY_GRAD_Y or not grad_y.is_cuda or not direct._packed_ncdhw(grad_y):
        return False
    gi = _grad_input_plan(grad_y, weight, p, precision, config, not wants_channels_last(x))
    return gi.tap_reuse and direct.copies_input(gi.k, gi.table, p.c_out, p.out_spatial)


def grad_input_copying(grad_y: torch.Tensor, weight: torch.Tensor, p: Problem, precision: str,
                       config: Optional[str] = None, ncdhw: bool = False, with_copy: bool = True):
    """(grad_x [N, C_in, D, H, W] as grad_input() returns it, grad_y's channels_last_3d copy [N, C_out, Do, Ho,
    Wo], the bias gradient [C_out]) from one launch that reads grad_y, packed NCDHW, in place (where
    ``grad_input_copies_grad_y``; else ValueError). with_copy False: no copy (None in its place), the sums
    alone (bench/tools/gyparts.py prices the parts)."""
    plan = _grad_input_plan(grad_y, weight, p, precision, config, ncdhw)
    k = plan.k
    if not (plan.tap_reuse and direct._packed_ncdhw(grad_y) and
            direct.copies_input(k, plan.table, p.c_out, p.out_spatial)):
        raise ValueError(f"convt3d_cutlass: grad_input kernel {plan.name} cannot copy grad_y {tuple(grad_y.shape)}")
    to_ncdhw = ncdhw and direct.writes_ncdhw(k, p, "fprop")
    sums = torch.empty((sum_rows(plan, p, grad_y.device), p.c_out), device=grad_y.device, dtype=grad_y.dtype)
    copy = empty_cl(tuple(grad_y.shape), grad_y) if with_copy else None
    gx = _empty_out((p.n, p.c_in) + p.spatial, grad_y, to_ncdhw)
    _ops().direct(plan.name, aligned16(grad_y), grad_input_filter(weight, plan, p), None,
                  gx if to_ncdhw else gx.permute(0, 2, 3, 4, 1), plan.table, p.stride, 1, to_ncdhw, True, sums,
                  False, to_ncdhw and direct.ncdhw_sectors(k, p, "fprop"),
                  copy.permute(0, 2, 3, 4, 1) if with_copy else None)
    return gx, copy, row_sums(sums)


def grad_weight(grad_y: torch.Tensor, x: torch.Tensor, p: Problem, precision: str,
                config: Optional[str] = None) -> torch.Tensor:
    """grad_w [C_in, C_out, k, k, k] from x [N, C_in, D, H, W] and grad_y [N, C_out, Do, Ho, Wo].

    Conv3d wgrad with dy := x, activation := grad_y, or one of ours (``direct_wgrad``, mma.sync tap reuse;
    ``wgmma_wgrad`` tap reuse and ``igemm_wgrad`` implicit GEMM per tap on Hopper; tf32). Either way the reduction over positions is split into slices
    whose partial sums land in a buffer summed in a fixed order: bitwise deterministic.
    """
    plan = _plan(p, "wgrad", precision, config, x.device,
                 lambda name: grad_weight(grad_y, x, p, precision, name), out_ncdhw=not wants_channels_last(x))
    k = plan.k
    if plan.tap_reuse:
        # Tap reuse: per slice, [k^3, C_in, C_out] partial sums, summed in a fixed order. Slices are
        # x tiles (mma.sync) or columns of x tiles times depth segments (Hopper).
        partials = torch.empty((plan.slices, p.k ** 3, p.c_in, p.c_out), device=x.device, dtype=x.dtype)
        # The Hopper kernel's TMA reads an NCDHW x as it is (W % 4 == 0: 16-byte row strides), and its
        # x^T staging takes either layout: no layout conversion of x, the largest tensor of the pass.
        x_ncdhw = direct.wgrad_reads_ncdhw(k, x)
        gy_ncdhw = direct.wgrad_reads_gy_ncdhw(k, grad_y)
        _ops().direct_wgrad(plan.name, aligned16(x) if x_ncdhw else ndhwc(x),
                            aligned16(grad_y) if gy_ncdhw else ndhwc(grad_y), partials, p.k, p.stride, p.padding,
                            plan.taps_per_group, x_ncdhw, gy_ncdhw)
        return _finish(partials, p)
    both_ncdhw = direct._packed_ncdhw(x) and direct._packed_ncdhw(grad_y)
    slabs = direct.ffma_wgrad_slabs(k, p) if both_ncdhw else ()
    if slabs:
        return _grad_weight_slabs(plan, grad_y, x, p, slabs)
    partials = torch.empty((plan.slices, p.c_in, p.k, p.k, p.k, p.c_out), device=x.device, dtype=x.dtype)
    if both_ncdhw and direct.ffma_wgrad_reads_ncdhw(k, p):
        # The FFMA rows' NC mode: x and grad_y as they are, no channels_last_3d copy of either.
        _ops().wgrad(plan.name, aligned16(x), aligned16(grad_y), partials, [p.padding] * 3, [p.stride] * 3, True)
    else:
        _ops().wgrad(plan.name, ndhwc(x), ndhwc(grad_y), partials, [p.padding] * 3, [p.stride] * 3)
    return _finish(partials, p)


def _grad_weight_slabs(plan: Plan, grad_y: torch.Tensor, x: torch.Tensor, p: Problem, slabs) -> torch.Tensor:
    """grad_w [C_in, C_out, k, k, k] from x [N, C_in, D, H, W] and grad_y [N, C_out, Do, Ho, Wo], both packed NCDHW,
    by depth slabs (direct.ffma_wgrad_slabs): per slab, its x and the window of grad_y its taps reach converted to
    channels_last_3d into two buffers that every slab reuses, the stock-contract wgrad over them (the window's own
    front padding), its partial sums summed into the slab's part; then the parts summed in slab order. The
    eager node (csrc/eager_node.cpp, grad_weight_slabs) does the same."""
    n, h, w = x.shape[0], x.shape[3], x.shape[4]
    ho, wo = grad_y.shape[3], grad_y.shape[4]
    xbuf = x.new_empty(n * max(s.z1 - s.z0 for s in slabs) * h * w * p.c_in)
    gbuf = x.new_empty(n * max(max(s.a1 - s.a0 for s in slabs), 1) * ho * wo * p.c_out)
    partials = x.new_empty((plan.slices, p.c_in, p.k, p.k, p.k, p.c_out))
    empty = any(s.a1 == s.a0 for s in slabs)  # a slab no tap reaches adds nothing
    parts = (x.new_zeros if empty else x.new_empty)((len(slabs), p.c_in, p.c_out, p.k, p.k, p.k))
    ops = _ops()
    for i, s in enumerate(slabs):
        if s.a1 == s.a0:
            continue
        xs = xbuf[:n * (s.z1 - s.z0) * h * w * p.c_in].view(n, s.z1 - s.z0, h, w, p.c_in)
        gs = gbuf[:n * (s.a1 - s.a0) * ho * wo * p.c_out].view(n, s.a1 - s.a0, ho, wo, p.c_out)
        ops.transpose_layout(x.narrow(2, s.z0, s.z1 - s.z0), xs, True, None)
        ops.transpose_layout(grad_y.narrow(2, s.a0, s.a1 - s.a0), gs, True, None)
        ops.wgrad(plan.name, xs, gs, partials, [s.pad_d, p.padding, p.padding], [p.stride] * 3)
        ops.wgrad_finish(partials, parts[i])
    return parts.sum(0)


def grad_y_in_place(grad_y: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, p: Problem, precision: str,
                    config: Optional[str], need_x: bool, need_w: bool) -> bool:
    """Whether every backward pass asked for (grad_input: need_x, grad_weight: need_w) reads grad_y
    [N, C_out, Do, Ho, Wo] in its packed NCDHW storage, so that nothing converts it: the exact-fp32 rows,
    grad_input not over grad_y's parities (direct.backward_reads_grad_y, which the eager node asks too), grad_input's
    3xtf32 tensor-core rows that can (direct.grad_input_reads_grad_y), and the FFMA rows' NC modes where x is NCDHW
    (grad_x written so)."""
    if not (need_x or need_w) or not grad_y.is_cuda or not direct._packed_ncdhw(grad_y):
        return False
    if need_x and not grad_input_reads_grad_y(grad_y, x, weight, p, precision, config):
        return False
    if need_w and not grad_weight_reads_grad_y(grad_y, x, p, precision, config):
        return False
    return True


def grad_input_reads_grad_y(grad_y: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, p: Problem, precision: str,
                            config: Optional[str]) -> bool:
    """Whether grad_input's plan reads grad_y [N, C_out, Do, Ho, Wo] in its packed NCDHW storage (plan_reads_grad_y),
    grad_x taking x's layout (NCDHW unless x [N, C_in, D, H, W] is channels_last_3d, as the backward asks for it)."""
    if not grad_y.is_cuda or not direct._packed_ncdhw(grad_y):
        return False
    ncdhw = not wants_channels_last(x)
    return plan_reads_grad_y(_grad_input_plan(grad_y, weight, p, precision, config, ncdhw), p, "fprop", ncdhw)


def grad_weight_reads_grad_y(grad_y: torch.Tensor, x: torch.Tensor, p: Problem, precision: str,
                             config: Optional[str]) -> bool:
    """Whether grad_weight's plan reads grad_y [N, C_out, Do, Ho, Wo] in its packed NCDHW storage: the exact-fp32
    tap-reuse rows (direct.backward_reads_grad_y), and the FFMA rows' NC mode or depth slabs where x [N, C_in, D, H, W]
    is packed NCDHW too (direct.ffma_wgrad_reads_ncdhw, direct.ffma_wgrad_slabs)."""
    if not grad_y.is_cuda or not direct._packed_ncdhw(grad_y):
        return False
    gw = _plan(p, "wgrad", precision, config, grad_y.device,
               lambda name: grad_weight(grad_y, x, p, precision, name), out_ncdhw=not wants_channels_last(x))
    return plan_reads_grad_y(gw, p, "wgrad", direct._packed_ncdhw(x))


def plan_reads_grad_y(plan: Plan, p: Problem, op: str, x_ncdhw: bool) -> bool:
    """Whether the backward's plan for pass ``op`` ("fprop": grad_input, "wgrad": grad_weight) of layer p reads a
    packed NCDHW grad_y in place, x (and grad_x) being NCDHW where x_ncdhw: the exact-fp32 tap-reuse rows
    (direct.backward_reads_grad_y: grad_input not over grad_y's parities), grad_input's 3xtf32 tensor-core rows that
    can (direct.grad_input_reads_grad_y: the backward runs them after grad_weight has read and released its
    channels_last_3d copy), the FFMA rows' NC modes, and the FFMA grad_weight's depth slabs (each converts its own
    window of grad_y). The one answer for the Python Function (grad_y_in_place) and the eager node
    (eager.plan_ints)."""
    if plan.tap_reuse:
        if op == "fprop":
            return direct.grad_input_reads_grad_y(plan.k, plan.table, p)
        return direct.backward_reads_grad_y(plan.k, p)
    if op == "fprop":
        return x_ncdhw and direct.ffma_fprop_reads_ncdhw(plan.k, p)
    return x_ncdhw and (direct.ffma_wgrad_reads_ncdhw(plan.k, p) or bool(direct.ffma_wgrad_slabs(plan.k, p)))


# The backward runs grad_weight before grad_input: grad_weight's temporaries (its partial sums, and its
# channels_last_3d copy of an NCDHW x where it makes one) are then freed before grad_x is allocated, so
# that the peak holds the larger of the two instead of both (H100, v0.22: the headline's tf32 step 963 ->
# 689 MiB, fp32 752 -> 689; U-Net 64->32 NCDHW fp32 1144 -> 1016). v0.22-v0.27 kept grad_input first on
# tensor-core layers whose temporaries were under 32 MiB: their host-bound steps had measured 3-30% faster
# that way, across subprocesses. v0.28 measured it again in one process (bench/tools/memab.py, 8 rounds,
# settings in reverse order every other round) where only the order changed: U-Net k2 up 0.327 -> 0.320 ms
# NCDHW and 0.359 -> 0.342 channels_last_3d, medium channels_last_3d 0.511 -> 0.533, within the rounds'
# spread, while grad_input first kept the peak above cuDNN's on the k2 up (152.6 vs 146.1 MiB NCDHW, 72.6
# vs 72.0) and medium (28.6 vs 24.0). So grad_weight first everywhere; this function stays the one place
# the order is decided (the eager plan's last integer, ops.py's Function).
def grad_weight_first(p: Problem, plan: Plan, x: torch.Tensor) -> bool:
    """Whether the backward of layer p (x [N, C_in, D, H, W] as saved; ``plan``: its grad_weight Plan) runs
    grad_weight before grad_input: always (the policy above)."""
    return True


def _finish(partials: torch.Tensor, p: Problem) -> torch.Tensor:
    """grad_w [C_in, C_out, k, k, k] from partials [S, k^3, C_in, C_out] or [S, C_in, k, k, k, C_out]:
    the slices summed in a fixed order and the layout changed in one launch (csrc/reductions.cu), however
    many slices (up to v0.41 torch summed many slices first: a second launch and its host set-up)."""
    gw = torch.empty((p.c_in, p.c_out, p.k, p.k, p.k), device=partials.device, dtype=partials.dtype)
    _ops().wgrad_finish(partials, gw)
    return gw
