"""Same-process A/B of the layout transpose: NCDHW -> channels_last_3d with the bias sums (layouts.channels_last_with_sums,
what the NCDHW backward runs on grad_y) and channels_last_3d -> NCDHW (layouts.to_format, e.g. a stock grad_input's
grad_x), v0.60's form (the tile sized to C) against v0.59's (CONVT3D_TRANSPOSE_V1=1, read at each launch; call454
also timed 16-byte loads of the NCDHW side as =2, since removed), CUDA events, median of many runs per round, ABBA rounds; TB/s counts one read and one write of the tensor.
Both forms must give the same bits (the copy and the sums).

    python bench/tools/transposeab.py [ROUNDS] [FORMS]   # FORMS: CONVT3D_TRANSPOSE_V1 values, default 1,0
"""
import os
import statistics
import sys

import torch

from bench.timing import bench
from convt3d_cutlass.layouts import CL, channels_last_with_sums, to_format

# (name, shape): the headline's grad_y and x, and the grad_y of NCDHW sweep layers whose steps convert it, rows of
# 4k positions (16-byte loads since v0.60) and of others.
SHAPES = [("headline grad_y", (8, 24, 98, 98, 98)), ("headline x", (8, 48, 96, 96, 96)),
          ("unet3d-dec3 grad_y", (2, 32, 127, 127, 127)), ("sr-up2 grad_y", (4, 32, 95, 95, 95)),
          ("video-gen grad_y", (4, 32, 16, 64, 64)), ("vnet-refine grad_y", (1, 16, 64, 64, 64)),
          ("sr-head grad_y", (1, 8, 128, 128, 128)), ("unet3d-k2 grad_y", (2, 32, 64, 64, 64)),
          ("medium grad_y", (2, 64, 32, 32, 32)), ("gan3d-g2 grad_y", (16, 64, 31, 31, 31))]


def use(form: str):
    os.environ["CONVT3D_TRANSPOSE_V1"] = form


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    forms = (sys.argv[2] if len(sys.argv) > 2 else "1,0").split(",")  # CONVT3D_TRANSPOSE_V1 values
    print(f"layout transpose, ms (median of {rounds} rounds, forms in rotating order), TB/s read + write; "
          f"CONVT3D_TRANSPOSE_V1 = {forms}, gain = first form's time / each form's")
    for name, shape in SHAPES:
        t = torch.randn(shape, device="cuda") + 0.25
        tc = t.to(memory_format=CL)
        for way, fn in (("to CL", lambda t=t: channels_last_with_sums(t)), ("to NCDHW", lambda tc=tc: to_format(tc, False))):
            outs = {}
            for f in forms:
                use(f)
                outs[f] = fn()
            ref = outs[forms[0]]
            same = all((torch.equal(ref[0], o[0]) and torch.equal(ref[1], o[1])) if way == "to CL" else torch.equal(ref, o)
                       for o in outs.values())
            ms = {f: [] for f in forms}
            for r in range(rounds):
                order = forms[r % len(forms):] + forms[:r % len(forms)]
                for f in (order if r % 2 == 0 else order[::-1]):
                    use(f)
                    ms[f].append(bench(fn))
            med = {f: statistics.median(v) for f, v in ms.items()}
            gb = 2 * t.numel() * 4 / 1e9
            cols = "  ".join(f"[{f}] {med[f]:.3f} ms {gb / med[f]:.2f} TB/s {med[forms[0]] / med[f]:.3f}" for f in forms)
            print(f"{name:20s} {way:9s} {str(shape):22s} {cols}  same={same}", flush=True)
            del outs
        del t, tc
        torch.cuda.empty_cache()
    os.environ.pop("CONVT3D_TRANSPOSE_V1", None)


if __name__ == "__main__":
    main()
