"""The Python policy sizes shared memory exactly as the C++ launchers do (direct.py mirrors
DirectKernel::smem_bytes, WgmmaKernel::geometry/smem_bytes, WgmmaWgradKernel::geometry/smem_bytes and
IgemmKernel::smem_bytes, its SECTORS ring and sibling-pair rule, IgemmWgradKernel::smem_bytes): a host-only program built with nvcc
from the kernel headers prints the C++ sizes for every tap-reuse row of the table on a set of phase
tables, and they must equal Python's. Needs nvcc and the CUTLASS headers, not a GPU (no kernel is
instantiated: only the static host members are called)."""
import os
import shutil
import subprocess

import pytest

from convt3d_cutlass import direct
from convt3d_cutlass.kernel_table import (DIRECT_KERNELS, DIRECT_SIMT_KERNELS, IGEMM_KERNELS, IGEMM_WGRAD_KERNELS,
                                          WGMMA_KERNELS, WGMMA_WGRAD_KERNELS)
from convt3d_cutlass.problem import Problem

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBLEMS = [Problem(2, 12, 40, (5, 11, 19), k, s, p)
            for k, s, p in [(3, 1, 1), (3, 2, 1), (5, 2, 2), (1, 1, 0), (3, 3, 0), (3, 1, 0), (5, 1, 2), (2, 2, 0)]]
PROBLEMS += [Problem(8, 48, 24, (96, 96, 96), 3), Problem(1, 8, 8, (128, 128, 128), 3, 1, 1),
             Problem(1, 256, 128, (8, 8, 8), 3, 2, 1)]  # too many channels for a resident Hopper filter
# grad_weight: C_out blocks (4 .. 200 channels), every stride up to k, both filter sizes compiled.
# The SECTORS rule's phase-table part (igemm_sibling_pairs): stride 2 with every padding parity, output_padding,
# k below the stride (bias-only phases), stride 3 and unit stride (never).
PAIR_PROBLEMS = PROBLEMS + [Problem(2, 12, 40, (5, 11, 19), k, s, p, op)
                            for k, s, p, op in [(3, 2, 1, 1), (1, 2, 0, 1), (4, 2, 1, 0), (5, 2, 1, 0), (2, 2, 1, 1),
                                                (3, 2, 0, 0)]]
