"""Same-process A/B of the tf32 training step (NDHWC and NCDHW): grad_weight on the selector's pick
(igemm_wgrad) vs the v0.9 pick before it, alternating rounds; cuDNN alongside."""
import torch, torch.nn as nn, statistics
import convt3d_cutlass as ct
from convt3d_cutlass import selector
from convt3d_cutlass.problem import Problem
from bench.timing import bench
import os, sys
ROUNDS = int(os.environ.get("ROUNDS", "3"))
torch.backends.cudnn.benchmark = True
torch.backends.cudnn.allow_tf32 = True
cases = {"unet3d-dec1": (2, 256, 128, (16, 16, 16), 3, 2, 1, "wgmma_wgrad_tf32_4x16_k3_n32_wg4_s2"),
         "gan3d-g1": (16, 256, 128, (8, 8, 8), 3, 2, 1, "wgrad_tf32_128x128x16_64x64x16_s4"),
         "gan3d-g2": (16, 128, 64, (16, 16, 16), 3, 2, 1, "wgmma_wgrad_tf32_4x16_k3_n32_wg4_s2"),
         "unet3d-dec2": (2, 128, 64, (32, 32, 32), 3, 2, 1, "wgmma_wgrad_tf32_4x16_k3_n32_wg4_s2"),
         "vnet-up": (1, 128, 64, (24, 24, 24), 5, 2, 2, "wgrad_tf32_128x128x16_64x64x16_s4")}
for name, (n, ci, co, sp, k, s, p, old) in [(c, cases[c]) for c in (sys.argv[1].split(",") if len(sys.argv) > 1 else cases)]:
    prob = Problem(n, ci, co, sp, k, s, p)
    new = selector.select_config(prob, "wgrad", "tf32").name
    for cl in (True, False):
        fmt = torch.channels_last_3d if cl else torch.contiguous_format
        x = torch.randn(n, ci, *sp, device="cuda").to(memory_format=fmt).requires_grad_()
        ref = nn.ConvTranspose3d(ci, co, k, s, p).cuda()
        layers = {c: ct.ConvTranspose3d(ci, co, k, s, p, precision="tf32", config=c).cuda() for c in (new, old)}
        for l in layers.values():
            l.load_state_dict(ref.state_dict())
        gy = torch.randn_like(ref(x)).contiguous(memory_format=fmt)
        def step(m):
            return lambda: torch.autograd.backward(m(x), gy)
        res = {c: [] for c in (new, old, "cudnn")}
        for _ in range(ROUNDS):
            for c, m in list(layers.items()) + [("cudnn", ref)]:
                res[c].append(bench(step(m), reps=15))
        med = {c: statistics.median(v) for c, v in res.items()}
        print(f"{name:12s} {'NDHWC' if cl else 'NCDHW'}  new {med[new]:.3f}  old {med[old]:.3f}  cuDNN {med['cudnn']:.3f}  "
              f"new/old {med[old]/med[new]:.2f}x  vs cuDNN new {med['cudnn']/med[new]:.2f}x old {med['cudnn']/med[old]:.2f}x"
              f"  [{new} vs {old}]")
