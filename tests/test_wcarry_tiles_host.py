"""The ws rows' carried tiles along w (csrc/direct_sm90.cuh, WgmmaKernel::wcarry_tiles and the epilogue's wcarry
branch): for every count of tiles the C++ picks, a model of what each tile stores must write every output of the
row exactly once, with every input that feeds it summed in. Tile t holds halo positions u = 0..15, inputs
qoff + dmin + 16 t + u (qoff = max(-dmin, 0)); lane g stores output q0w + g (first position), q0w + g + 8 (second,
unless open: its taps reach the next tile, which is there) and, where its second position is open, q0w + g - 8 (the
previous tile's, that tile's terms plus this one's). Needs nvcc and the CUTLASS headers, not a GPU."""
from convt3d_cutlass.kernel_table import WGMMA_KERNELS

from test_smem_mirror_host import host_program_output

HALO_W = 16
ROWS = [k for k in WGMMA_KERNELS if k.ws and not k.wf]


def _cases():
    """(outputs, dmin, taps, input width): the forward and grad_input rows of unit-stride layers (k up to 7, every
    padding), and the headline's and the sweep's widths."""
    out = set()
    for k in range(1, 8):
        for pad in range(k):
            for wi in list(range(1, 50)) + [63, 64, 65, 95, 96, 97, 98, 128]:
                fwd = wi + k - 1 - 2 * pad
                if fwd > 0:
                    out.add((fwd, -(k - 1 - pad), k, wi))
                gi = wi - (k - 1) + 2 * pad
                if gi > 0:
                    out.add((gi, -pad, k, wi))
    return sorted(out)


def _needed(q, dmin, tx, wi):
    """The inputs that output q sums: q + dmin + kx for each tap kx, inside the row."""
    return {q + dmin + kx for kx in range(tx) if 0 <= q + dmin + kx < wi}


def _stores(t_count, cnt, dmin, tx, wi):
    """{output: [inputs summed into it, once per store]} by the kernel's rule for t_count tiles."""
    qoff = max(-dmin, 0)
    got = {}

    def put(q, inputs):
        if 0 <= q < cnt:
            got.setdefault(q, []).append({i for i in inputs if 0 <= i < wi})

    for t in range(t_count):
        q0w = qoff + HALO_W * t
        base = q0w + dmin  # input of halo position 0
        for g in range(8):
            put(q0w + g, [base + g + kx for kx in range(tx)])
            is_open = g + 8 + tx - 1 >= HALO_W
            if not is_open or t + 1 == t_count:  # the last tile stores its open positions as they are
                put(q0w + g + 8, [base + g + 8 + kx for kx in range(tx) if g + 8 + kx < HALO_W])
            if is_open:
                prev = [base - HALO_W + g + 8 + kx for kx in range(tx) if g + 8 + kx < HALO_W] if t > 0 else []
                put(q0w + g - 8, prev + [base + g + kx - 8 for kx in range(tx) if g + kx >= 8])
    return got


def test_wcarry_tiles_store_every_output_once_and_whole(tmp_path):
    cases = _cases()
    lines = ['#include <cstdio>', '#include "direct_sm90.cuh"', "using namespace convt3d;",
             f"static const int cases[][4] = {{{', '.join('{%d, %d, %d, %d}' % c for c in cases)}}};",
             "int main() {", f"  for (int i = 0; i < {len(cases)}; ++i) {{",
             "    DirectLaunch p; p.num_phases = 1; p.s_in = p.s_out = 1; p.Wi = cases[i][3];",
             "    DirectPhase& ph = p.phase[0]; ph.count[2] = cases[i][0]; ph.dmin[2] = cases[i][1]; "
             "ph.taps[2] = cases[i][2];"]
    def b(v):
        return "true" if v else "false"

    for k in ROWS:
        lines.append(f"    printf(\"{k.name} %d %d\\n\", i, cases[i][2] > {k.kx} ? -1 : direct90::WgmmaKernel<"
                     f"{k.block[0]}, {k.block[1]}, {k.kx}, {k.bn}, {k.warpgroups}, {k.stages}, true, {b(k.split)}, "
                     f"{b(k.rs)}, 0>::wcarry_tiles(p));")
    lines += ["  }", "  return 0; }"]
    tiles = {}
    for line in host_program_output(tmp_path, "wcarry", "\n".join(lines) + "\n").splitlines():
        name, i, t = line.split()
        tiles[(name, int(i))] = int(t)
    assert len(tiles) == len(cases) * len(ROWS)
    checked = 0
    for (name, i), t in tiles.items():
        cnt, dmin, tx, wi = cases[i]
        if t < 0:
            continue  # more taps than the row folds: it never runs the problem
        if t == 0:  # the row has no registers for the carried sums (CARRY_REGS)
            assert all(tiles[(name, j)] in (0, -1) for j in range(len(cases))), name
            continue
        got = _stores(t, cnt, dmin, tx, wi)
        for q in range(cnt):
            assert len(got.get(q, [])) == 1, (name, cases[i], t, q, got.get(q))
            assert got[q][0] == _needed(q, dmin, tx, wi), (name, cases[i], t, q)
        # the fewest such tiles: one fewer leaves an output unstored or short of an input
        if t > 1:
            fewer = _stores(t - 1, cnt, dmin, tx, wi)
            assert any(len(fewer.get(q, [])) != 1 or fewer[q][0] != _needed(q, dmin, tx, wi)
                       for q in range(cnt)), (name, cases[i], t)
        checked += 1
    assert checked > 1000
    # What the carry is for: the headline forward (96 inputs, 98 outputs, k3 p0) in 6 tiles of 16 inputs where
    # tiles of 14 outputs take 7; a k3 p1 row of 64 (video-gen) in 4 instead of 5; grad_input at p0 (98 -> 96)
    # in 7 either way.
    rows3 = [k.name for k in ROWS if k.kx == 3 and tiles[(k.name, cases.index((98, -2, 3, 96)))] > 0]
    assert rows3
    for name in rows3:
        assert tiles[(name, cases.index((98, -2, 3, 96)))] == 6
        assert tiles[(name, cases.index((64, -1, 3, 64)))] == 4
        assert tiles[(name, cases.index((96, 0, 3, 98)))] == 7
