"""The patch rows' fit rule in Python (selector.patch_fits) against the kernels' own (csrc/patch_simt.cuh,
PatchKernel::can_implement and PatchWgradKernel::can_implement) on the launches the package makes: the phase
tables of direct.pass_plan and grad_weight's slices (direct.patch_wgrad_slices). Wherever Python takes a patch
row the kernel must accept the launch; k != stride, padding, output padding and sizes past 2^31 elements must
be refused by both. Needs nvcc and the CUTLASS headers, not a GPU."""
from convt3d_cutlass import direct, selector
from convt3d_cutlass.kernel_table import BY_NAME
from convt3d_cutlass.problem import Problem

from test_smem_mirror_host import host_program_output

ROW = BY_NAME["patch_fp32_128x64"]


def _problems():
    out = []
    for s in (1, 2, 3, 4):
        for k in sorted({s, s + 1, max(1, s - 1)}):
            for pad in (0, 1):
                for op in (0, 1):
                    if pad >= k or op >= s:
                        continue
                    out.append(Problem(2, 5, 7, (3, 4, 6), k, s, pad, op))
    # around the 2^31-element limit: grad_y of 2^30 elements fits, 2^31 does not (the larger channel count counts)
    out += [Problem(1, 64, 64, (128, 128, 128), 2, 2), Problem(1, 128, 64, (128, 128, 128), 2, 2),
            Problem(1, 300, 8, (64, 64, 64), 2, 2), Problem(4, 64, 32, (48, 48, 48), 2, 2)]
    return out


def _dims(p):
    """Forward and grad_input launches as the direct op builds them: (input D, H, W, C), (output D, H, W, C)."""
    small, big = tuple(p.spatial), tuple(p.out_spatial)
    return {"dgrad": (small + (p.c_in,), big + (p.c_out,)), "fprop": (big + (p.c_out,), small + (p.c_in,))}


def _source(cases):
    lines = ['#include <cstdio>', '#include "patch_simt.cuh"', 'using namespace convt3d;', 'int main() {']
    for i, (p, op, table) in enumerate(cases):
        if op == "wgrad":
            slices = direct.patch_wgrad_slices(p, 132)
            lines += [
                "  {", "    DirectWgradLaunch L;",
                f"    L.N = {p.n}; L.Di = {p.spatial[0]}; L.Hi = {p.spatial[1]}; L.Wi = {p.spatial[2]}; L.Ci = {p.c_in};",
                f"    L.Do = {p.out_spatial[0]}; L.Ho = {p.out_spatial[1]}; L.Wo = {p.out_spatial[2]}; L.Co = {p.c_out};",
                f"    L.k = {p.k}; L.stride = {p.stride}; L.pad = {p.padding}; L.slices = {slices};",
                f'    std::printf("{i} %d\\n", patch::PatchWgradKernel<64, 128, 16>::can_implement(L));', "  }"]
            continue
        (di, hi, wi, cr), (do, ho, wo, co) = _dims(p)[op]
        lines += ["  {", "    DirectLaunch L;",
                  f"    L.N = {p.n}; L.Di = {di}; L.Hi = {hi}; L.Wi = {wi}; L.Cr = {cr};",
                  f"    L.Do = {do}; L.Ho = {ho}; L.Wo = {wo}; L.Co = {co};",
                  f"    L.s_in = {1 if op == 'dgrad' else p.stride}; L.s_out = {p.stride if op == 'dgrad' else 1};",
                  f"    L.num_phases = {len(table) // 13};"]
        for j in range(len(table) // 13):
            v = table[13 * j:13 * j + 13]
            lines.append(f"    {{ DirectPhase& ph = L.phase[{j}]; for (int a = 0; a < 3; ++a) {{ const int v[12] = "
                         f"{{{', '.join(map(str, v[:12]))}}}; ph.first[a] = v[a]; ph.count[a] = v[3 + a]; "
                         f"ph.dmin[a] = v[6 + a]; ph.taps[a] = v[9 + a]; }} ph.w_offset = {v[12]}; }}")
        lines += [f'    std::printf("{i} %d\\n", patch::PatchKernel<128, 64>::can_implement(L));', "  }"]
    lines += ["  return 0;", "}"]
    return "\n".join(lines) + "\n"


def test_patch_fits_mirrors_the_kernels_geometry(tmp_path):
    cases = []
    for p in _problems():
        for op in ("dgrad", "fprop", "wgrad"):
            table = () if op == "wgrad" else direct.pass_plan(ROW, p, op)[0]
            if len(table) // 13 > 64:  # more phases than a launch holds (stride > 4): no direct launch at all
                continue
            cases.append((p, op, table))
    out = host_program_output(tmp_path, "patch_geometry", _source(cases))
    rc = {int(a): int(b) for a, b in (line.split() for line in out.splitlines())}
    assert len(rc) == len(cases)
    taken = 0
    for i, (p, op, _) in enumerate(cases):
        fits = selector.patch_fits(p, op)
        taken += fits
        if fits:
            assert rc[i] == 0, (p, op, rc[i])
        elif p.stride > 1:  # stride 1 forwards are not refused by the kernel (one phase of one tap), only not taken
            assert rc[i] != 0, (p, op)
    assert taken >= 15
