"""CPU mirror of the ws kernel's NCDHW sector epilogue and its walk over w-groups (csrc/direct_sm90.cuh:
walk_next, unit_at and the ON epilogue's lane logic), so that the index arithmetic is checked without a GPU:
every position of a row stored once, by the lane that should, with the value of that position, in whole
32-byte sectors where rows start on one; and the walk visits every tile once, w-neighbours of a group in
turn, in the old order where G = 1, and every CTA gets about the same number of tiles."""
import itertools

import pytest


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
    """Stores of one output row as the epilogue makes them: {position: value}, and the partial-sector count."""
    tiles_w = -(-W // TW)
    out, partial, carry = {}, 0, [None] * 8
    for wt in range(tiles_w):  # a CTA takes a group's tiles in turn
        q0w = wt * TW
        tj = (q0w // TW) % G
        group_end = tj == G - 1 or q0w + TW >= W
        r0 = [q0w + g if g < TW and q0w + g < W else None for g in range(8)]
        r1 = [q0w + g + 8 if g + 8 < TW and q0w + g + 8 < W else None for g in range(8)]
        for sk in range((TW + 14) // 8):
            k0 = (q0w & ~7) + 8 * sk
            live = k0 < q0w + TW and k0 < W
            lanes, nxt = [], list(carry)
            for g in range(8):
                rel = k0 - q0w + g
                # the kernel shuffles once per tile from lane (g - q0w) mod 8: the same lane in every sector
                assert rel & 7 == (g - q0w) & 7
                v = carry[g] if rel < 0 else (r1 if rel >= 8 else r0)[(g - q0w) & 7]
                if live and k0 + 8 > q0w + TW and not group_end:
                    nxt[g] = v
                elif live and k0 + g < W and rel < TW and (rel >= 0 or tj > 0):
                    assert k0 + g not in out
                    out[k0 + g] = v
                    lanes.append(g)
            carry = nxt
            partial += bool(lanes) and len(lanes) != min(8, W - k0)
    return out, partial


@pytest.mark.parametrize("TW,G", [(14, 4), (12, 2), (16, 1)])
@pytest.mark.parametrize("W", [8, 16, 40, 48, 56, 64, 96, 104, 128, 200])
def test_sector_epilogue_stores_every_position_once_in_whole_sectors(W, TW, G):
    out, partial = _row(W, TW, G)
    assert out == {i: i for i in range(W)}
    assert partial == 0


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
