"""Times the NCDHW <-> channels_last_3d conversions: our transpose kernel against torch's copy.

  python -m bench.layout_copy      (headline tensors: x 8x48x96^3 and y 8x24x98^3)
"""
import torch

from .timing import bench


def main():
    from convt3d_cutlass import _extension
    from convt3d_cutlass.layouts import CL, ndhwc, to_format
    if not _extension.available():
        raise SystemExit(f"needs the extension: {_extension.unavailable_reason()}")
    for shape in [(8, 48, 96, 96, 96), (8, 24, 98, 98, 98)]:
        x = torch.randn(shape, device="cuda")
        y = x.contiguous(memory_format=CL)
        gb = 2 * x.numel() * 4 / 1e9  # read + write
        a, b = bench(lambda: ndhwc(x)), bench(lambda: x.contiguous(memory_format=CL))
        c, d = bench(lambda: to_format(y, False)), bench(lambda: y.contiguous())
        print(f"{shape}: to NDHWC ours {a:.3f} ms ({gb / a:.2f} TB/s) torch {b:.3f} ms | "
              f"to NCDHW ours {c:.3f} ms ({gb / c:.2f} TB/s) torch {d:.3f} ms")


if __name__ == "__main__":
    main()
