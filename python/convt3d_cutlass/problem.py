"""Problem geometry: output sizes, the three implicit GEMMs, and the stride phase decomposition.

Pure Python (no torch) so the selector and its tests run anywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple


def out_size(size: int, k: int, stride: int, padding: int, output_padding: int = 0) -> int:
    """ConvTranspose output extent at dilation 1 (output_padding < stride adds rows at the far end)."""
    return (size - 1) * stride - 2 * padding + k + output_padding


@dataclass(frozen=True)
class Problem:
    """One ConvTranspose3d layer: x [N, C_in, D, H, W] -> y [N, C_out, Do, Ho, Wo], cubic k (odd or
    even). ``output_padding`` (< stride) extends each output axis at its far end; those positions
    are ordinary outputs of their stride phase (some receive taps when padding > 0)."""

    n: int
    c_in: int
    c_out: int
    spatial: Tuple[int, int, int]
    k: int
    stride: int = 1
    padding: int = 0
    output_padding: int = 0

    @classmethod
    def of(cls, x, weight, stride: int, padding: int, output_padding: int = 0) -> "Problem":
        """The layer of x [N, C_in, D, H, W] and weight [C_in, C_out, k, k, k] (anything with ``.shape``)."""
        return cls(x.shape[0], x.shape[1], weight.shape[1], tuple(x.shape[2:]), weight.shape[2], stride, padding,
                   output_padding)

    @property
    def out_spatial(self) -> Tuple[int, int, int]:
        return tuple(out_size(s, self.k, self.stride, self.padding, self.output_padding) for s in self.spatial)

    def gemm(self, op: str) -> Tuple[int, int, int]:
        """(M, N, K) of the implicit GEMM for op in {"dgrad", "fprop", "wgrad"} (stride-1 view for dgrad)."""
        d, h, w = self.spatial
        do, ho, wo = self.out_spatial
        taps = self.k ** 3
        if op == "dgrad":
            return self.n * do * ho * wo, self.c_out, self.c_in * taps
        if op == "fprop":
            return self.n * d * h * w, self.c_in, self.c_out * taps
        if op == "wgrad":
            return self.c_in, self.c_out * taps, self.n * d * h * w
        raise ValueError(f"op must be one of 'dgrad', 'fprop', 'wgrad', got {op!r}")

    def flops(self) -> float:
        """Useful multiply-adds x 2 of one pass (every pass of the layer does the same work)."""
        d, h, w = self.spatial
        return 2.0 * self.n * d * h * w * self.c_in * self.c_out * self.k ** 3


@dataclass(frozen=True)
class AxisPhase:
    """One output phase along one axis of a strided transposed conv.

    Outputs o = first + stride * m (m < count) receive taps t = r + stride * j (j < taps) from
    inputs i = m + pad - j: a unit-stride transposed conv with front padding ``pad``.
    """

    r: int
    first: int
    count: int
    taps: int
    pad: int


def axis_phases(size: int, k: int, stride: int, padding: int, output_padding: int = 0) -> List[AxisPhase]:
    out = out_size(size, k, stride, padding, output_padding)
    phases = []
    for r in range(stride):
        first = (r - padding) % stride
        count = len(range(first, out, stride))
        taps = len(range(r, k, stride))
        pad = (first + padding - r) // stride
        phases.append(AxisPhase(r, first, count, taps, pad))
    return phases


@dataclass(frozen=True)
class Phase:
    """A stride phase of the whole 3D problem: a unit-stride sub-problem on a sub-kernel."""

    axes: Tuple[AxisPhase, AxisPhase, AxisPhase]

    @property
    def count(self) -> Tuple[int, int, int]:
        return tuple(a.count for a in self.axes)

    @property
    def taps(self) -> Tuple[int, int, int]:
        return tuple(a.taps for a in self.axes)

    @property
    def pad(self) -> Tuple[int, int, int]:
        return tuple(a.pad for a in self.axes)

    @property
    def first(self) -> Tuple[int, int, int]:
        return tuple(a.first for a in self.axes)

    @property
    def r(self) -> Tuple[int, int, int]:
        return tuple(a.r for a in self.axes)

    @property
    def empty(self) -> bool:
        return min(self.count) == 0

    @property
    def no_taps(self) -> bool:
        return min(self.taps) == 0


def phases(p: Problem) -> List[Phase]:
    """The stride**3 unit-stride sub-problems whose outputs tile y exactly once.

    Each does only the MMAs its taps need: in total k^3 taps per input, as for stride 1, instead of
    the stride^3-fold work of a dgrad that predicates taps off.
    """
    per_axis = [axis_phases(s, p.k, p.stride, p.padding, p.output_padding) for s in p.spatial]
    return [Phase((a, b, c)) for a in per_axis[0] for b in per_axis[1] for c in per_axis[2]]