WGRAD_PROBLEMS = [Problem(2, 52, co, (5, 11, 19), k, s, (k - 1) // 2)
                  for co in (4, 24, 40, 76, 200) for k in (3, 5) for s in range(1, k + 1)]


def _cutlass_include():
    d = os.environ.get("CUTLASS_DIR")
    if not d:
        try:
            import cutlass_library
        except ImportError:
            return None
        d = os.path.join(os.path.dirname(cutlass_library.__file__), "source")
    inc = os.path.join(d, "include")
    return inc if os.path.exists(os.path.join(inc, "cutlass", "version.h")) else None


def _plans():
    """(label, phase table, s_in, reduction channels, sum_phases) for the forward and grad_input of
    PROBLEMS, and the exact-fp32 rows' grad_input over grad_y's parities where strided."""
    out = []
    for i, p in enumerate(PROBLEMS):
        out.append((f"{i}-dgrad", direct.forward_plan(p)[0], 1, p.c_in, False))
        out.append((f"{i}-fprop", direct.grad_input_plan(p), p.stride, p.c_out, False))
        if p.stride > 1:
            out.append((f"{i}-parity", direct.grad_input_parity_plan(p), p.stride, p.c_out, True))
    return out


def _source(plans):
    lines = ['#include <cstdio>', '#include "direct_conv.cuh"', '#include "direct_sm90.cuh"',
             '#include "direct_wgrad_sm90.cuh"', '#include "igemm_sm90.cuh"', '#include "igemm_wgrad_sm90.cuh"',
             "using namespace convt3d;",
             "static DirectLaunch make(const int* t, int phases, int s_in, int cr, bool sums) {",
             "  DirectLaunch p; p.num_phases = phases; p.s_in = s_in; p.Cr = cr; p.Co = 40; p.sum_phases = sums;",
             "  for (int i = 0; i < phases; ++i) { const int* r = t + 13 * i; DirectPhase& ph = p.phase[i];",
             "    for (int a = 0; a < 3; ++a) { ph.first[a] = r[a]; ph.count[a] = r[3 + a]; ph.dmin[a] = r[6 + a];",
             "      ph.taps[a] = r[9 + a]; } ph.w_offset = r[12]; }",
             "  return p; }",
             "int main() {"]
    for j, (label, table, s_in, cr, sums) in enumerate(plans):
        lines.append(f"  static const int t{j}[] = {{{', '.join(map(str, table))}}};")
        lines.append(f"  {{ DirectLaunch p = make(t{j}, {len(table) // 13}, {s_in}, {cr}, {str(sums).lower()});")
        for k in DIRECT_KERNELS + DIRECT_SIMT_KERNELS:
            if sums and not k.simt:
                continue
            td, th, tw = k.block
            lines.append(f"    {{ using K = direct::DirectKernel<{td}, {th}, {tw}, {k.bn}, {k.rows_per_thread}, {k.kc}>; "
                         f"int h, f; K::stage_floats(p, h, f); printf(\"{label} {k.name} %zu\\n\", K::smem_bytes(p, h, f)); }}")
        if sums:
            lines.append("  }")
            continue
        for k in WGMMA_KERNELS:
            # WS, SPLIT, RS, WF as the generated TU instantiates them (csrc/generate_kernels.py)
            b = lambda v: "true" if v else "false"
            targs = f", {b(k.ws)}, {b(k.split)}, {b(k.rs)}, {k.wf}" if k.ws else ""
            lines.append(f"    {{ using K = direct90::WgmmaKernel<{k.block[0]}, {k.block[1]}, {k.kx}, {k.bn}, "
                         f"{k.warpgroups}, {k.stages}{targs}>; direct90::Geometry g; int c = K::geometry(p, g); "
                         f"if (c) printf(\"{label} {k.name} none\\n\"); "
                         f"else printf(\"{label} {k.name} %zu\\n\", K::smem_bytes(g)); }}")
            if k.ws:  # the NCDHW-input mode: raw ring, resident filter only
                lines.append(f"    {{ using K = direct90::WgmmaKernel<{k.block[0]}, {k.block[1]}, {k.kx}, {k.bn}, "
                             f"{k.warpgroups}, {k.stages}{targs}>; direct90::Geometry g; "
                             f"DirectLaunch q = p; q.in_ncdhw = true; int c = K::geometry(q, g); "
                             f"if (c) printf(\"{label} {k.name}-in none\\n\"); "
                             f"else printf(\"{label} {k.name}-in %zu,%d\\n\", K::smem_bytes(g), g.stages); }}")
        lines.append("  }")
    for j, p in enumerate(WGRAD_PROBLEMS):
        d, h, w = p.spatial
        od, oh, ow = p.out_spatial
        lines.append(f"  {{ DirectWgradLaunch p; p.N = {p.n}; p.Di = {d}; p.Hi = {h}; p.Wi = {w}; p.Ci = {p.c_in};")
        lines.append(f"    p.Do = {od}; p.Ho = {oh}; p.Wo = {ow}; p.Co = {p.c_out}; p.k = {p.k}; p.stride = {p.stride}; "
                     f"p.pad = {p.padding};")
        for k in WGMMA_WGRAD_KERNELS:
            th, tw = k.block[1:]
            lines.append(f"    {{ using K = direct90::WgmmaWgradKernel<{k.ksize}, {th}, {tw}, {k.bn}, {k.warpgroups}, "
                         f"{k.stages}{', true' if k.split else ''}>; p.slices = {p.n * -(-h // th) * -(-w // tw)}; direct90::WgradGeometry g; "
                         f"int c = K::geometry(p, g); if (c) printf(\"w{j} {k.name} none\\n\"); "
                         f"else printf(\"w{j} {k.name} %d,%d,%zu,%d,%d\\n\", g.cb, g.pitch, K::smem_bytes(g), "
                         f"g.kb, g.tiles); }}")
        lines.append("  }")
    for k in IGEMM_KERNELS:
        lines.append(f"  {{ using K = direct90::IgemmKernel<{k.block[1]}, {k.block[2]}, {k.bn}, {k.stages}"
                     f"{', true' if k.split else ''}>; printf(\"ig {k.name} %zu,%d\\n\", K::smem_bytes(), "
                     f"K::C::SECTORS_OK ? K::C::SECTOR_RING : 0); }}")
    for j, p in enumerate(WGRAD_PROBLEMS):
        d, h, w = p.spatial
        od, oh, ow = p.out_spatial
        lines.append(f"  {{ DirectWgradLaunch p; p.N = {p.n}; p.Di = {d}; p.Hi = {h}; p.Wi = {w}; p.Ci = {p.c_in}; "
                     f"p.Do = {od}; p.Ho = {oh}; p.Wo = {ow}; p.Co = {p.c_out}; p.k = {p.k}; p.stride = {p.stride}; "
                     f"p.pad = {p.padding}; p.slices = 1;")
        for k in IGEMM_WGRAD_KERNELS:
            fold = (f", {k.kx}" if k.kx > 1 else "") + (", true" if k.swap else "")
            lines.append(f"    {{ using K = direct90::IgemmWgradKernel<{', '.join(map(str, k.block))}, {k.bn}, "
                         f"{k.stages}{fold}>; direct90::IgemmWgradGeometry g; int c = K::geometry(p, g); "
                         f"if (c) printf(\"igw{j} {k.name} none\\n\"); "
                         f"else printf(\"igw{j} {k.name} %zu\\n\", K::smem_bytes(g)); }}")
        lines.append("  }")
    for j, p in enumerate(PAIR_PROBLEMS):
        table = direct.forward_plan(p)[0]
        lines.append(f"  {{ static const int t[] = {{{', '.join(map(str, table))}}}; DirectLaunch p = make(t, "
                     f"{len(table) // 13}, 1, {p.c_in}, false); p.s_out = {p.stride}; "
                     f"printf(\"pairs {j} %d\\n\", (int)direct90::igemm_sibling_pairs(p)); }}")
    for k in WGMMA_KERNELS:
        if k.ws:
            lines.append(f"  printf(\"carry {k.name} %d\\n\", (int)direct90::Config<{k.block[0]}, {k.block[1]}, "
                         f"{k.kx}, {k.bn}, {k.warpgroups}, {k.stages}>::CARRY_FITS);")
    lines.append("  return 0; }")
    return "\n".join(lines) + "\n"


def host_program_output(tmp_path, name: str, source: str) -> str:
    """Build `source` (host code over the kernel headers) with nvcc and return what it prints; skips the test
    without nvcc or the CUTLASS headers."""
    nvcc = shutil.which("nvcc") or (os.path.exists("/usr/local/cuda/bin/nvcc") and "/usr/local/cuda/bin/nvcc")
    inc = _cutlass_include()
    if not nvcc or not inc:
        pytest.skip("needs nvcc and the CUTLASS headers (nvidia-cutlass)")
    src = tmp_path / f"{name}.cu"
    src.write_text(source)
    exe = tmp_path / name
    # The arch only matters for device code, and none is instantiated; 9.0a keeps the SM90 headers happy.
    build = subprocess.run([nvcc, "-std=c++17", "-O0", "--expt-relaxed-constexpr",
                            "-gencode=arch=compute_90a,code=sm_90a", "-I", os.path.join(ROOT, "csrc"), "-I", inc,
                            str(src), "-o", str(exe)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_python_shared_memory_sizes_equal_the_cpp_launchers(tmp_path):
    plans = _plans()
    out = host_program_output(tmp_path, "mirror", _source(plans))
    cpp = {}
    for line in out.splitlines():
        label, name, value = line.split()
        cpp[(label, name)] = None if value == "none" else tuple(map(int, value.split(",")))
    checked = in_checked = 0
    for label, table, s_in, cr, sums in plans:
        for k in DIRECT_KERNELS + DIRECT_SIMT_KERNELS:
            if sums and not k.simt:
                continue
            assert cpp[(label, k.name)] == (direct.smem_bytes(k.block, k.bn, s_in, table, sums, k.kc),), (label, k.name)
            checked += 1
        if sums:
            continue
        for k in WGMMA_KERNELS:
            want = direct.wgmma_smem_bytes(k.block, k.kx, k.bn, k.warpgroups, k.stages, table, cr, k.ws, k.split)
            assert cpp[(label, k.name)] == (None if want is None else (want,)), (label, k.name)
            checked += 1
            if k.ws:
                taps = direct._wgmma_taps(table, k.kx)
                want = None if taps is None else direct._wgmma_smem(k.block, k.kx, k.bn, k.warpgroups, k.stages,
                                                                     *taps, cr, True, k.split, True, k.rs)
                want = None if want is None else (want.bytes, want.stages)  # the C++ prints (bytes, stages)
                assert cpp[(label, k.name + "-in")] == want, (label, k.name)
                assert (want is not None) == (direct.wgmma_smem_bytes(k.block, k.kx, k.bn, k.warpgroups, k.stages,
                                                                      table, cr, True, k.split, True, k.rs) is not None)
                in_checked += 1
    dense = [pl for pl in plans if not pl[4]]
    assert checked == (len(dense) * (len(DIRECT_KERNELS) + len(WGMMA_KERNELS)) +
                       len(plans) * len(DIRECT_SIMT_KERNELS))
    assert in_checked == len(dense) * sum(k.ws for k in WGMMA_KERNELS)
    # The NCDHW epilogue's carried sector (direct.ncdhw_sectors): on the rows where the C++ has the room.
    for k in WGMMA_KERNELS:
        if k.ws:
            assert cpp[("carry", k.name)] == (int(direct.carry_fits(k)),), k.name
    assert any(direct.carry_fits(k) for k in WGMMA_KERNELS if k.ws)
    assert not all(direct.carry_fits(k) for k in WGMMA_KERNELS if k.ws)
    # The headline forward reads NCDHW x with its filter resident and two halo stages; some rows do not.
    assert any(v is not None for (label, name), v in cpp.items() if name.endswith("-in"))
    assert any(v is None for (label, name), v in cpp.items() if name.endswith("-in"))
    for j, p in enumerate(WGRAD_PROBLEMS):
        for k in WGMMA_WGRAD_KERNELS:
            got = cpp[(f"w{j}", k.name)]
            if k.ksize != p.k:
                assert got is None, (j, k.name)
                continue
            layout = direct.wgmma_wgrad_layout(p, k.block, k.warpgroups, k.stages)
            tiles = direct.wgmma_wgrad_tiles(p, k.block, k.warpgroups, k.stages)
            assert (layout is None) == (tiles is None), (p, k.name)
            want = None if layout is None else (layout[0], layout[1],
                                                direct.wgmma_wgrad_smem_bytes(p, k.block, k.bn, k.warpgroups, k.stages,
                                                                             k.split)) + tiles
            assert got == want, (p, k.name)
            checked += 1
    assert checked > len(plans) * (len(DIRECT_KERNELS) + len(WGMMA_KERNELS)) + 30
    pairs = [direct.igemm_sibling_pairs(direct.forward_plan(p)[0], p.stride) for p in PAIR_PROBLEMS]
    assert [cpp[("pairs", str(j))] for j in range(len(PAIR_PROBLEMS))] == [(int(v),) for v in pairs]
    assert sum(pairs) >= 6 and not all(pairs)
    for k in IGEMM_KERNELS:
        assert cpp[("ig", k.name)] == (direct.igemm_smem_bytes(k.bn, k.stages, k.split),
                                       direct.igemm_sector_ring(k.bn, k.stages, k.split)), k.name
    for j, p in enumerate(WGRAD_PROBLEMS):
        for k in IGEMM_WGRAD_KERNELS:
            got = cpp[(f"igw{j}", k.name)]
            if k.kx > 1 and k.kx != p.k:
                assert got is None, (p, k.name)
                continue
            assert got == (direct.igemm_wgrad_smem_bytes(k.bn, k.stages, k.kx, k.block, p.stride, k.swap),), (p, k.name)
