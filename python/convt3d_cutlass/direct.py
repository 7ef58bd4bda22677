"""Launch plans for the tap-reuse ("direct") kernels: phase tables, filter layouts, shared memory.

The kernel (``csrc/direct_conv.cuh``, contract in ``csrc/direct_launch.h``) computes, per phase,
``out[n, first + s_out*q, co] = bias[co] + sum_j sum_cr in[n, s_in*q + dmin + j, cr] * w[j, co, cr]``.

* forward (ConvTranspose3d): in = x, s_in = 1, s_out = stride, one phase per output residue
  (``problem.phases``); tap j of an axis phase reads input ``q + pad - (taps-1) + j`` and uses
  kernel index ``r + stride*(taps-1-j)``.
* grad_input (a strided Conv3d over grad_y): in = grad_y, s_in = stride, s_out = 1, one phase,
  tap j reads ``stride*q - padding + j`` with kernel index j. The exact-fp32 rows at stride > 1 sum
  stride^3 phases instead, one per parity of grad_y (``grad_input_parity_plan``), each reading
  ``stride*(q + j) + dmin``.

Pure Python apart from the filter re-layout, so plans are testable on the CPU.
"""
from __future__ import annotations

import functools
import math
import os
from typing import List, NamedTuple, Optional, Tuple

import torch

from .problem import Problem, phases

KC = 8  # reduction channels per shared-memory stage
MAX_PHASES = 64
SM90_SMEM_OPTIN = 232448  # shared memory per block on sm_90 (H100, H200), csrc/sm90_atoms.cuh


def _axis_taps(a, stride: int) -> Tuple[Tuple[int, ...], int]:
    """Axis phase a of the forward as the kernels read it: the filter index of each tap j (stepping down by the
    stride) and dmin, the input offset of tap 0 (input = q + dmin + j)."""
    return tuple(a.r + stride * (a.taps - 1 - j) for j in range(a.taps)), a.pad - (a.taps - 1)


@functools.lru_cache(maxsize=256)
def forward_plan(p: Problem) -> Tuple[Tuple[int, ...], Tuple[Tuple[Tuple[int, ...], ...], ...]]:
    """(phase table, per-phase kernel indices) of the forward.

    The phase table holds 13 integers per phase (first[3], count[3], dmin[3], taps[3], weight
    offset); the kernel indices give, per phase and axis, the filter index of each tap j.
    """
    table: List[int] = []
    kidx = []
    offset = 0
    for ph in phases(p):
        idx, dmin = zip(*(_axis_taps(a, p.stride) for a in ph.axes))
        table += list(ph.first) + list(ph.count) + list(dmin) + list(ph.taps) + [offset]
        offset += ph.taps[0] * ph.taps[1] * ph.taps[2] * p.c_out * p.c_in
        kidx.append(idx)
    return tuple(table), tuple(kidx)


