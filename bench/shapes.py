"""Benchmark cases. The headline case is the default run; SWEEP is a realistic set of
ConvTranspose3d layers from 3D networks, chosen from the architectures, not from our kernels."""
from dataclasses import dataclass
from typing import Tuple

from convt3d_cutlass.problem import Problem, out_size


@dataclass(frozen=True)
class Case:
    name: str
    n: int
    c_in: int
    c_out: int
    spatial: Tuple[int, int, int]
    k: int
    stride: int = 1
    padding: int = 0
    output_padding: int = 0
    source: str = ""

    @property
    def flops(self) -> float:
        return self.problem().flops()

    def problem(self) -> Problem:
        """The layer as the package plans it (x [N, C_in, D, H, W] and the cubic kernel)."""
        return Problem(self.n, self.c_in, self.c_out, self.spatial, self.k, self.stride, self.padding,
                       self.output_padding)

    def to_json(self) -> dict:
        """The fields as JSON values, for a worker process (bench.cudnn_defaults) to rebuild the case with
        ``Case.from_json``: a ``--shape`` case is in no table the worker could look it up in."""
        return dict(name=self.name, n=self.n, c_in=self.c_in, c_out=self.c_out, spatial=list(self.spatial), k=self.k,
                    stride=self.stride, padding=self.padding, output_padding=self.output_padding, source=self.source)

    @staticmethod
    def from_json(d: dict) -> "Case":
        return Case(**dict(d, spatial=tuple(d["spatial"])))

    def label(self) -> str:
        s = "x".join(map(str, self.spatial))
        op = f" op{self.output_padding}" if self.output_padding else ""
        return (f"{self.name} N{self.n} {self.c_in}->{self.c_out} {s} k{self.k} s{self.stride} "
                f"p{self.padding}{op}")


HEADLINE = Case("headline", 8, 48, 24, (96, 96, 96), 3, 1, 0, source="the project's seed case")

SWEEP = (
    HEADLINE,
    Case("unet3d-dec1", 2, 256, 128, (16, 16, 16), 3, 2, 1, source="3D U-Net decoder, deepest level"),
    Case("unet3d-dec2", 2, 128, 64, (32, 32, 32), 3, 2, 1, source="3D U-Net decoder"),
    Case("unet3d-dec3", 2, 64, 32, (64, 64, 64), 3, 2, 1, source="3D U-Net decoder, last up"),
    Case("unet3d-k2", 2, 64, 32, (32, 32, 32), 2, 2, 0, source="3D U-Net k2s2 up (even kernel)"),
    Case("vnet-up", 1, 128, 64, (24, 24, 24), 5, 2, 2, source="V-Net up-convolution k5"),
    Case("vnet-refine", 1, 32, 16, (64, 64, 64), 5, 1, 2, source="V-Net k5 refinement"),
    Case("gan3d-g1", 16, 256, 128, (8, 8, 8), 3, 2, 1, source="3D GAN generator, early"),
    Case("gan3d-g2", 16, 128, 64, (16, 16, 16), 3, 2, 1, source="3D GAN generator"),
    Case("gan3d-g3", 16, 64, 32, (32, 32, 32), 5, 2, 2, source="3D GAN generator, late k5"),
    Case("video-gen", 4, 64, 32, (16, 64, 64), 3, 1, 1, source="video generator (T x H x W)"),
    Case("sr-head", 1, 32, 8, (128, 128, 128), 3, 1, 1, source="volumetric super-resolution head"),
    Case("sr-up2", 4, 64, 32, (48, 48, 48), 3, 2, 1, source="super-resolution x2 upsampler"),
    Case("medium", 2, 128, 64, (32, 32, 32), 3, 1, 1, source="128->64 decoder block"),
    Case("unet-outpad", 2, 64, 32, (32, 32, 32), 3, 2, 1, 1, source="U-Net exact x2 (output_padding=1)"),
)

SHAPE_FORMAT = "N,C_in,C_out,D,H,W,k[,stride[,padding[,output_padding]]]"


def parse_shape(spec: str) -> Case:
    """A layer of the user's own for ``--shape``: x [N, C_in, D, H, W] -> ConvTranspose3d(C_in, C_out, k, stride,
    padding, output_padding), written as SHAPE_FORMAT (stride 1, padding 0, output_padding 0 when left out).
    Raises ValueError naming the argument, the format and what is wrong."""
    parts = [s.strip() for s in spec.split(",")]
    if not 7 <= len(parts) <= 10:
        raise ValueError(f"--shape {spec!r}: expected {SHAPE_FORMAT} (7 to 10 integers), got {len(parts)} fields")
    try:
        v = [int(s) for s in parts]
    except ValueError:
        raise ValueError(f"--shape {spec!r}: expected integers in {SHAPE_FORMAT}") from None
    n, ci, co, d, h, w, k = v[:7]
    s, p, op = v[7:] + [1, 0, 0][len(v) - 7:]  # the defaults of the fields left out
    if min(n, ci, co, d, h, w, k, s) < 1 or p < 0 or op < 0:
        raise ValueError(f"--shape {spec!r}: N, channels, sizes, k and stride must be >= 1, padding and "
                         f"output_padding >= 0")
    if op >= s:
        raise ValueError(f"--shape {spec!r}: output_padding must be smaller than stride (ConvTranspose3d's rule)")
    if min(out_size(x, k, s, p, op) for x in (d, h, w)) < 1:
        raise ValueError(f"--shape {spec!r}: the output would be empty (padding too large for this input and k)")
    name = f"N{n}-{ci}to{co}-{d}x{h}x{w}-k{k}s{s}p{p}" + (f"op{op}" if op else "")
    return Case(name, n, ci, co, (d, h, w), k, s, p, op, source="--shape")


def select_cases(sweep: bool = False, names: str = None, shapes=()) -> tuple:
    """The cases a run measures: ``names`` (comma list of sweep case names, sweep order) and ``shapes``
    (SHAPE_FORMAT strings) where given, else the sweep or the headline. Raises ValueError on an unknown name,
    listing the known ones, or a malformed shape."""
    chosen = []
    if names:
        wanted = [s.strip() for s in names.split(",") if s.strip()]
        known = {c.name for c in SWEEP}
        unknown = [s for s in wanted if s not in known]
        if unknown:
            raise ValueError(f"--cases: unknown case(s) {', '.join(unknown)}; known: {', '.join(c.name for c in SWEEP)}")
        chosen = [c for c in SWEEP if c.name in set(wanted)]
    chosen += [parse_shape(s) for s in shapes]
    if chosen:
        return tuple(chosen)
    return SWEEP if sweep else (HEADLINE,)
