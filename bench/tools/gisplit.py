"""Exact fp32 grad_input on the stock 4-warp 128x128 SIMT tile in 1-4 serial split-K slices (the op's
split_k), named layers, channels_last, each checked against float64; bench.timing medians over 5
alternating rounds (v0.21's selector.fprop_slices). Args: comma-separated layer names."""
import statistics
import sys

import torch
import torch.nn.functional as F

from bench.timing import bench
from bench.tools.common import layer_tensors
from convt3d_cutlass import launch
from convt3d_cutlass.layouts import empty_cl, ndhwc

NAME = "fprop_fp32_128x128x8_64x64x8_s3"
names = sys.argv[1].split(",") if len(sys.argv) > 1 else ["unet3d-dec1", "gan3d-g1", "vnet-up", "unet3d-dec2"]
for name in names:
    p, x, w, gy = layer_tensors(name)
    filt = launch.grad_input_filter(w, launch._plan(p, "fprop", "fp32", NAME, gy.device, None), p)
    G = ndhwc(gy)
    gx = empty_cl((p.n, p.c_in) + p.spatial, gy)

    def run(s):
        torch.ops.convt3d_cutlass.fprop(NAME, G, filt, None, gx.permute(0, 2, 3, 4, 1), [p.padding] * 3,
                                        [p.stride] * 3, s)
        return gx

    ref = F.conv3d(gy.double(), w.double(), None, p.stride, p.padding)
    for s in (1, 2, 3, 4):
        gx.fill_(float("nan"))
        e = ((run(s).double() - ref).norm() / ref.norm()).item()
        assert e < 1e-5, (name, s, e)
    res = {s: [] for s in (1, 2, 3, 4)}
    for _ in range(5):
        for s in res:
            res[s].append(bench(lambda: run(s), reps=15))
    sel = launch._plan(p, "fprop", "fp32", None, gy.device, None)
    print(f"{name:12s} " + "  ".join(f"slices {s}: {statistics.median(v):.3f}" for s, v in res.items())
          + f"  [selector: {sel.name}, {sel.slices} slices]", flush=True)