@functools.lru_cache(maxsize=256)
def forward_plan_wfold(p: Problem) -> Tuple[Tuple[int, ...], Tuple[Tuple[Tuple[int, ...], ...], ...]]:
    """(phase table, per-phase kernel indices) of the forward on the w-fold rows (``k.wf``, the Hopper
    kernel's WF form): phases along d and h as in ``forward_plan``, none along w. There the kernel reads
    inputs m of [m_lo, m_hi], every one feeding outputs stride * m - padding + kw for all k taps kw (natural
    order in the filter block), so the w entries of each phase are: first = -padding (the output of m = 0,
    kw = 0), count = m_hi - m_lo + 1, dmin = m_lo - R with R = (k - 1) // stride (the halo positions a tile
    reads before its first stored input), taps = k. m_lo is the first input with an output at or past 0
    along w, m_hi the last with one before Wo."""
    s, k, pad = p.stride, p.k, p.padding
    r = (k - 1) // s
    m_lo = -(-(pad - s + 1) // s)
    m_hi = (p.out_spatial[2] - 1 + pad) // s
    table: List[int] = []
    kidx = []
    offset = 0
    for ph in phases(p):
        if ph.axes[2].r:  # one phase per (d, h) residue pair, in forward_plan's order
            continue
        ad, ah = ph.axes[:2]
        (idd, dd), (idh, dh) = _axis_taps(ad, s), _axis_taps(ah, s)
        table += [ad.first, ah.first, -pad, ad.count, ah.count, m_hi - m_lo + 1, dd, dh, m_lo - r, ad.taps, ah.taps,
                  k, offset]
        offset += ad.taps * ah.taps * k * p.c_out * p.c_in
        kidx.append((idd, idh, tuple(range(k))))
    return tuple(table), tuple(kidx)


@functools.lru_cache(maxsize=256)
def grad_input_plan(p: Problem) -> Tuple[int, ...]:
    """Phase table of grad_input: one phase over the input volume, every tap."""
    return tuple([0, 0, 0] + list(p.spatial) + [-p.padding] * 3 + [p.k] * 3 + [0])


def _parity_taps(p: Problem, r: int) -> Tuple[int, ...]:
    """Kernel indices k (ascending, stride apart) whose grad_y offset k - padding has residue r."""
    return tuple(k for k in range(p.k) if (k - p.padding) % p.stride == r)


def _parities(p: Problem):
    """grad_y's stride^3 parities in the kernel's order (rz, then ry, then rx): per parity the kernel
    indices of each axis (``_parity_taps``)."""
    for rz in range(p.stride):
        for ry in range(p.stride):
            for rx in range(p.stride):
                yield [_parity_taps(p, r) for r in (rz, ry, rx)]


@functools.lru_cache(maxsize=256)
def grad_input_parity_plan(p: Problem) -> Tuple[int, ...]:
    """Phase table of grad_input as a sum over grad_y's stride^3 parities (the kernel's sum_phases mode).

    grad_x[q] sums grad_y[stride*q - padding + k] * w[k]; the taps whose offset u = k - padding has
    residue r read only grad_y[stride*(q + j) + dmin] with dmin the smallest such u and j = 0, 1, ...:
    a unit-stride problem over one parity of grad_y. Each parity is a phase with the whole input volume
    as output; its weight block follows the previous one's, [taps][C_in][C_out]. Phases of a residue no
    tap has (k < stride) have 0 taps along that axis.
    """
    table: List[int] = []
    offset = 0
    for idx in _parities(p):
        taps = [len(i) for i in idx]
        dmin = [i[0] - p.padding if i else 0 for i in idx]
        table += [0, 0, 0] + list(p.spatial) + dmin + taps + [offset]
        offset += taps[0] * taps[1] * taps[2] * p.c_in * p.c_out
    return tuple(table)


def pass_plan(k, p: Problem, op: str) -> Tuple[Tuple[int, ...], int, bool]:
    """(phase table, s_in, sum_phases) with which row k runs pass op ("dgrad": the forward, "fprop":
    grad_input) of problem p."""
    if op == "dgrad":
        return (forward_plan_wfold(p) if k.wf else forward_plan(p))[0], 1, False
    if sums_parities(k, p):
        return grad_input_parity_plan(p), p.stride, True
    return grad_input_plan(p), p.stride, False


def sums_parities(k, p: Problem) -> bool:
    """Whether grad_input on row k runs as a sum over grad_y's parities (grad_input_parity_plan): the
    exact-fp32 rows at stride > 1, whose dense halo would be stride-times wider per axis."""
    return k.simt and k.op != "wgrad" and p.stride > 1


def round_tf32(w: torch.Tensor) -> torch.Tensor:
    """Round fp32 to the nearest tf32 (ties away from zero, as cvt.rna; the Hopper kernels round their
    activations with ties to even, which differs only on exact ties): the kernel feeds the
    stored bits to the tensor cores, which would otherwise truncate."""
    bits = w.contiguous().view(torch.int32)
    finite = torch.isfinite(w)
    rounded = ((bits + 0x1000) & ~0x1FFF).view(torch.float32)
    return torch.where(finite, rounded, w)


def forward_filter(weight: torch.Tensor, p: Problem, precision: str, wf: bool = False) -> torch.Tensor:
    """weight [C_in, C_out, k, k, k] -> flat per-phase blocks [taps][C_out][C_in] (K-major in C_in), in the
    phases of ``forward_plan`` (``wf``: of ``forward_plan_wfold``, whose w taps are the kernel's own order)."""
    w = weight.detach()
    blocks = []
    for idx in (forward_plan_wfold(p) if wf else forward_plan(p))[1]:
        if min(len(i) for i in idx) == 0:
            continue
        sub = w
        for axis, taps in enumerate(idx[:2] if wf else idx):
            sub = _taps(sub, 2 + axis, taps)
        blocks.append(sub.permute(2, 3, 4, 1, 0).reshape(-1))
    flat = torch.cat(blocks) if blocks else w.new_zeros(4)
    return _for_kernel(flat, precision)


def _taps(w: torch.Tensor, dim: int, idx: Tuple[int, ...]) -> torch.Tensor:
    """w's entries idx along dim, by views only: a phase's kernel indices step down by the stride, so
    they are a strided slice of the flipped kernel. (Indexing with a list copies the index to the
    GPU, which CUDA graph capture forbids; the filter is rebuilt inside a capture.)"""
    if len(idx) == 1:
        return w.narrow(dim, idx[0], 1)
    step = idx[0] - idx[1]
    assert step > 0 and all(a - b == step for a, b in zip(idx, idx[1:])), idx
    k = w.shape[dim]
    return w.flip(dim).narrow(dim, k - 1 - idx[0], step * (len(idx) - 1) + 1)[
        (slice(None),) * dim + (slice(None, None, step),)]


def _for_kernel(flat: torch.Tensor, precision: str) -> torch.Tensor:
    """tf32: rounded; 3xtf32: [hi, lo] stacked, both rounded (the Hopper kernel's split); fp32: as is."""
    if precision == "tf32":
        return round_tf32(flat)
    if precision == "3xtf32":
        hi = round_tf32(flat)
        return torch.cat([hi, round_tf32(flat - hi)])
    return flat.contiguous()


def grad_input_filter(weight: torch.Tensor, precision: str) -> torch.Tensor:
    """weight [C_in, C_out, k, k, k] -> [k, k, k, C_in, C_out] (K-major in C_out), flat."""
    return _for_kernel(weight.detach().permute(2, 3, 4, 0, 1).reshape(-1), precision)


def grad_input_parity_filter(weight: torch.Tensor, p: Problem, precision: str) -> torch.Tensor:
    """weight [C_in, C_out, k, k, k] -> per-parity blocks [taps][C_in][C_out] in the order of
    grad_input_parity_plan, flat (strided slices: no index tensors, as _taps)."""
    w = weight.detach().permute(2, 3, 4, 0, 1)
    blocks = []
    for idx in _parities(p):
        if min(len(i) for i in idx) == 0:
            continue
        sub = w
        for axis, i in enumerate(idx):
            every = (slice(None),) * axis + (slice(None, None, p.stride),)
            sub = sub.narrow(axis, i[0], i[-1] - i[0] + 1)[every]
        blocks.append(sub.reshape(-1))
    return _for_kernel(torch.cat(blocks), precision)


def smem_bytes(block: Tuple[int, int, int], bn: int, s_in: int, table: Tuple[int, ...],
               sum_phases: bool = False, kc: int = KC) -> int:
    """Dynamic shared memory of one CTA as the kernel sizes it: two stages of halo + filter (kc
    channels each), then one int per halo position (the staging table; with sum_phases one per phase,
    and output positions one halo position apart instead of s_in)."""
    tables = len(table) // 13 if sum_phases else 1
    if sum_phases:
        s_in = 1
    halo = filt = 0
    for i in range(0, len(table), 13):
        count, taps = table[i + 3:i + 6], table[i + 9:i + 12]
        ntaps = taps[0] * taps[1] * taps[2]
        if min(count) <= 0 or ntaps == 0:
            continue
        h = 1
        for a in range(3):
            h *= s_in * (block[a] - 1) + taps[a]
        halo = max(halo, h * kc)
        filt = max(filt, ntaps * bn * kc)
    return (2 * (halo + filt) + tables * (halo // kc)) * 4


def wgmma_smem_bytes(block: Tuple[int, int, int], kx: int, bn: int, warpgroups: int, stages: int,
                     table: Tuple[int, ...], c_r: int = 1 << 30, ws: bool = False,
                     split: bool = False, in_ncdhw: bool = False, rs: bool = False) -> Optional[int]:
    """Dynamic shared memory of the Hopper kernel (``csrc/direct_sm90.cuh``) as it sizes it, or None
    when a phase has more than kx taps along w (the kw fold holds kx of them). Stages of (halo box of
    16-position rows, one [kx * bn] x 8 filter block per (kd, kh)), 1 KiB aligned; the epilogue reuses
    them as per-warp scratch of 16 x (kx * bn + 4) floats, except in the warp-specialized form (``ws``),
    whose epilogue stays in registers and which keeps the whole filter resident where it fits; its
    3xtf32 form (``split``) holds hi and lo parts of both. Only min(stages, chunks of 8 of the c_r
    reduction channels) stages are allocated. ``in_ncdhw`` (ws only): the input read in NCDHW storage,
    which adds a ring of raw boxes and needs the resident filter (None where it is not); with ``rs`` (the
    RS form) the raw boxes are the stages and there is no ring."""
    taps = _wgmma_taps(table, kx)
    if taps is None:
        return None
    r = _wgmma_smem(block, kx, bn, warpgroups, stages, *taps, c_r, ws, split, in_ncdhw, rs)
    return None if r is None else r.bytes


def wgmma_ws_resident(block: Tuple[int, int, int], kx: int, bn: int, stages: int, table: Tuple[int, ...],
                      c_r: int, split: bool = False) -> bool:
    """Whether the warp-specialized Hopper kernel keeps the whole filter in shared memory for this
    phase table and reduction width (else it stages a filter block per chunk beside the halo)."""
    taps = _wgmma_taps(table, kx)
    return taps is not None and _wgmma_smem(block, kx, bn, 2, stages, *taps, c_r, True, split).resident


def _wgmma_taps(table: Tuple[int, ...], kx: int) -> Optional[Tuple[int, int]]:
    """The largest phase's taps along (d, h) over the phases that compute anything, or None when one
    has more than kx taps along w (the kw fold holds kx of them)."""
    tz = ty = 0
    for i in range(0, len(table), 13):
        count, taps = table[i + 3:i + 6], table[i + 9:i + 12]
        if min(count) <= 0 or taps[0] * taps[1] * taps[2] == 0:
            continue
        if taps[2] > kx:
            return None
        tz, ty = max(tz, taps[0]), max(ty, taps[1])
    return tz, ty


class WgmmaSmem(NamedTuple):
    """How the Hopper tap-reuse kernel lays out its shared memory for one launch."""
    bytes: int      # dynamic shared memory
    resident: bool  # the whole filter stays in shared memory (warp-specialized form)
    stages: int     # halo stages allocated


RAW_W = 20  # the NCDHW input's box width along w (RAW_W in csrc/direct_sm90.cuh)
HALO_W = 16  # the wgmma rows' halo positions along w (HALO_W there): tiles of HALO_W - kx + 1 outputs


def raw_box_dims(hd: int, hh: int, rs: bool) -> Tuple[int, int]:
    """Planes and rows of the NCDHW input's TMA box for a halo of hd x hh (WgmmaKernel::raw_box_dims): as
    is for the ring the rounders read; for the RS form, whose lanes read four channels of the box at
    once, the least padding that keeps the channel pitch (planes x rows x RAW_W words) off 0 mod 32, where
    those four channels would share a bank (two-way conflicts cost less than padding them away, v0.49)."""
    if not rs:
        return hd, hh
    best = None
    for d in (hd, hd + 1):
        for h in range(hh, hh + 4):
            if d * h % 8 != 0 and (best is None or d * h < best[0] * best[1]):
                best = (d, h)
    return best


def _wgmma_smem(block, kx, bn, warpgroups, stages, tz, ty, c_r, ws, split=False, in_ncdhw=False, rs=False,
                rows=False):
    """The WgmmaSmem behind ``wgmma_smem_bytes`` for the largest phase's taps tz x ty; None with
    in_ncdhw where the filter would not be resident. rows: the ring's boxes one per halo row (an NCDHW input
    with W % 4 != 0, Geometry::raw_rows), each 128-byte aligned."""
    hd, hh = block[0] + max(tz - 1, 0), block[1] + max(ty - 1, 0)
    parts = 2 if split else 1
    halo, group = parts * hd * hh * 16 * KC * 4, parts * kx * bn * KC * 4
    stage = -(-(halo + tz * ty * group) // 1024) * 1024
    chunks = -(-c_r // KC)
    capped = max(1, min(stages, chunks))
    if ws:
        # The whole filter resident beside at least two 1 KiB-aligned halo stages when it fits, then as
        # many stages as fit Hopper's 227 KiB, up to `stages`; three barriers per stage and two more.
        filt = chunks * tz * ty * group
        halo_stage = -(-halo // 1024) * 1024
        # NCDHW input: RAW_BUFFERS (2) boxes of 4 channels x RAW_W (20) positions along w as TMA lands
        # them, 1 KiB aligned, after the stages and the filter; two barriers each. The RS form has no
        # ring: its stages are a chunk's two boxes.
        rd, rh = raw_box_dims(hd, hh, rs)
        box = rh * -(-rd * RAW_W * 4 * 4 // 128) * 128 if rows else rd * rh * RAW_W * 4 * 4
        raw_stride = -(-box // 1024) * 1024
        raw = 2 * (raw_stride + 16) + 1024 if in_ncdhw and not rs else 0
        fstage = 2 * raw_stride if in_ncdhw and rs else halo_stage
        if filt > 0 and 1024 + filt + raw + min(capped, 2) * (fstage + 24) + 16 <= SM90_SMEM_OPTIN:
            stage = fstage
        elif in_ncdhw:
            return None
        else:
            filt = 0
        # Up to `stages` whatever the unit's chunks: the ring runs across units (WgmmaKernel::geometry).
        stages = min(stages, max(1, (SM90_SMEM_OPTIN - 1024 - 16 - filt - raw) // (stage + 24)))
        if in_ncdhw and not rs:
            return WgmmaSmem(1024 + -(-(stages * stage + filt) // 1024) * 1024 + 2 * raw_stride + (3 * stages + 6) * 8,
                             True, stages)
        return WgmmaSmem(1024 + stages * stage + filt + (3 * stages + 2) * 8, filt > 0, stages)
    scratch = warpgroups * 4 * 16 * (kx * bn + 4) * 4
    return WgmmaSmem(1024 + max(capped * stage, scratch) + capped * 8, False, capped)


def igemm_smem_bytes(bn: int, stages: int, split: bool = False) -> int:
    """Dynamic shared memory of the Hopper implicit-GEMM kernel (``csrc/igemm_sm90.cuh``): `stages` of
    (128 positions x 32 channels of input, bn x 32 of filter, twice for 3xtf32's hi and lo parts), two
    mbarriers each, 1 KiB of alignment."""
    return 1024 + stages * (128 * 32 * 4 + (2 if split else 1) * bn * 32 * 4) + 2 * stages * 8


def igemm_sector_ring(bn: int, stages: int, split: bool = False) -> int:
    """Stages of the Hopper implicit-GEMM kernel's ring beside its SECTORS buffer (IgemmConfig::SECTOR_RING):
    as many as fit with [bn][2 * 128 + 4] floats of staged output, at most the row's own; 0 where fewer
    than four fit (no SECTORS form)."""
    stage = 128 * 32 * 4 + (2 if split else 1) * bn * 32 * 4
    ring = min(stages, (SM90_SMEM_OPTIN - 1024 - bn * (2 * 128 + 4) * 4 - 16 * stages) // stage)
    return 0 if ring < 4 else ring


def igemm_sibling_pairs(table: Tuple[int, ...], stride: int) -> bool:
    """The phase table's part of the SECTORS rule (igemm_sibling_pairs in csrc/igemm_sm90.cuh): stride 2 with
    eight phases, phases 2i and 2i + 1 sharing their first output and count along d and h, one starting at
    w = 0 and the other at 1."""
    rows = [table[i:i + 13] for i in range(0, len(table), 13)]
    if stride != 2 or len(rows) != 8:
        return False
    for i, r in enumerate(rows):
        sib = rows[i ^ 1]
        if r[2] not in (0, 1) or r[2] + sib[2] != 1 or r[0:2] != sib[0:2] or r[3:5] != sib[3:5]:
            return False
    return True


@functools.lru_cache(maxsize=1024)
def igemm_sector_pairs(k, p: Problem, num_sms: int) -> bool:
    """Whether the implicit-GEMM forward on row k stores NCDHW by whole rows (IgemmKernel::sector_pairs, its
    out_sectors mode): a row with a SECTORS form (igemm_sector_ring), the walk by groups, and the phases
    along w in sibling pairs (igemm_sibling_pairs). The kernel then stages each (d, h) pair's two phases in
    shared memory and stores rows of 2 x TW consecutive outputs along w, instead of every other float of a
    sector per phase."""
    if k.family != "igemm" or k.op == "wgrad" or igemm_sector_ring(k.bn, k.stages, k.split) == 0:
        return False
    table = forward_plan(p)[0]
    return igemm_sibling_pairs(table, p.stride) and igemm_walks_groups(table, p.n, p.c_out, k.block, k.bn, num_sms)


def igemm_groups(table: Tuple[int, ...], n: int, c_o: int, block: Tuple[int, int, int], bn: int) -> int:
    """Units per phase of the Hopper implicit-GEMM kernel (``IgemmGeometry::per_phase``): samples x tiles
    (over the largest phase's counts) x blocks of bn output channels."""
    rows = [table[i:i + 13] for i in range(0, len(table), 13)]
    tiles = 1
    for a in range(3):
        tiles *= -(-max(r[3 + a] for r in rows) // block[a])
    return n * tiles * -(-c_o // bn)


def igemm_walks_groups(table: Tuple[int, ...], n: int, c_o: int, block: Tuple[int, int, int], bn: int,
                       num_sms: int) -> bool:
    """Whether the implicit-GEMM kernel walks by groups, each with its phases in a row (the rule of
    ``IgemmKernel::run``): several phases, and at least one group per SM."""
    return len(table) > 13 and igemm_groups(table, n, c_o, block, bn) >= num_sms


@functools.lru_cache(maxsize=1024)
def igemm_cost(table: Tuple[int, ...], n: int, c_r: int, c_o: int, block: Tuple[int, int, int], bn: int,
               num_sms: int) -> int:
    """Relative time of the Hopper implicit-GEMM kernel on a phase table: the busiest CTA's work when
    the kernel walks its units as it does (csrc/igemm_sm90.cuh: phases with most taps first, units
    u = b, b + G, ... for CTA b of G = min(units, SMs); or, with several phases whose groups of (sample,
    tile, C_out block) fill the grid, groups g = b, b + G, ... with all their phases in a row). A unit
    (one tile of positions, one block of bn output channels) costs
    taps x 32-channel chunks + 1 (its epilogue) k-blocks, each bn + 64 (a 64-wide N tile measured two
    thirds of a 128-wide one's time on the H100: shared-memory bound at 64). Ranks the rows' tile
    shapes and N blocks, padding and wave quantization included."""
    rows = [table[i:i + 13] for i in range(0, len(table), 13)]
    per_phase = igemm_groups(table, n, c_o, block, bn)
    units = per_phase * len(rows)
    if units == 0:
        return 0
    chunks = -(-c_r // 32)
    taps = sorted((r[9] * r[10] * r[11] for r in rows), reverse=True)
    costs = [(t * chunks + 1) * (bn + 64) for t in taps]
    if igemm_walks_groups(table, n, c_o, block, bn, num_sms):
        return -(-per_phase // num_sms) * sum(costs)
    g = min(units, num_sms)
    worst = 0
    for b in range(g):
        load = 0
        for i, c in enumerate(costs):
            start, end = i * per_phase, (i + 1) * per_phase
            load += c * ((end - 1 - b) // g - (start - 1 - b) // g)
        worst = max(worst, load)
    return worst


def igemm_wgrad_smem_bytes(bn: int, stages: int, kx: int = 0, block: Tuple[int, int, int] = (1, 1, 1),
                           stride: int = 1, swap: bool = False) -> int:
    """Dynamic shared memory of the Hopper implicit-GEMM grad_weight (``csrc/igemm_wgrad_sm90.cuh``):
    `stages` of (32 positions x 128 C_in of x, 32 x bn of grad_y, its bn x 32 transpose), three mbarriers
    each, 1 KiB of alignment. With the kw fold (kx > 1) a stage holds bn / 32 grad_y boxes of
    block[0] x block[1] x (stride * (block[2] - 1) + kx) positions (each 1 KiB aligned) and a kx * bn x 32
    transpose (swap: x's 128 x 32 transpose instead)."""
    if kx > 1:
        wb = stride * (block[2] - 1) + kx
        g_sub = -(-block[0] * block[1] * wb * 128 // 1024) * 1024
        return 1024 + stages * (32 * 128 * 4 + bn // 32 * g_sub + (128 if swap else kx * bn) * 32 * 4) + 3 * stages * 8
    return 1024 + stages * (32 * 128 * 4 + 2 * 32 * bn * 4) + 3 * stages * 8


# The partial sums are the backward's largest temporary on small layers: U-Net 256->128 took 7 slices,
# 23.6 MiB, where cuDNN's whole step needed 10 MiB besides its tensors, and its peak stayed above cuDNN's
# (v0.28). So the fewest slices whose modelled cost is within this fraction of the best: 3 slices there,
# 10.1 MiB, for a cost 5% above 7's.
IGEMM_WGRAD_SLICE_SLACK = 0.06
# And a cap that follows the layer's size: partial sums of at most a third of x and grad_y together. The model
# counts whole waves of equal tiles, but a wave of fewer CTAs runs each tile faster: V-Net up's k5 swapped row
# (50 units per slice) measured 0.182 ms at 2 slices (100 CTAs), 0.168 at the model's 5 (8.2 against 20.5 MB of
# partial sums; NCDHW x 0.140 against 0.138, bench/tools/igwslices.py, v0.67), where the model put 2 slices 24%
# behind. At 5 its NCDHW step's peak went 2 MiB over cuDNN's. The k3 rows' counts sit at 0.08-0.29 of x and
# grad_y on the sweep's layers, below the cap.
IGEMM_WGRAD_PARTIAL_FRACTION = 1 / 3


@functools.lru_cache(maxsize=256)
def igemm_wgrad_slices(p: Problem, block: Tuple[int, int, int], bn: int, num_sms: int,
                       max_partial_bytes: int = 256 << 20, kx: int = 0,
                       slack: Optional[float] = None) -> int:
    """Slices of the implicit-GEMM grad_weight's reduction (its units are slices x C_in blocks x C_out
    blocks x taps, one CTA per SM walking them). Cost of a count: waves x (32-position tiles per slice +
    3, a unit's fill and store) + the partial sums' write and read (slices x k^3 x C_in x C_out floats,
    counted in tile-times at 3 TB/s against 0.5 us per tile). Returns the fewest slices within ``slack``
    of the cheapest count (IGEMM_WGRAD_SLICE_SLACK), within max_partial_bytes, and with partial sums of
    at most IGEMM_WGRAD_PARTIAL_FRACTION of x and grad_y together (one slice at least)."""
    d, h, w = p.spatial
    operands = 4 * p.n * (p.c_in * d * h * w + p.c_out * math.prod(p.out_spatial))
    max_partial_bytes = min(max_partial_bytes, int(IGEMM_WGRAD_PARTIAL_FRACTION * operands))
    tiles = p.n * -(-d // block[0]) * -(-h // block[1]) * -(-w // block[2])
    # kx > 1: a unit covers kx taps (its k-blocks kx times the MMAs, counted as kx tile-times).
    fold = kx if kx > 1 else 1
    blocks = -(-p.c_in // 128) * -(-p.c_out // bn) * p.k ** 3 // fold
    per_slice = 4 * p.k ** 3 * p.c_in * p.c_out
    costs = []
    for slices in range(1, min(tiles, 256) + 1):
        if slices > 1 and slices * per_slice > max_partial_bytes:
            break
        costs.append(-(-blocks * slices // num_sms) * (-(-tiles // slices) * fold + 3)
                     + slices * 2 * per_slice / 3e12 / 0.5e-6)
    best = min(costs) * (1 + (IGEMM_WGRAD_SLICE_SLACK if slack is None else slack))
    return next(i + 1 for i, c in enumerate(costs) if c <= best)


def all_taps(table, kx: int) -> bool:
    """Whether every phase of ``table`` with outputs has kx taps along each axis (the RS rows' compile-time
    tap loops, csrc/direct_sm90.cuh can_implement): unit-stride passes with k = kx."""
    return all(tuple(table[i + 9:i + 12]) == (kx, kx, kx)
               for i in range(0, len(table), 13) if min(table[i + 3:i + 6]) > 0)


def ctas(block: Tuple[int, int, int], bn: int, n: int, c_out: int, table: Tuple[int, ...],
         sum_phases: bool = False) -> int:
    """CTAs the launch starts (exited ones included); with sum_phases one per tile for all phases."""
    counts = [max(table[i + 3 + a] for i in range(0, len(table), 13)) for a in range(3)]
    tiles = 1
    for a in range(3):
        tiles *= -(-counts[a] // block[a])
    return tiles * -(-c_out // bn) * n * (1 if sum_phases else len(table) // 13)


# --- grad_weight (csrc/direct_wgrad.cuh) ---------------------------------------------------------
WGRAD_MAX_WARPS = 16  # (kh, kw) taps per CTA, one warp each


def wgrad_tap_groups(k: int) -> Tuple[int, int]:
    """(taps per CTA, tap groups): the k*k (kh, kw) taps of one kd split into as few groups of at
    most 16 (one warp per tap) as possible, evenly (k=3: 9 x 1, k=5: 13 x 2, k=7: 13 x 4)."""
    groups = -(-k * k // WGRAD_MAX_WARPS)
    return -(-k * k // groups), groups


def wgrad_smem_bytes(block: Tuple[int, int, int], bm: int, bn: int, k: int, stride: int) -> int:
    """Dynamic shared memory of one CTA, as the kernel sizes it: two stages of (x tile with rows
    padded to bm + 4 floats, grad_y halo with rows padded to bn + 4), then one int per halo position."""
    th, tw = block[1], block[2]
    hh, hw = stride * (th - 1) + k, stride * (tw - 1) + k
    stage = th * tw * (bm + 4) + hh * hw * (bn + 4)
    return (2 * stage + hh * hw) * 4


def simt_wgrad_smem_bytes(block: Tuple[int, int, int], bm: int, bn: int, stride: int, k: int = 3) -> int:
    """Dynamic shared memory of the exact-fp32 grad_weight kernel (csrc/direct_wgrad_simt.cuh): two
    stages of (x tile with rows padded to bm + 4 floats, grad_y halo of all k kd planes with rows padded to
    bn + 4), then one int per halo position of a plane."""
    th, tw = block[1], block[2]
    hh, hw = stride * (th - 1) + k, stride * (tw - 1) + k
    return (2 * (th * tw * (bm + 4) + k * hh * hw * (bn + 4)) + hh * hw) * 4


def wgrad_tiles(p: Problem, block: Tuple[int, int, int]) -> int:
    """1 x TH x TW tiles of x the reduction walks (all samples)."""
    d, h, w = p.spatial
    return p.n * d * -(-h // block[1]) * -(-w // block[2])


def wgrad_slices(p: Problem, block: Tuple[int, int, int], bm: int, bn: int, num_sms: int,
                 max_partial_bytes: int = 256 << 20, all_taps: bool = False, ctas_per_sm: int = 1) -> int:
    """CTAs along the reduction: about four CTAs per SM in all (two waves of two), at least one x
    tile each, and at most max_partial_bytes of [slices, k^3, C_in, C_out] fp32 partial sums.
    ``all_taps``: one CTA holds every tap of its channel block (the exact-fp32 kernel). ``ctas_per_sm``: CTAs
    resident at once; with three, one wave of them (four would leave a third of a wave). Rounded down, so
    that slices x blocks CTAs do not spill past the last full wave: every CTA walks an equal range, and a
    few CTAs past it would cost the time of a whole wave (video-gen's 8 blocks on the three-per-SM row: 400 CTAs
    on 396 slots rounded up, 1.36 ms; 392 rounded down, 1.02 ms, H200 v0.78)."""
    taps = 1 if all_taps else p.k * wgrad_tap_groups(p.k)[1]
    blocks = -(-p.c_in // bm) * -(-p.c_out // bn) * taps
    want = max(1, ctas_per_sm * max(1, 4 // ctas_per_sm) * num_sms // blocks)
    cap_mem = max(1, max_partial_bytes // (4 * p.k ** 3 * p.c_in * p.c_out))
    return max(1, min(want, wgrad_tiles(p, block), cap_mem))


# The patch grad_weight's partial sums (k == stride): a cap that keeps them well under grad_y's copy, which
# the row exists to drop (the U-Net k2 up: 128 slices of 64 KiB).
PATCH_WGRAD_MAX_PARTIAL_BYTES = 8 << 20


def patch_wgrad_slices(p: Problem, num_sms: int, bm: int = 64, bn: int = 128, bk: int = 16) -> int:
    """Slices of the patch grad_weight's reduction over x's positions (csrc/patch_simt.cuh, PatchWgradKernel):
    about four CTAs per SM, at least four stages of bk positions each, at most PATCH_WGRAD_MAX_PARTIAL_BYTES of
    [slices, s^3, C_in, C_out] partial sums, at most 65535 (the grid's z)."""
    taps = p.stride ** 3
    tiles = -(-p.c_in // bm) * -(-taps * p.c_out // bn)
    positions = p.n * p.spatial[0] * p.spatial[1] * p.spatial[2]
    cap_mem = max(1, PATCH_WGRAD_MAX_PARTIAL_BYTES // (4 * taps * p.c_in * p.c_out))
    return max(1, min(-(-4 * num_sms // tiles), positions // (4 * bk), cap_mem, 65535))


# --- grad_weight on Hopper (csrc/direct_wgrad_sm90.cuh) -------------------------------------------
@functools.lru_cache(maxsize=256)
def wgmma_wgrad_layout(p: Problem, block: Tuple[int, int, int], warpgroups: int,
                       stages: int) -> Optional[Tuple[int, int, int, int, int, int]]:
    """(cb, pitch, gh, gw, plane_bytes, ring) as the kernel's geometry() sizes them, or None when it
    cannot take the problem: cb grad_y channels per CTA (GEMM M = k*k*cb rows on 64*warpgroups), the
    shared-memory pitch per grad_y position (>= cb, chosen so a quad's A loads hit distinct banks),
    the gh x gw grad_y halo of one x tile, its plane bytes and the planes resident in the ring."""
    k, s = p.k, p.stride
    if s > k:
        return None
    cb_max = warpgroups * 64 // (k * k) // 4 * 4
    if cb_max < 4:
        return None
    blocks = -(-p.c_out // cb_max)
    per_block = -(-p.c_out // blocks)
    cb = -(-per_block // 4) * 4
    pitch = cb
    for _ in range(8):
        if (s * pitch) % 32 in (8, 24):
            break
        pitch += 4
    if pitch > cb + 28:
        pitch = cb
    gh, gw = s * (block[1] - 1) + k, s * (block[2] - 1) + k
    if max(pitch, gh, gw) > 256:
        return None
    plane = -(-gh * gw * pitch * 4 // 128) * 128
    return cb, pitch, gh, gw, plane, k + (stages - 1) * s


def wgmma_wgrad_tiles(p: Problem, block: Tuple[int, int, int], warpgroups: int,
                      stages: int) -> Optional[Tuple[int, int]]:
    """(kb, tiles) as the Hopper grad_weight kernel's geometry() sizes GEMM M, or None (see
    wgmma_wgrad_layout, and more tiles than K per warpgroup): kb rows per kd (k*k*cb padded to 16, so
    that a warp's two A rows lie in one grad_y plane), tiles = the m64 tiles of k*kb rows, which the
    warpgroups share out."""
    layout = wgmma_wgrad_layout(p, block, warpgroups, stages)
    if layout is None:
        return None
    kb = -(-p.k * p.k * layout[0] // 16) * 16
    tiles = -(-p.k * kb // 64)
    return (kb, tiles) if tiles <= warpgroups * p.k else None


def wgmma_wgrad_smem_bytes(p: Problem, block: Tuple[int, int, int], bn: int, warpgroups: int,
                           stages: int, split: bool = False) -> Optional[int]:
    """Dynamic shared memory of the Hopper grad_weight kernel as it sizes it (or None, see
    wgmma_wgrad_layout): three transposed x tiles (two for 3xtf32, ``split``, each hi and lo, and at three
    stages), `stages` TMA x boxes (1 KiB aligned each), the grad_y plane ring, the mbarriers (one per stage,
    one per x^T tile, two done barriers, four at three stages), 1 KiB of alignment slack."""
    layout = wgmma_wgrad_layout(p, block, warpgroups, stages)
    if layout is None:
        return None
    x_bytes = -(-block[1] * block[2] * bn * 4 // 1024) * 1024
    xt = 2 if split or stages >= 3 else 3  # WgradConfig::XT; 3xtf32 keeps hi and lo parts of each
    done = 4 if stages >= 3 else 2         # WgradConfig::ND
    return 1024 + (xt * (2 if split else 1) + stages) * x_bytes + layout[5] * layout[4] + (stages + xt + done) * 8


# The NCDHW epilogue stores 4-byte elements into channel planes, in rows of 14 positions that start off
# 32-byte sectors: slower than the NDHWC one, and it pays where the warp-specialized kernel hides it
# behind the next tile's MMAs, i.e. where each output element takes a long reduction. Measured on the
# H100 (tf32, NCDHW out vs channels_last_3d out + transpose, docs/performance.md v0.8): reductions of
# 864-3456 (C x taps) gained 1.02-1.19x, 648 and 216 lost (0.87x, 0.76x). Re-measured for grad_input
# in v0.14 (bench/tools/gion.py): 864 1.15x, 648 0.82x (the headline: 3.55 vs 2.90 ms), 216 0.75x.
# Re-measured in v0.51 against the transpose everywhere (bench/tools/igemm_ncdhw_ab.py NCDHW_MIN_REDUCTION=
# 1000000, GPU time, 5 ABBA rounds), plain stores ahead on every layer they run: video-gen forward 1.061x and
# grad_input (864) 1.089x, SR head forward (864) 1.093x, V-Net refine 1.036x / 1.083x, medium 1.006x.
NCDHW_MIN_REDUCTION = 768

# What the epilogue's stores hide behind is the MMA work per output element, not its length: a 3xtf32
# (split) row issues three wgmmas per product, so its reduction counts this many times against
# NCDHW_MIN_REDUCTION (the headline's grad_input, 648: 1944). Counted once, that pass wrote channels_last_3d
# plus our transpose: 1.11x slower, and a second 1296 MiB grad_x at the NCDHW step's peak (H100, v0.36,
# bench/tools/igemm_ncdhw_ab.py).
SPLIT_MMAS_PER_PRODUCT = 3


# The exact-fp32 forward writes NCDHW itself at stride > 1 too, its sibling phases' CTAs launched side by
# side so that the parts of each sector meet in L2 (csrc/direct_simt.cuh), where the reduction per output
# element is at most this: there the transpose it saves is a large share of the pass. Same-process A/B
# of the NCDHW step against channels_last_3d plus our transpose (H100, v0.20): reduction 512 won
# (U-Net 64->32 1.053x, SR x2 1.043x, U-Net output_padding 1.008x), 64 won (U-Net k2 1.102x), 1024 tied
# (U-Net and 3D-GAN 128->64: 0.989x, 1.002x), 3456 lost (V-Net up k5: 0.905x, its forward 0.80x). H200 (v0.84,
# bench/tools/selab.py, 3 ABBA rounds, 768 against 1728): forwards U-Net 128->64 0.948x, 3D-GAN 128->64 1.021x, 3D-GAN
# k5 64->32 (1728) 1.030x, steps 0.976x / 0.993x / 1.004x, and the step's peak memory the same on all three (the
# backward's copy of grad_y, as large as y, holds it as high as the forward's y copy): no rule in it, the limit stays.
SIMT_STRIDED_NCDHW_MAX_REDUCTION = 768


# grad_input's ws rows with tiles two planes deep store NCDHW by whole 32-byte sectors (ncdhw_sectors).
# Measured on the H100 (tf32, v0.31, logs/v31.log; outputs of 162-1296 MiB, reductions 216-648): 1.14-2.04x
# faster than their plain NCDHW stores and 1.13-1.27x faster than channels_last_3d plus our transpose, so
# they write NCDHW at any reduction. The block-depth-4 rows lost with sectors then (tf32 0.78-0.98x, but
# 1.21-1.43x at C_in 16; 3xtf32 headline 0.927x in v0.36), when the walk's fixed stride handed a row's short
# last group of w-neighbour tiles to the same CTAs every wave (ncu v0.49: 14% of the kernel with idle SMs).
# With the walk rotated (v0.49) the 3xtf32 depth-4 row wins: headline grad_input NCDHW 6.014 -> 5.655 ms,
# step 1.017x (same process, GPU time, 5 ABBA rounds, logs/v49.log). The tf32 depth-4 rows keep the plain
# stores until measured again (no sweep layer's tf32 grad_input runs on one with W % 8 == 0); the forward
# keeps the plain stores.
SECTOR_MAX_BLOCK_DEPTH = 2
SPLIT_SECTOR_MAX_BLOCK_DEPTH = 4
# Unit-stride forwards on the ws and RS rows keep the plain stores. Same process (H100, v0.50, bench/tools/
# igemm_ncdhw_ab.py FORWARD_SECTORS=1, GPU time, 4 ABBA rounds), sectors against plain stores on rows that
# start on sectors: SR head 0.400 against 0.378 ms, V-Net refine 0.184 against 0.186; the plain stores cost SR
# head's forward only 0.018 ms over a channels_last_3d output from the same kernel (bench/tools/fwdout.py).
# The headline's NCDHW output costs 0.25 ms (2.214 against 1.965), but not through its split sectors: groups
# of whole rows (98 wide, only the sector between rows split; branch wip/fwd-row-sectors) ran 2.189 from a
# channels_last_3d x and 3.030 from the NCDHW x, against 2.206 and 2.209 with plain stores.
FORWARD_SECTORS = False


def rows_on_sectors(spatial) -> bool:
    """Whether rows of a packed NCDHW tensor of this spatial size (D, H, W) all start on 32-byte sectors
    (W % 8 == 0 floats): there, tiles of 8 or 16 positions from a multiple of 8 store whole sectors."""
    return spatial[2] % 8 == 0


def carry_fits(k) -> bool:
    """Whether a wgmma row has registers beside its accumulators for the sector the NCDHW epilogue carries
    from tile to tile (csrc/direct_sm90.cuh, Config::CARRY_FITS: 2x8 n64's 192 accumulators and 32 more
    spilled), and whether one value per lane is enough: the shared sector starts at the tile's position 8
    or later wherever a group's tile starts (tile width plus gcd(tile width, 8) at least 16)."""
    mb = k.block[0] * k.block[1] // 4 // k.warpgroups
    tw = HALO_W - k.kx + 1
    return mb * k.kx * k.bn // 2 + mb * k.bn // 4 <= 176 and tw + min(tw & -tw, 8) >= 16


def device_sms(num_sms: Optional[int] = None) -> int:
    """num_sms, else the current CUDA device's SM count (the persistent kernels' grid), else an H100's 132
    (planning without a GPU, as the CPU tests do)."""
    if num_sms is not None:
        return num_sms
    if torch.cuda.is_available():
        return _sms_of(torch.cuda.current_device())
    return 132


@functools.lru_cache(maxsize=None)
def _sms_of(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def sector_max_depth(k) -> int:
    """The deepest tile (planes) on which row k's grad_input stores NCDHW by whole sectors: 4 on the 3xtf32
    rows, 2 on the tf32 ones (SPLIT_SECTOR_MAX_BLOCK_DEPTH, SECTOR_MAX_BLOCK_DEPTH)."""
    return SPLIT_SECTOR_MAX_BLOCK_DEPTH if k.split else SECTOR_MAX_BLOCK_DEPTH


def ncdhw_sectors(k, p: Problem, op: str, num_sms: Optional[int] = None) -> bool:
    """Whether row k, writing pass ``op``'s result NCDHW (writes_ncdhw), stores whole 32-byte sectors
    (direct op's out_sectors): grad_input ("fprop") on warp-specialized rows of block depth at most
    sector_max_depth whose carried sector fits in registers, where the output's rows start on
    sectors (W % 8 == 0); the implicit GEMM's strided forward ("dgrad") where it stores rows of both
    sibling phases along w (igemm_sector_pairs; num_sms: the device's, by default) and that pays
    (igemm_sectors_pay). The kernels check the same and otherwise keep their plain stores."""
    if k.family == "igemm":
        return op == "dgrad" and igemm_sector_pairs(k, p, device_sms(num_sms)) and igemm_sectors_pay(k, p)
    if op == "dgrad" and FORWARD_SECTORS and k.family == "wgmma" and k.ws and not k.wf and p.stride == 1:
        return rows_on_sectors(p.out_spatial) and carry_fits(k)
    if op != "fprop" or not (k.family == "wgmma" and k.ws and not k.rs) or not rows_on_sectors(p.spatial):
        return False
    return k.block[0] <= sector_max_depth(k) and carry_fits(k)


def igemm_sectors_pay(k, p: Problem) -> bool:
    """Whether staging the sibling rows (igemm_sector_pairs) beats plain NCDHW stores on row k: not on the
    3xtf32 rows where the output channels fill at most half the N block (C_out <= BN / 2). Their MMAs run on
    the whole block, three per product, so the plain stores' partial sectors hide behind them, while the
    staged pair takes a ring stage (6 -> 5). Same-process A/B (H100, v0.41, bench/tools/igemm_sectors_ab.py,
    3xtf32, 4 rounds, GPU time), plain against staged: U-Net 64->32 forward 1.589 against 1.697 ms, SR x2
    1.338 against 1.430 (C_out 32 on 64-wide blocks; the channels_last_3d kernel plus our transpose 1.854 and
    1.567); U-Net 128->64 (C_out 64) the other way, 0.444 against 0.386."""
    return not (k.split and 2 * p.c_out <= k.bn)


def writes_ncdhw(k, p: Problem, op: str, num_sms: Optional[int] = None) -> bool:
    """Whether row k writes the result of pass ``op`` ("dgrad": the forward, "fprop": grad_input)
    straight into NCDHW storage (its out_ncdhw mode) instead of channels_last_3d plus a transpose:
    the warp-specialized Hopper rows, where a launch's output positions are dense along w (the
    forward at stride 1; grad_input always), and either the reduction per output element (channels x
    taps; times SPLIT_MMAS_PER_PRODUCT on 3xtf32 rows) is at least NCDHW_MIN_REDUCTION or the row stores
    whole sectors (ncdhw_sectors); and the exact-fp32 rows at any reduction (FFMA-bound, they have the
    DRAM time to spare for partly written sectors), the strided forward too up to
    SIMT_STRIDED_NCDHW_MAX_REDUCTION or under nc_pair; and the implicit-GEMM rows where the output's rows start on
    32-byte sectors (W % 8 == 0), any pass and stride, or where the strided forward can store whole rows of sibling
    phases (igemm_sector_pairs on the device's num_sms), at any width: by those rows where they pay
    (ncdhw_sectors, igemm_sectors_pay), else by plain stores.

    The implicit GEMM's tile rows (8 or 16 positions from a multiple of 8 or 16) then fill whole sectors
    at unit output stride. Same-process A/B, NCDHW, against channels_last_3d plus our transpose (H100, v0.32,
    bench/tools/igemm_ncdhw_ab.py, GPU time): grad_input 1.04-1.15x on every sweep layer that runs it (tf32;
    3xtf32 1.08-1.21x on four of five); steps 1.01-1.11x. A strided forward's plain stores fill every other
    float of a sector per phase: off the sectors (127, 93, 63 and 31 wide) they lost 0.85-0.95x (ncu: 0.35 GB
    of fills and 0.3 GB more writes on U-Net 64->32). Its SECTORS form (v0.40, bench/tools/igemm_sectors_ab.py)
    beat both: forwards 1.18-1.30x over the better of the two on the 31- to 127-wide layers, 1.23x / 1.06x
    on the 64-wide ones (U-Net k2 up, x2 with output_padding), steps 1.02-1.12x (tf32). The patch rows (k ==
    stride) write either layout with the same stores, in pairs of a row's neighbours along w."""
    if k.family == "patch":
        return True
    if k.simt and k.op != "wgrad":
        if op == "fprop" or p.stride == 1:
            return True
        # The kernel's phase-fastest launch order indexes the grid in 32 bits: bounded here by the output's
        # element count (a CTA writes at least one), past which the transpose path stays.
        elements = p.n * p.c_out * p.out_spatial[0] * p.out_spatial[1] * p.out_spatial[2]
        return (reduction_length(p, op) <= SIMT_STRIDED_NCDHW_MAX_REDUCTION or nc_pair(p)) and elements < 2 ** 32
    if k.family == "igemm":
        return (rows_on_sectors(p.out_spatial if op == "dgrad" else p.spatial)
                or op == "dgrad" and igemm_sector_pairs(k, p, device_sms(num_sms)))
    if not (op == "fprop" or p.stride == 1):
        return False
    work = reduction_length(p, op) * (SPLIT_MMAS_PER_PRODUCT if k.split else 1)
    return k.family == "wgmma" and k.ws and (work >= NCDHW_MIN_REDUCTION or ncdhw_sectors(k, p, op))


def reduction_length(p: Problem, op: str) -> int:
    """Products summed into one output element of pass ``op``: the forward ("dgrad") reads C_in channels
    at up to ceil(k / stride)^3 taps of its phase, grad_input ("fprop") C_out channels at all k^3 taps."""
    if op == "dgrad":
        return p.c_in * (-(-p.k // p.stride)) ** 3
    return p.c_out * p.k ** 3


def _packed_ncdhw(t: torch.Tensor) -> bool:
    return t.dim() == 5 and t.is_contiguous() and not t.is_contiguous(memory_format=torch.channels_last_3d)


# The raw ring takes the place of one halo stage; with a single stage left, the rounders and the MMAs
# would take turns.
NCDHW_INPUT_MIN_STAGES = 2


# The exact-fp32 strided forward's NCDHW x: read from a channels_last_3d copy (True, reads_ncdhw's v0.61 figures) or
# gathered in place (False). H200 (v0.84, selab.py, 3 ABBA rounds, with its NCDHW output): gathered, the forwards of
# U-Net and 3D-GAN 128->64 and 3D-GAN 64->32 ran 0.917x, 0.905x, 0.962x and their steps 0.958x, 0.958x, 0.989x, for no
# lower peak (x is a quarter of y there, and the peak is y's copies).
SIMT_STRIDED_FORWARD_X_COPY = True


# The implicit-GEMM 3xtf32 rows of 16-wide tiles read an NCDHW grad_y in place in a unit-stride grad_input
# (csrc/igemm_sm90.cuh, IN_NC: rows of 24 positions along w per channel) instead of a channels_last_3d copy of it,
# so that the backward's peak holds no copy beside grad_x (GRAD_INPUT_READS_NCDHW). Its stages take twice the TMA box
# rows of the channels_last_3d form. H200, call609, selab.py, 3 ABBA rounds, NCDHW, the forward's x read so against
# our transpose and the channels_last_3d kernel: 3xtf32 U-Net 64->32 and SR x2 forwards 1.06x and 1.08x faster (x
# of 128 and 108 MiB), 128->64 unit-stride (x 32 MiB) 1.34x slower; tf32 forwards of U-Net and 3D-GAN 128->64 and
# U-Net outpad 1.13-1.27x slower (the TMA unit's rows per stage about a tf32 stage's MMA time). So the forwards
# keep the copy, and the tf32 rows never take the form (the kernel has no such instantiation).
# CONVT3D_IGEMM_NCDHW=0 turns it off (for A/B runs).
IGEMM_READS_NCDHW = os.environ.get("CONVT3D_IGEMM_NCDHW", "1") != "0"


def reads_ncdhw(k, table, c_r: int, t: torch.Tensor, sum_phases: bool = False,
                strided_forward: bool = False, s_in: Optional[int] = None) -> bool:
    """Whether row k takes its input t (x of the forward, grad_y of grad_input: [N, c_r, D, H, W]) in its
    NCDHW storage (its in_ncdhw mode) instead of a channels_last_3d copy, t being packed NCDHW. The
    exact-fp32 rows gather any such t 4 bytes at a time (FFMA-bound, they hide it), except over grad_y's
    parities (``sum_phases``: positions stride apart leave half of each sector unused; 5-15% slower
    than the kernel on a converted copy, v0.17) and in a strided forward (``strided_forward``: each output
    phase gathers its own x halo for its few taps, 1 to 8 of 27 at k3 s2, so the gathers per FFMA grow
    about stride^3-fold; same-process A/B on the H200, v0.61: the eight strided fp32 sweep layers'
    forwards 1.04-1.11x and steps 1.01-1.04x faster on our channels_last_3d copy, the unit-stride ones
    0.98-1.06x); the warp-specialized Hopper rows need W a multiple of 4 (TMA's 16-byte row strides) and
    the filter resident beside the raw boxes with at least NCDHW_INPUT_MIN_STAGES halo stages (``table``:
    the pass's phase table); the implicit-GEMM rows only grad_input's (``s_in``: its stride, None in the forward) at
    unit stride on the 3xtf32 rows of 16-wide tiles, W a multiple of 4 (IGEMM_READS_NCDHW). The patch
    rows read either layout in place (a gather of 4 bytes per element either way, lanes along positions in
    NCDHW)."""
    return _packed_ncdhw(t) and reads_ncdhw_shape(k, table, c_r, t.shape[4], sum_phases, strided_forward, s_in)


def reads_ncdhw_shape(k, table, c_r: int, w: int, sum_phases: bool = False, strided_forward: bool = False,
                      s_in: Optional[int] = None) -> bool:
    """``reads_ncdhw`` by the input's width w alone, its tensor assumed packed NCDHW (the eager node's plan is made
    before grad_y exists)."""
    if k.family == "patch":
        return True
    if k.simt and k.op != "wgrad":
        return not sum_phases and not (strided_forward and SIMT_STRIDED_FORWARD_X_COPY)
    if k.family == "igemm" and k.op != "wgrad":
        return IGEMM_READS_NCDHW and k.split and k.block[2] == 16 and s_in == 1 and w % 4 == 0
    if not (k.family == "wgmma" and k.ws and not k.wf and w % 4 == 0):
        return False
    return _reads_ncdhw_fits(k, tuple(table), c_r)


@functools.lru_cache(maxsize=1024)
def _reads_ncdhw_fits(k, table: Tuple[int, ...], c_r: int, rows: bool = False) -> bool:
    taps = _wgmma_taps(table, k.kx)
    if taps is None:
        return False
    r = _wgmma_smem(k.block, k.kx, k.bn, k.warpgroups, k.stages, *taps, c_r, True, k.split, True, k.rs, rows)
    return r is not None and r.stages >= min(NCDHW_INPUT_MIN_STAGES, -(-c_r // KC))


def ring_sums(k) -> bool:
    """Whether ws row k has the instantiation whose ring rounders sum an NCDHW input and write its
    channels_last copy (Config::RING_SUMS in csrc/direct_sm90.cuh): the SS form, two consumer warpgroups, up to
    160 accumulators per thread (its producer keeps 104 registers, leaving the consumers 200)."""
    if not (k.family == "wgmma" and k.ws and not k.wf and not k.rs and k.warpgroups == 2):
        return False
    mb = k.block[0] * k.block[1] // 4 // k.warpgroups
    return mb * k.kx * k.bn // 2 <= 160


# grad_input copies an NCDHW grad_y for grad_weight where its row can (copies_input). Off by default: measured
# in v0.53 (same process, GPU time, 5 ABBA rounds) the headline's tf32 step loses 0.972x (grad_input with the
# sums and the copy 2.69 ms against 2.05 from the converted grad_y plus the 0.55 ms conversion) while SR head's
# gains 1.035x; the rounders' summing pass, which bounds the kernel (ncu), costs 0.45 ms on the headline's
# 96-wide variant, about what the conversion saved. Since v0.54's one-instruction rounding (H200): headline
# 1.001x, SR head 1.042x; v0.62 (5 ABBA rounds): headline 0.981x, SR head 1.022x (3xtf32 1.015x), the only sweep
# rows it takes, so it stays off. CONVT3D_COPY_GRAD_Y=1 turns it on (docs/performance.md, v0.52-v0.54, v0.62).
COPY_GRAD_Y = os.environ.get("CONVT3D_COPY_GRAD_Y", "0") == "1"


def copies_input(k, table, c_r: int, in_spatial) -> bool:
    """Whether grad_input row k can read grad_y [N, c_r, *in_spatial] in its packed NCDHW storage and, as it
    reads it, sum it per channel (the bias gradient) and write its channels_last_3d copy (the direct op's
    in_sums and in_copy), so that grad_weight reads that copy and nothing converts grad_y before the
    backward. ``table``: grad_input's one phase. The ring form's rounders do it (``ring_sums``), under the
    input sums' ownership rule (``sums_input``), with 32-bit offsets into each sample of the copy (d * h * w *
    c_r < 2^31); rows of W % 4 != 0 come as one TMA box per halo row of a map over each plane's H x W
    positions, which needs H * W % 4 == 0 (16-byte plane strides)."""
    d, h, w = in_spatial
    if not COPY_GRAD_Y or not ring_sums(k) or c_r % 4 != 0 or (w % 4 != 0 and h * w % 4 != 0):
        return False
    if d * h * w * c_r >= 2 ** 31:
        return False
    if not sums_input(k, table, in_spatial, 1, c_r):
        return False
    return _reads_ncdhw_fits(k, tuple(table), c_r, w % 4 != 0)


# Rows of input sums per CTA of the warp-specialized Hopper kernel: one per rounder warp (SUM_ROWS in
# csrc/direct_sm90.cuh).
SUM_ROWS_PER_CTA = 3


# The implicit-GEMM grad_input's input sums (csrc/igemm_sm90.cuh, IgemmConfig::SUM_CHUNKS and SUM_ROWS): each
# consumer thread keeps its channels' sums in registers, four chunks of 32 channels (so C_r up to 128), and the
# CTA adds its eight consumer warps' shared rows of C_r floats at the end.
IGEMM_SUM_MAX_CR = 128
IGEMM_SUM_ROWS = 8


def igemm_sum_window(table, in_spatial, s_in: int):
    """Per axis the first tap a of a window [a, a + s_in) of the one phase in ``table`` whose reads of an
    input of spatial size ``in_spatial`` count each input position exactly once (csrc/igemm_sm90.cuh,
    IgemmGeometry::sum_a: tile position q at tap t reads s_in * q + dmin + t, so over q the window's reads
    tile [dmin + a, s_in * count + dmin + a) without overlap, which must span the input); None where an
    axis has no such window."""
    if len(table) != 13:
        return None
    count, dmin, taps = table[3:6], table[6:9], table[9:12]
    window = []
    for a in range(3):
        first = max(0, in_spatial[a] - s_in * count[a] - dmin[a])
        if count[a] <= 0 or first > -dmin[a] or first + s_in > taps[a]:
            return None
        window.append(first)
    return tuple(window)


def sums_input(k, table, in_spatial, s_in: int = 1, c_r: int = 0) -> bool:
    """Whether row k can also sum its input over positions, per channel, as it reads it (the ``in_sums``
    buffer of the direct op): grad_input's bias gradient from the grad_y it reads anyway, instead of a
    pass of its own over grad_y (``table``: the one phase of grad_input on an input of spatial size
    ``in_spatial``, s_in its stride, c_r its channels).

    The warp-specialized Hopper rows (unit stride) round the input in their producer warps: each tile
    counts its halo up to where the next tile's starts (the last tile along an axis, all of it), so the
    halos must start at or before the input and the last ones reach its end (csrc/direct_sm90.cuh,
    sums_cover). The tf32 implicit-GEMM rows (any stride) sum the input boxes they load at the taps of
    ``igemm_sum_window``, in their consumer warps' registers (c_r up to IGEMM_SUM_MAX_CR), and add the eight
    warps' shared rows of c_r floats at the end."""
    if k.family == "igemm" and k.op == "direct" and not k.split:
        smem = igemm_smem_bytes(k.bn, k.stages) + IGEMM_SUM_ROWS * 4 * c_r
        return (0 < c_r <= IGEMM_SUM_MAX_CR and smem <= SM90_SMEM_OPTIN
                and igemm_sum_window(table, in_spatial, s_in) is not None)
    if not (k.family == "wgmma" and k.ws and not k.wf) or len(table) != 13:
        return False
    count, dmin, taps = table[3:6], table[6:9], table[9:12]
    if taps[2] > k.kx:
        return False
    halo = (k.block[0] + max(taps[0] - 1, 0), k.block[1] + max(taps[1] - 1, 0), 16)
    for a in range(3):
        tiles = -(-count[a] // k.block[a])
        if count[a] <= 0 or dmin[a] > 0 or (tiles - 1) * k.block[a] + dmin[a] + halo[a] < in_spatial[a]:
            return False
    return True


# The swapped implicit-GEMM grad_weight rows (igemm_wgrad ..._sw) take an NCDHW x by TMA as the K-major x^T
# their transposing warps otherwise build (csrc/igemm_wgrad_sm90.cuh, XN). False: they read a channels_last_3d
# copy as before (A/B knob).
IGEMM_WGRAD_NCDHW_X = True


def wgrad_reads_ncdhw(k, x: torch.Tensor) -> bool:
    """Whether grad_weight row k takes x [N, C_in, D, H, W] in its NCDHW storage (its x_ncdhw mode)
    instead of a channels_last_3d copy, x being packed NCDHW (not channels_last_3d already). The
    exact-fp32 rows gather any such x 4 bytes at a time; the Hopper rows need W a multiple of 4 (TMA's
    16-byte row strides) and an x tile of a multiple of 4 granules of 8 positions and of 4 channels
    (the bank-spread lane walk of the staging); the swapped implicit-GEMM rows W a multiple of 4 and
    rows of 8 or 16 positions (IGEMM_WGRAD_NCDHW_X); the patch row any; the others read NDHWC only."""
    if k.simt and k.op == "wgrad" or k.family == "patch":
        return _packed_ncdhw(x)
    if k.family == "igemm" and k.op == "wgrad" and k.swap:
        return (IGEMM_WGRAD_NCDHW_X and _packed_ncdhw(x) and x.shape[4] % 4 == 0 and k.block[2] in (8, 16))
    return (k.family == "wgmma" and k.op == "wgrad" and _packed_ncdhw(x) and x.shape[4] % 4 == 0
            and (k.block[1] * k.block[2] // 8) % 4 == 0 and k.bn % 4 == 0)


# The FFMA grad_weight row of 64 C_in rows reads an NCDHW x and grad_y in place (csrc/ffma_wgrad.cuh, NC: K-major
# stages, x by 16-byte copies along positions, grad_y by 4-byte copies with a warp's lanes on consecutive positions),
# so that an NCDHW layer's backward copies neither. H200 (v0.83, bench/tools/selab.py direct.FFMA_WGRAD_NCDHW, 3
# ABBA rounds, fp32 NCDHW, off / on): grad_weight alone (which converts both operands for the other form) 1.12-1.13x on
# U-Net 64->32, SR x2 and U-Net outpad (64-row tile), step 0.991-0.999x there (grad_input still takes grad_y's copy),
# peak 12 MiB lower; the 128-row tile's NC kernel (one CTA of 8 warps at 254 registers, against two of the
# channels_last_3d form) lost: medium's step 0.950x (no conversion left at all, peak 32 -> 16 MiB), V-Net up 0.979x,
# U-Net 128->64 0.990x. So the 64-row tile only (NCDHW_ROWS). False: channels_last_3d copies everywhere (A/B runs).
FFMA_WGRAD_NCDHW = True
FFMA_WGRAD_NCDHW_ROWS = (64,)


def _ffma_nc_fits(p: Problem) -> bool:
    """The FFMA NC modes' extents (their can_implement): x's positions per sample a multiple of 4 (16-byte copies or
    stores of 4 positions stay in one sample), a byte of tap bits per axis, grad_y's element indices in 32 bits."""
    return math.prod(p.spatial) % 4 == 0 and p.k <= 8 and p.n * p.c_out * math.prod(p.out_spatial) < 2 ** 31


def ffma_wgrad_reads_ncdhw(k, p: Problem) -> bool:
    """Whether FFMA grad_weight row k takes x [N, C_in, D, H, W] and grad_y [N, C_out, Do, Ho, Wo] of layer p in
    their packed NCDHW storage (the kernel's NC mode, ConvLaunch::ncdhw) where both are so stored: the tiles of
    FFMA_WGRAD_NCDHW_ROWS (the kernel has the mode on its 64- and 128-row tiles), x's positions per sample a
    multiple of 4 (its 16-byte copies stay in one sample), grad_y's element indices in 32 bits (its can_implement)."""
    return (FFMA_WGRAD_NCDHW and k.family == "ffma" and k.op == "wgrad" and k.tile[0] in FFMA_WGRAD_NCDHW_ROWS
            and _ffma_nc_fits(p))


# The FFMA grad_weight tiles without an NC mode (the 32-row tile: its position table reads grad_y by positions, not
# by K-major rows) take an NCDHW layer's x and grad_y from channels_last_3d copies. Whole, those copies are as large
# as x and grad_y: V-Net refine's exact-fp32 NCDHW step held 44 MiB at its peak against cuDNN's 16, all of it
# grad_weight's (x's copy 32, grad_y's 16, the partial sums 12; bench/tools/mempeak.py, v0.87). By depth slabs of x
# (ffma_wgrad_slabs), each slab's x and the window of grad_y its taps reach are converted alone into buffers
# reused across slabs, and the kernel runs once per slab with the window's own front padding (ConvLaunch takes
# pad_d apart from pad_h and pad_w, and the extents as given); each slab's partial sums are summed in a fixed order
# into its part of the gradient, the parts in slab order, so the result stays bitwise reproducible. Each launch keeps
# the whole plan's slices (a full wave of CTAs over a slab's positions). H200 (v0.87, bench/tools/selab.py
# direct.FFMA_WGRAD_SLABS, 3 ABBA rounds, fp32 NCDHW, call604): V-Net refine step peak extra 44 -> 16 MiB (cuDNN
# autotuned 16 in the mempeak run, 48 in selab's process) for a step of 0.982x (grad_weight alone, which converts
# grad_y for itself either way, 0.871x); 8 slabs against 4: grad_weight 0.970x, step 0.985x at the same 16 MiB. A slab
# costs four launches (two conversions, the kernel, its partial sums' reduction), so a layer whose x is small, where
# the copies are a few MiB and the host's launches set its pace, keeps the whole pass: at most one slab per
# FFMA_WGRAD_SLAB_MIN_BYTES of x. FFMA_WGRAD_SLABS = 1: whole copies (A/B).
FFMA_WGRAD_SLABS = 4
FFMA_WGRAD_SLAB_ROWS = (32,)
FFMA_WGRAD_SLAB_MIN_BYTES = 4 << 20


class WgradSlab(NamedTuple):
    """One depth slab of the sliced grad_weight: x's depths [z0, z1), grad_y's depths [a0, a1) that their taps reach
    (a0 == a1: none), and the conv's front padding along depth relative to a0."""
    z0: int
    z1: int
    a0: int
    a1: int
    pad_d: int


def ffma_wgrad_slabs(k, p: Problem) -> Tuple[WgradSlab, ...]:
    """The depth slabs in which FFMA grad_weight row k runs layer p where its x [N, C_in, D, H, W] and grad_y
    [N, C_out, Do, Ho, Wo] are packed NCDHW (policy above): FFMA_WGRAD_SLABS of them (at most D, and at most one per
    FFMA_WGRAD_SLAB_MIN_BYTES of x; x's depths split evenly) on the tiles of FFMA_WGRAD_SLAB_ROWS that have no NC mode
    here; () where the pass runs whole."""
    thin = k.family == "ffma" and k.op == "wgrad" and k.tile[0] in FFMA_WGRAD_SLAB_ROWS
    if not thin or ffma_wgrad_reads_ncdhw(k, p):
        return ()
    d, do = p.spatial[0], p.out_spatial[0]
    x_bytes = 4 * p.n * p.c_in * math.prod(p.spatial)
    count = min(FFMA_WGRAD_SLABS, d, x_bytes // max(FFMA_WGRAD_SLAB_MIN_BYTES, 1))
    if count <= 1:
        return ()
    slabs = []
    for i in range(count):
        z0, z1 = d * i // count, d * (i + 1) // count
        # x's depth z reaches grad_y's depths z * stride - padding + t, 0 <= t < k
        first, last = z0 * p.stride - p.padding, (z1 - 1) * p.stride - p.padding + p.k
        a0, a1 = max(0, first), min(do, last)
        if a1 <= a0:
            a0 = a1 = max(0, min(first, do))
        slabs.append(WgradSlab(z0, z1, a0, a1, a0 - first))
    return tuple(slabs)


# The FFMA grad_input row reads an NCDHW grad_y and writes an NCDHW grad_x in place (csrc/ffma_fprop.cuh, NC: positions
# along GEMM M, A's stage [k][m] by 4-byte copies with a warp's lanes on consecutive positions, grad_x by 16-byte stores
# of 4 positions). With the grad_weight row's NC mode beside it the backward converts nothing, so its peak holds no
# copy of grad_y. H200 (v0.83, selab.py direct.FFMA_FPROP_NCDHW, 3 ABBA rounds, fp32 NCDHW, off / on): step peak extra
# MiB U-Net 64->32 1000 -> 500, SR x2 837 -> 419, U-Net outpad 128 -> 64 (cuDNN autotuned, same process: 628, 527,
# 80), for steps 0.975x, 0.971x, 0.915x (call584; 0.967x, 0.965x, 0.936x before the loaders' addresses went
# unselected). Since v0.84's k loop not unrolled (csrc/ffma_fprop.cuh, the NC kernel 1.04-1.19x the channels_last_3d
# kernel's time, from 1.20-1.40x): grad_input alone, against the copy form with the conversions the NC one saves,
# 1.06x, 1.10x, 1.23x, and the steps 0.995x, 0.991x, 0.988x (call592; the bias gradient takes a read of grad_y of its
# own). Taken for the memory: a drop-in layer whose backward needs twice cuDNN's transient memory fails models that fit
# with cuDNN. False: channels_last_3d grad_y in, grad_x out (A/B runs).
FFMA_FPROP_NCDHW = True


def ffma_fprop_reads_ncdhw(k, p: Problem) -> bool:
    """Whether FFMA grad_input row k reads grad_y [N, C_out, Do, Ho, Wo] and writes grad_x [N, C_in, D, H, W] of layer
    p in packed NCDHW storage (the kernel's NC mode, ConvLaunch::ncdhw) where grad_y is so stored and grad_x so wanted:
    grad_x's positions per sample a multiple of 4 (its 16-byte stores stay in one sample), grad_y's element indices in
    32 bits (its can_implement)."""
    return FFMA_FPROP_NCDHW and k.family == "ffma" and k.op == "fprop" and _ffma_nc_fits(p)


# The pair rule, memory first: NCDHW exact-fp32 layers of FFMA_NC_PAIR_MIN_CIN < C_in <= FFMA_NC_PAIR_MAX_CIN whose
# forward writes NCDHW itself (unit stride, or a strided forward summing at most FFMA_NC_PAIR_MAX_REDUCTION products
# per output element, past SIMT_STRIDED_NCDHW_MAX_REDUCTION) take grad_input on the FFMA row where the stock SIMT GEMM
# would run it (past selector.FFMA_FPROP_MAX_CIN) and grad_weight on the FFMA 64-row tile instead of
# the 128-row one, both in their NC modes. Why all of it: U-Net and 3D-GAN 128->64 held twice cuDNN's step memory in
# two copies as large as y, the forward's channels_last_3d y before our transpose and the backward's grad_y copy, and
# removing either alone left the peak where it was (v0.84). H200 (v0.85, bench/tools/selab.py
# direct.FFMA_NC_PAIR_MAX_CIN 64,128, 3 ABBA rounds, fp32 NCDHW, call594): step peak extra MiB U-Net 128->64 244 ->
# 122, 3D-GAN 128->64 233 -> 116 (cuDNN autotuned, same process: 155, 149; 122 and 116 in call596's sweep), for
# steps 0.933x / 0.926x (forwards 0.940x / 0.972x; the FFMA grad_input at 128 channels is why FFMA_FPROP_MAX_CIN stops
# at 64); medium (unit stride: grad_weight's copy is its only one) 32 -> 16 for 0.973x (call594) and 0.958x
# (call597; cuDNN 49 in both processes, 16 in call596's sweep). Where the forward keeps its copy (V-Net up k5,
# reduction 3456) the backward's part alone cost 0.937x for 51 -> 47 MiB (cuDNN 72): hence the bound. MAX_CIN 32: off.
# Since v0.86 the pair also takes 33-64 channels, forward reductions up to 1728, and the tap-reuse grad_input rows
# that sum grad_y's parities from a channels_last_3d copy (sums_parities; FFMA_NC_PAIR_PARITY), not only the stock
# SIMT GEMM: for 3D-GAN k5 64->32, whose forward's y copy and that grad_input's grad_y copy each held its step at
# twice cuDNN's memory, as on the 128->64 rows. H200 (v0.86, call598, bench/tools/selab.py --set
# MAX_REDUCTION=1728 --set PARITY=1 direct.FFMA_NC_PAIR_MIN_CIN 64,32, 3 ABBA rounds, fp32 NCDHW): 3D-GAN k5 64->32
# step peak extra 977 -> 488 MiB (cuDNN autotuned 1235 in that process, 488 in v0.85's sweep), grad_input 1.015x
# (the FFMA row in its NC mode 7.155 ms against the parity row's 7.259), step 1.001x. The other 64-channel sweep
# layers select the same kernels either way (U-Net 64->32, SR x2, U-Net outpad, video-gen: steps 0.993-1.001x).
# The FFMA row against the parity row channels_last_3d (bench --configs, call598): 6.310 / 7.115 ms.
FFMA_NC_PAIR_MIN_CIN = 32
FFMA_NC_PAIR_MAX_CIN = 128
FFMA_NC_PAIR_MAX_REDUCTION = 1728
FFMA_NC_PAIR_PARITY = True


def nc_pair(p: Problem) -> bool:
    """Whether NCDHW exact-fp32 layer p takes the pair rule above: both FFMA rows in their NC modes (where their
    knobs allow it, the extents fit and the channels are multiples of 4, as the FFMA rows' 16-byte copies need) and
    the forward's NCDHW output."""
    return (FFMA_NC_PAIR_MIN_CIN < p.c_in <= FFMA_NC_PAIR_MAX_CIN and p.c_in % 4 == 0 and p.c_out % 4 == 0
            and FFMA_FPROP_NCDHW and FFMA_WGRAD_NCDHW and 64 in FFMA_WGRAD_NCDHW_ROWS and _ffma_nc_fits(p)
            and (p.stride == 1 or reduction_length(p, "dgrad") <= FFMA_NC_PAIR_MAX_REDUCTION))


# In 3xtf32, grad_input's tensor-core rows read the backward's NCDHW grad_y in place where they can (reads_ncdhw_shape:
# the ring form of the warp-specialized rows, the implicit-GEMM rows at unit stride), after grad_weight has read its
# channels_last_3d copy and the copy is released: the step's peak then holds grad_x or that copy, never both (both:
# one y over cuDNN's peak, which converts nothing in fp32). Memory first, as the exact-fp32 rows' NC modes (v0.83).
# H200, call609, selab.py, 3 ABBA rounds, NCDHW 3xtf32 steps, on against off: video-gen 1.058x slower, peak 64 -> 32
# MiB (cuDNN's 32); medium 1.116x slower, 32 -> 27 (grad_weight's partial sums the peak then; cuDNN's 16); SR head
# 0.969x, 128 -> 64 (cuDNN's 64). tf32 keeps the shared copy, its peak far under cuDNN's either way: medium 1.279x
# and SR head 1.026x slower with the rule. CONVT3D_GRAD_INPUT_NCDHW=0 turns it off (for A/B runs).
GRAD_INPUT_READS_NCDHW = os.environ.get("CONVT3D_GRAD_INPUT_NCDHW", "1") != "0"


def grad_input_reads_grad_y(k, table, p: Problem) -> bool:
    """Whether grad_input's tap-reuse row k (``table``: its phase table) reads a packed NCDHW grad_y [N, C_out, Do,
    Ho, Wo] in place in the backward: the exact-fp32 and patch rows (backward_reads_grad_y) and, with
    GRAD_INPUT_READS_NCDHW, the 3xtf32 tensor-core rows that can (reads_ncdhw_shape)."""
    if backward_reads_grad_y(k, p):
        return True
    return (GRAD_INPUT_READS_NCDHW and k.split and k.family in ("wgmma", "igemm") and
            reads_ncdhw_shape(k, table, p.c_out, p.out_spatial[2], sums_parities(k, p), s_in=p.stride))


def backward_reads_grad_y(k, p: Problem) -> bool:
    """Whether the backward's row k (grad_input or grad_weight) reads a packed NCDHW grad_y in place, so
    that the backward need not convert it: the exact-fp32 rows, grad_input not over grad_y's parities, and the
    patch rows. Asked by launch.grad_y_in_place (the Python Function) and eager.plan_ints (the C++ node) alike."""
    return k.simt and not sums_parities(k, p) or k.family == "patch"


def wgrad_reads_gy_ncdhw(k, grad_y: torch.Tensor) -> bool:
    """Whether grad_weight row k takes grad_y [N, C_out, Do, Ho, Wo] in its NCDHW storage (its gy_ncdhw
    mode) instead of a channels_last_3d copy: the exact-fp32 rows, grad_y packed NCDHW (gathered 4 bytes
    at a time into halo rows padded to BN + 4 floats, as x)."""
    return (k.simt or k.family == "patch") and k.op == "wgrad" and _packed_ncdhw(grad_y)


def wgmma_wgrad_pw(k: int, stride: int, warpgroups: int, stages: int, split: bool) -> bool:
    """Whether the Hopper grad_weight kernel runs its warp-specialized form (csrc/direct_wgrad_sm90.cuh,
    WgmmaWgradKernel::pw): tf32, four warpgroups; at two stages k3 at any stride and k5 at unit stride, at
    three stages k3 and k5 at any stride."""
    return (not split and k in (3, 5) and warpgroups == 4 and stages in (2, 3) and
            (k == 3 or stages == 3 or stride == 1))


# The warp-specialized grad_weight's cost of a range (wgmma_wgrad_slices), in steps of one x plane: a CTA's
# start and its partial sum's store, and each further column it walks into (all k halo planes reloaded
# after the previous step's MMAs retire).
WGRAD_CTA_STEPS = 2
WGRAD_RUN_STEPS = 1


@functools.lru_cache(maxsize=256)
def wgmma_wgrad_slices(p: Problem, block: Tuple[int, int, int], bn: int, warpgroups: int, stages: int,
                       num_sms: int, max_partial_bytes: int = 256 << 20, split: bool = False,
                       ranges: bool = True) -> int:
    """Slices of the reduction, each one partial sum [k^3, C_in, C_out] (the kernel's grid: slices x
    C_out blocks x C_in blocks, one CTA per SM by registers and shared memory).

    The warp-specialized form (``wgmma_wgrad_pw``) splits the (column of 1 x TH x TW x tiles, x plane)
    pairs evenly over the slices, a CTA walking its range across columns: slices fill whole waves, so
    that the SMs finish together and each writes one partial sum (the headline: 132 partial sums, 16 MB,
    against 1152 whole depth segments, 143 MB, in 8.7 waves). ``ranges=False`` keeps the other form's
    rule (A/B runs). The other form's slices are columns times depth segments, chosen to minimise waves x
    (planes per segment + 2, a CTA's pipeline fill and store). Either way within max_partial_bytes of
    fp32 partial sums (one wave, or one segment, at least). Cached: it loops, once per layer shape
    instead of once per step.
    """
    d, h, w = p.spatial
    columns = p.n * -(-h // block[1]) * -(-w // block[2])
    cb = wgmma_wgrad_layout(p, block, warpgroups, stages)[0]
    blocks = -(-p.c_out // cb) * -(-p.c_in // bn)
    per_slice = 4 * p.k ** 3 * p.c_in * p.c_out
    best = None
    for segs in range(1, d + 1):
        if segs > 1 and columns * segs * per_slice > max_partial_bytes:
            break
        cost = -(-columns * segs * blocks // num_sms) * (-(-d // segs) + WGRAD_CTA_STEPS)
        if best is None or cost < best[0]:
            best = (cost, columns * segs)
    if not (ranges and wgmma_wgrad_pw(p.k, p.stride, warpgroups, stages, split)):
        return best[1]
    # Ranges: the slice count that fills 1, 2, ... waves, or the segments' (whose ranges are whole segments
    # where they divide the depth), by the longest range's steps, columns it walks into counted.
    total = columns * d
    candidates = {best[1]} | {min(total, max(1, waves * num_sms // blocks)) for waves in range(1, 17)}
    best = None
    for g in sorted(candidates):
        if best is not None and g * per_slice > max_partial_bytes:
            break
        longest = 0
        share, extra = divmod(total, g)
        for i in range(g):  # the kernel's split: the first `extra` ranges one pair longer
            q0 = i * share + min(i, extra)
            q1 = q0 + share + (i < extra)
            if q1 > q0:
                longest = max(longest, q1 - q0 + WGRAD_RUN_STEPS * ((q1 - 1) // d - q0 // d))
        cost = -(-g * blocks // num_sms) * (longest + WGRAD_CTA_STEPS)
        if best is None or cost < best[0]:
            best = (cost, g)
    return best[1]
