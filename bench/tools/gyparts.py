"""What reading an NCDHW grad_y in place would cost the tf32 backward, part by part (GPU time,
hostgap.gpu_only, the same process): grad_y's conversion with the bias sums (what the step runs now), the
bias sums alone over NCDHW grad_y, grad_input from the converted grad_y (with its sums) and from NCDHW
grad_y (the kernel's in_ncdhw mode), alone and (v0.52, where direct.copies_input) with the bias sums and with
the sums and grad_weight's channels_last_3d copy (launch.grad_input_copying), grad_weight from each where its
row takes it. Prints the kernel each
pass chose, the medians, and whether both forms of each pass give the same bits.

    python bench/tools/gyparts.py headline,sr-head 10

A case name may carry another x size, NAME@DxHxW: e.g. headline@96x96x94, whose grad_y rows are 96 wide (a
multiple of 4, so grad_input's ws row can read grad_y in place through its raw ring, which the headline's 98
rules out): what the ring form costs grad_input against the converted grad_y (docs/performance.md, Next 5(b)).
"""
import dataclasses
import sys

import torch

from bench.runner import CaseTensors
from bench.shapes import HEADLINE, SWEEP
from bench.tools.hostgap import gpu_only
from convt3d_cutlass import direct, launch, layouts


def case_of(name: str, cases: dict):
    """The sweep or headline case NAME, or NAME@DxHxW: that case with x of spatial size D x H x W."""
    base, _, size = name.partition("@")
    c = cases[base]
    return dataclasses.replace(c, spatial=tuple(int(v) for v in size.split("x"))) if size else c


def main():
    direct.COPY_GRAD_Y = True  # the copy is opt-in (CONVT3D_COPY_GRAD_Y=1); this tool prices it regardless
    names = sys.argv[1].split(",")
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    cases = {c.name: c for c in list(SWEEP) + [HEADLINE]}
    for nm in names:
        c = case_of(nm, cases)
        t = CaseTensors(c, False)
        p = c.problem()
        gy_nc = t.gy
        gy_cl, _ = layouts.channels_last_with_sums(gy_nc)
        gi_plan = launch._plan(p, "fprop", "tf32", None, gy_nc.device, None, out_ncdhw=True)
        gw_plan = launch._plan(p, "wgrad", "tf32", None, gy_nc.device, None)
        print(f"{nm}: grad_input {gi_plan.name} (reads NCDHW: "
              f"{direct.reads_ncdhw(gi_plan.k, gi_plan.table, p.c_out, gy_nc)}), grad_weight {gw_plan.name} "
              f"(reads NCDHW grad_y: {direct.wgrad_reads_gy_ncdhw(gw_plan.k, gy_nc)})", flush=True)
        parts = {
            "convert+sums": lambda: layouts.channels_last_with_sums(gy_nc),
            "sums NCDHW": lambda: layouts.channel_sums(gy_nc),
            "gi from CL (+sums)": lambda: launch.grad_input_with_bias(gy_cl, t.w, p, "tf32", ncdhw=True),
            "gi from NCDHW": lambda: launch.grad_input(gy_nc, t.w, p, "tf32", ncdhw=True),
            "gi NCDHW +sums": lambda: launch.grad_input_copying(gy_nc, t.w, p, "tf32", ncdhw=True, with_copy=False),
            "gi NCDHW +sums+copy": lambda: launch.grad_input_copying(gy_nc, t.w, p, "tf32", ncdhw=True),
            "gw from CL": lambda: launch.grad_weight(gy_cl, t.x, p, "tf32"),
            "gw from NCDHW": lambda: launch.grad_weight(gy_nc, t.x, p, "tf32"),
        }
        copies = direct.copies_input(gi_plan.k, gi_plan.table, p.c_out, p.out_spatial)
        for name, fn in parts.items():
            if "+sums" in name and not copies:
                continue
            if name == "gi from NCDHW" and not direct.reads_ncdhw(gi_plan.k, gi_plan.table, p.c_out, gy_nc):
                continue
            print(f"  {name:20s} {gpu_only(fn, reps):.3f} ms", flush=True)
        a, b = launch.grad_input_with_bias(gy_cl, t.w, p, "tf32", ncdhw=True)[0], launch.grad_input(
            gy_nc, t.w, p, "tf32", ncdhw=True)
        ga, gb = launch.grad_weight(gy_cl, t.x, p, "tf32"), launch.grad_weight(gy_nc, t.x, p, "tf32")
        print(f"  same bits: grad_input {torch.equal(a, b)}, grad_weight {torch.equal(ga, gb)}", flush=True)
        del a, b, ga, gb
        t = gy_cl = None
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
