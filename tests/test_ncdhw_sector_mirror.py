"""CPU mirror of the ws kernel's NCDHW sector epilogue and its walk over w-groups (csrc/direct_sm90.cuh:
walk_next, unit_at and the ON epilogue's lane logic), so that the index arithmetic is checked without a GPU:
every position of a row stored once, by the lane that should, with the value of that position, each 32-byte
sector by one tile's epilogue where rows start on one; and the walk visits every tile once, w-neighbours of a group in
turn, in the old order where G = 1, and every CTA gets about the same number of tiles."""
import itertools

import pytest

from convt3d_cutlass import direct


def _walk(units, G, grid, b):
    u = b * G
    while u < units:
        yield u
        if u % G != G - 1:
            u += 1
        elif G == 1:
            u += grid
        else:  # groups: rotated by one CTA per wave (walk_next<ROT>)
            gi = u // G
            r = gi % grid
            u = (gi - r + grid + (r + 1) % grid) * G


def _unit_at(u, G, tiles_w, rows):
    gpr = -(-tiles_w // G)
    gi = u // G
    wt, rg = (gi % gpr) * G + u % G, gi // gpr
    if wt >= tiles_w:
        return None
    return (rg % rows) * tiles_w + wt, rg // rows


def _row(W, TW, G):
    """Stores of one output row as the epilogue makes them: {position: value}, and the number of 32-byte
    sectors whose stores are split across two tiles' epilogues (the writes that cost DRAM fills)."""
    tiles_w = -(-W // TW)
    out, writer, carry = {}, {}, [None] * 8
    for wt in range(tiles_w):  # a CTA takes a group's tiles in turn
        q0w = wt * TW
        tj = (q0w // TW) % G
        group_end = tj == G - 1 or q0w + TW >= W
        tail = ((q0w + TW) & ~7) - q0w
        nxt = list(carry)
        for g in range(8):
            keep = not group_end and (q0w + TW) & 7 != 0 and g + 8 >= tail
            carried = tj > 0 and q0w & 7 != 0 and g + 8 < TW and q0w - TW + g + 8 >= q0w & ~7
            stores = []
            if carried:
                assert carry[g] == q0w - TW + g + 8  # the value the previous tile kept in this lane
                stores.append((q0w - TW + g + 8, carry[g]))
            if g < TW and q0w + g < W:
                stores.append((q0w + g, q0w + g))
            if g + 8 < TW and q0w + g + 8 < W and not keep:
                stores.append((q0w + g + 8, q0w + g + 8))
            nxt[g] = q0w + g + 8  # carry = hi, read only where kept
            for pos, v in stores:
                assert pos not in out
                out[pos] = v
                writer.setdefault(pos // 8, set()).add(wt)
        carry = nxt
    return out, sum(len(w) > 1 for w in writer.values())


@pytest.mark.parametrize("TW,G", [(14, 4), (12, 2), (16, 1)])
@pytest.mark.parametrize("W", [8, 16, 40, 48, 56, 64, 96, 104, 128, 200])
def test_sector_epilogue_stores_every_position_once_each_sector_in_one_tile(W, TW, G):
    out, split = _row(W, TW, G)
    assert out == {i: i for i in range(W)}
    assert split == 0


@pytest.mark.parametrize("TW", [10, 13])
def test_sector_epilogue_carry_needs_one_value_per_lane(TW):
    """Config::CARRY_FITS (and direct.carry_fits) leave out tile widths where a lane would have to keep both
    of its positions: there the shared sector can start before the tile's position 8."""
    tails = {((q0w + TW) & ~7) - q0w for q0w in range(0, 8 * TW, TW) if (q0w + TW) & 7}
    assert min(tails) < 8
    assert not direct.carry_fits(_Row(kx=17 - TW))


class _Row:
    """The fields of a kernel-table row that direct.carry_fits reads, for a 2x8 tile of 16 channels."""

    def __init__(self, kx):
        self.kx, self.block, self.warpgroups, self.bn = kx, (2, 8, 16), 2, 16


def test_walk_visits_every_tile_once_and_keeps_the_old_order_without_groups():
    for tiles_w, rows, rest, G, sms in itertools.product((1, 3, 4, 7, 8), (1, 5), (1, 3), (1, 2, 4), (1, 4, 132)):
        groups = rows * -(-tiles_w // G) * rest
        grid = min(groups, sms)
        seen = []
        for b in range(grid):
            seq = [t for t in (_unit_at(u, G, tiles_w, rows) for u in _walk(groups * G, G, grid, b)) if t]
            for a, c in zip(seq, seq[1:]):  # a group's tiles in turn: w-neighbours of one row
                if a[0] // tiles_w == c[0] // tiles_w and a[1] == c[1] and c[0] % tiles_w % G:
                    assert c[0] == a[0] + 1
            seen += seq
            if G == 1:
                tiles = rows * tiles_w
                assert seq == [(u % tiles, u // tiles) for u in range(b, tiles * rest, grid)]
        assert sorted(seen) == sorted((t, r) for r in range(rest) for t in range(rows * tiles_w))


@pytest.mark.parametrize("tiles_w,G,rows,sms", [(7, 4, 48 * 12 * 8, 132), (7, 4, 100, 132), (3, 4, 1000, 132),
                                               (7, 2, 777, 114), (13, 4, 500, 78)])
def test_walk_balances_short_groups(tiles_w, G, rows, sms):
    """A row's last group is short (7 tiles in groups of 4: 4 + 3). The plain stride gave every short group to
    the same CTAs when the grid and the groups per row were both even (headline grad_input NCDHW: 3 of every 4
    CTAs' tiles on half the SMs, 14% of the kernel idle); the rotated walk keeps each CTA within one group of
    the mean."""
    groups = rows * -(-tiles_w // G)
    grid = min(groups, sms)
    counts = [sum(1 for u in _walk(groups * G, G, grid, b) if _unit_at(u, G, tiles_w, rows)) for b in range(grid)]
    assert sum(counts) == rows * tiles_w
    assert max(counts) - min(counts) <= 2 * G
