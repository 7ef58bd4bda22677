"""The C++ node's plan as Python makes it (python/convt3d_cutlass/eager.py), checked on the CPU; the GPU
tests (test_gpu_eager_node.py) check that the node computes what the Python Function does."""
import types

import pytest
import torch

from convt3d_cutlass import direct, eager
from convt3d_cutlass.kernel_table import BY_NAME
from convt3d_cutlass.layouts import CL
from convt3d_cutlass.problem import Problem


def _plan(family="igemm", ws=False, tap_reuse=True, slices=1, taps_per_group=1, simt=False, precision="tf32",
          block=(4, 8, 14), bn=24):
    k = types.SimpleNamespace(family=family, ws=ws, simt=simt, op="direct", name=f"{family}_row", precision=precision,
                              rs=False, wf=0, stages=8, block=block, kx=3, bn=bn, warpgroups=2,
                              split=family in ("wgmma", "igemm") and precision == "3xtf32")
    return types.SimpleNamespace(k=k, name=k.name, tap_reuse=tap_reuse, table=[], slices=slices,
                                 taps_per_group=taps_per_group)


def test_x_layout_classes():
    x = torch.randn(2, 4, 3, 5, 6)
    assert eager._x_layout(x) is False
    assert eager._x_layout(x.to(memory_format=CL)) is True
    assert eager._x_layout(x[:, :, :, :, ::2]) is None  # strided view: the Python Function
    assert eager._x_layout(torch.randn(2, 1, 3, 5, 6)) is None  # both layouts at once: ambiguous


def test_plan_ints_order_and_rules(monkeypatch):
    p = Problem(2, 48, 24, (10, 10, 12), 3, 1, 0)  # grad_input reduction 24 * 27 = 648
    ws = _plan("wgmma", ws=True)
    gw = _plan("wgmma", slices=33, taps_per_group=3)
    ints = eager.plan_ints(p, "tf32", False, ws, ws, gw, True, True)
    assert len(ints) == 23 and ints[20] == 0 and ints[21] == 0 and ints[22] == 0
    assert ints[:6] == [3, 1, 0, 0, 0, 1]
    assert ints[6] == int(direct.writes_ncdhw(ws.k, p, "dgrad")) == 1  # forward reduction 48 * 27
    assert ints[7] == 1 and ints[8] == int(direct.writes_ncdhw(ws.k, p, "fprop")) == 0
    # a row that stores whole sectors writes grad_input NCDHW at this reduction: mode 2 (W % 8 == 0)
    sectors = _plan("wgmma", ws=True, block=(2, 8, 14), bn=48)
    p16 = Problem(2, 48, 24, (10, 10, 16), 3)
    assert eager.plan_ints(p16, "tf32", False, ws, sectors, gw, True, True)[6:9] == [1, 1, 2]
    assert eager.plan_ints(p, "tf32", False, ws, sectors, gw, True, True)[8] == 0  # W = 12
    assert ints[9:] == [1, 33, 3, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0]
    # grad_input's kernel sums grad_y (the bias gradient) into the rows launch.sum_rows gives.
    assert eager.plan_ints(p, "tf32", False, ws, ws, gw, True, True, 396)[14] == 396
    # channels_last x: nothing is written or read NCDHW; 3xtf32: no TF32 in the native backward.
    cl = eager.plan_ints(p, "3xtf32", True, ws, ws, gw, True, False)
    assert cl[4:9] == [1, 0, 0, 1, 0]
    # stock passes: no NCDHW modes.
    stock = _plan("cutlass", tap_reuse=False, slices=2)
    big = Problem(2, 256, 128, (8, 8, 8), 3, 2, 1)
    ints = eager.plan_ints(big, "tf32", False, ws, stock, stock, True, False)
    assert ints[7:10] == [0, 0, 0] and ints[12] == 0 and ints[13] == 0
    # exact-fp32 grad_input at stride > 1: summed over grad_y's parities (the direct op's sum_phases).
    simt = _plan("direct", simt=True)
    assert eager.plan_ints(big, "fp32", False, simt, simt, stock, True, True)[15:20] == [1, 0, 0, 0, 1]
    # ... and at unit stride its kernels read an NCDHW grad_y in place (grad_weight's FFMA rows too)
    assert eager.plan_ints(p, "fp32", False, simt, simt, simt, True, True)[15:20] == [0, 1, 1, 0, 1]
    # the forward on stock phases; the stock grad_input's split-K slices (the last integer)
    ints = eager.plan_ints(big, "fp32", False, stock, stock, stock, False, False)
    assert ints[18] == 1 and ints[19] == 2
    # the backward's order (launch.grad_weight_first)
    assert eager.plan_ints(big, "fp32", False, stock, stock, stock, False, False, gw_first=True)[20] == 1
    # the last: grad_input copies an NCDHW grad_y for grad_weight (direct.copies_input), given its sum rows
    from convt3d_cutlass.kernel_table import BY_NAME
    monkeypatch.setattr(direct, "COPY_GRAD_Y", True)  # opt-in (CONVT3D_COPY_GRAD_Y=1)
    head = Problem(8, 48, 24, (96, 96, 96), 3)
    gi = types.SimpleNamespace(k=BY_NAME["wgmma_ws_tf32_2x8x14_kx3_n48_wg2_s8"], tap_reuse=True, slices=1,
                               table=direct.grad_input_plan(head))
    gi.name = gi.k.name
    assert eager.plan_ints(head, "tf32", False, ws, gi, gw, True, True, 396)[21] == 1
    assert eager.plan_ints(head, "tf32", False, ws, gi, gw, True, True, 0)[21] == 0
    assert eager.plan_ints(head, "fp32", False, ws, gi, simt, True, True, 396)[21] == 0  # FFMA reads it in place


def test_plan_ints_carry_grad_weights_depth_slabs():
    """The 32-row FFMA grad_weight tile on an NCDHW layer: its depth slabs after item 22 (direct.ffma_wgrad_slabs),
    with items 12 and 17 set (it reads an NCDHW x and grad_y, a slab at a time); none for a channels_last_3d x."""
    from convt3d_cutlass.kernel_table import BY_NAME
    p = Problem(1, 32, 16, (64, 64, 64), 5, 1, 2)
    k = BY_NAME["ffma_wgrad_fp32_32x256x16_s4"]
    gw = types.SimpleNamespace(k=k, name=k.name, tap_reuse=False, table=[], slices=49, taps_per_group=1)
    simt = _plan("direct", simt=True)
    ints = eager.plan_ints(p, "fp32", False, simt, simt, gw, False, True)
    slabs = direct.ffma_wgrad_slabs(k, p)
    assert ints[22] == len(slabs) == 4 and len(ints) == 23 + 5 * 4
    assert ints[23:] == [v for s in slabs for v in s] and ints[23:28] == [0, 16, 0, 18, 2]
    assert ints[9:13] == [0, 49, 1, 1] and ints[17] == 1
    cl = eager.plan_ints(p, "fp32", True, simt, simt, gw, False, True)
    assert len(cl) == 23 and cl[22] == 0 and cl[12] == 0


def test_grad_weight_first_in_every_precision():
    """The backward runs grad_weight first on small tensor-core layers too (v0.28): their peaks then hold
    grad_weight's temporaries or grad_x, not both."""
    from convt3d_cutlass import launch
    p = Problem(2, 64, 32, (16, 16, 16), 3, 2, 1)
    x = torch.empty(2, 64, 16, 16, 16)
    for precision in ("tf32", "3xtf32", "fp32"):
        for t in (x, x.to(memory_format=CL)):
            assert launch.grad_weight_first(p, _plan("igemm", slices=1, precision=precision), t)


def test_node_off_without_the_extension_op(monkeypatch):
    # A build without the op (CPU install, older extension) and CONVT3D_EAGER_NODE=0 both keep the
    # Python Function.
    monkeypatch.setattr(eager, "_has_op", lambda name: False)
    assert not eager.enabled()
    x, w = torch.randn(1, 4, 3, 3, 3), torch.randn(4, 2, 3, 3, 3)
    assert eager.apply(x, w, None, 1, 0, 0, "fp32", None) is None
    monkeypatch.setattr(eager, "_has_op", lambda name: True)
    monkeypatch.setenv("CONVT3D_EAGER_NODE", "0")
    assert not eager.enabled()


@pytest.mark.parametrize("autotuning", [True, False])
def test_bias_only_phases_go_to_the_node(autotuning, monkeypatch):
    """k < stride: stock forward phases whose outputs only get the bias come after the kernels' phases in the
    node's forward table, zeros but their first output (v0.62; the Python Function before), tuned or not."""
    monkeypatch.setattr(eager, "_has_op", lambda name: True)
    monkeypatch.delenv("CONVT3D_EAGER_NODE", raising=False)
    monkeypatch.setattr(eager.autotune, "enabled", lambda: autotuning)
    monkeypatch.setattr(eager.launch, "_index", lambda device: 0)
    monkeypatch.setattr(eager.launch, "sum_rows", lambda *a: 0)
    monkeypatch.setattr(eager.launch, "_plan_cached",
                        lambda p, op, *a: _plan("cutlass", tap_reuse=False) if op == "dgrad" else _plan())
    monkeypatch.setattr(eager.launch, "_stock_phases",
                        lambda *a: (("k",), ((0, 0, 0),), tuple(range(9)), ((1, 0, 1), (1, 1, 1)), (2,)))
    monkeypatch.setattr(eager, "_plans", {})
    registered = []
    monkeypatch.setattr(eager, "_register", lambda *a: registered.append(a) or 7)
    x, w = torch.randn(1, 4, 3, 3, 3), torch.randn(4, 2, 1, 1, 1)
    assert eager.apply(x, w, None, 2, 0, 0, "tf32", None) is None  # CPU tensors: never the node
    p = Problem.of(x, w, 2, 0, 0)
    tuned = ("k", None, None) if autotuning else None
    pid, _, _ = eager._build((p, "tf32", None, 0, "", False, tuned), x)
    assert pid == 7 and registered[0][0] == "k"
    table = registered[0][1]
    assert table == list(range(9)) + [1, 1, 1, 2] + [0, 0, 0, 1, 0, 1] + [0] * 7 + [0, 0, 0, 1, 1, 1] + [0] * 7
    assert registered[0][5][18] == 1  # the forward on stock phases


def test_tuned_plans_take_each_pass_its_own_config(monkeypatch):
    """Autotuned: each pass is planned with its own tuned kernel (None: the heuristic's), where a forced
    config would be one list for all three; the stock forward's phases take the tuned forward kernel."""
    asked = []

    def plan_cached(p, op, precision, config, *a):
        asked.append((op, config))
        return _plan("cutlass", tap_reuse=False) if op == "dgrad" else _plan()

    def stock_phases(p, precision, config, *a):
        asked.append(("phases", config))
        return ("k",), ((0, 0, 0),), (0,) * 9, ((1, 1, 1),), (1,)

    monkeypatch.setattr(eager.launch, "_plan_cached", plan_cached)
    monkeypatch.setattr(eager.launch, "_stock_phases", stock_phases)
    monkeypatch.setattr(eager.launch, "sum_rows", lambda *a: 0)
    x, w = torch.randn(1, 4, 3, 3, 3), torch.randn(4, 2, 1, 1, 1)
    p = Problem.of(x, w, 2, 0, 0)
    monkeypatch.setattr(eager, "_register", lambda *a: 0)
    eager._build((p, "tf32", None, 0, "", False, ("fwd_k", None, "gw_k")), x)
    assert asked == [("dgrad", "fwd_k"), ("fprop", None), ("wgrad", "gw_k"), ("phases", "fwd_k")]
    asked.clear()
    eager._build((p, "tf32", "forced", 0, "", False, None), x)
    assert asked == [("dgrad", "forced"), ("fprop", "forced"), ("wgrad", "forced"), ("phases", "forced")]


def test_autotune_generation_moves_on_clear_memory():
    from convt3d_cutlass import autotune
    g = autotune.generation
    autotune.clear_memory()
    assert autotune.generation == g + 1


def test_stock_forward_table_has_each_phases_ints_taps_and_slices(monkeypatch):
    """The node's table of a stock forward (13 integers per phase) against the Python path's own phase
    list (launch._stock_phases' order) and the filter blocks it would relayout."""
    from convt3d_cutlass.launch import _stock_phases
    from convt3d_cutlass.problem import phases
    monkeypatch.setattr(eager.launch, "_select_cached", lambda *a: types.SimpleNamespace(name="k"))
    g1 = Problem(16, 256, 128, (8, 8, 8), 3, 2, 1)
    names, rs, ints, bias_only, splits = _stock_phases(g1, "fp32", None, 0, "")
    table = eager.stock_forward_table(g1, ints, splits)
    assert len(table) == 13 * len(names) == 13 * 8 and not bias_only
    w = torch.randn(4, 3, 3, 3, 3)
    for i, (ph, r) in enumerate(zip([q for q in phases(g1) if not q.empty and not q.no_taps], rs)):
        row = table[13 * i:13 * i + 13]
        assert row[:9] == list(ints[9 * i:9 * i + 9]) and row[12] == splits[i]
        assert tuple(w.permute(0, 2, 3, 4, 1)[:, r[0]::2, r[1]::2, r[2]::2].shape[1:4]) == tuple(row[9:12])
        assert tuple(ph.taps) == tuple(row[9:12])
    one = Problem(2, 6, 5, (4, 5, 6), 3, 1, 1)  # unit stride: one phase, run unsplit
    names, rs, ints, _, splits = _stock_phases(one, "fp32", None, 0, "")
    assert eager.stock_forward_table(one, ints, splits) == list(ints) + [3, 3, 3, 1]


def test_stock_phase_filter_is_the_phase_filters_end_to_end_and_follows_the_weight():
    from convt3d_cutlass.weights import filter_ktrsc, stock_phase_filter
    w = torch.randn(4, 3, 3, 3, 3)
    rs = ((0, 0, 0), (1, 0, 1), (1, 1, 1))
    flat = stock_phase_filter(w, rs, 2)
    assert torch.equal(flat, torch.cat([filter_ktrsc(w, r, 2).reshape(-1) for r in rs]))
    assert stock_phase_filter(w, rs, 2).data_ptr() == flat.data_ptr()  # cached
    before = flat.clone()
    with torch.no_grad():
        w.mul_(-0.5)  # an optimizer step in place: the next call must see it
    assert torch.equal(stock_phase_filter(w, rs, 2), -0.5 * before)


def test_plan_ints_take_the_ffma_rows_nc_modes(monkeypatch):
    """v0.83: on an NCDHW layer the FFMA grad_weight's 64-row tile reads x and grad_y in place (items 12 and 17) and
    the FFMA grad_input reads grad_y in place and writes grad_x NCDHW (item 16); on a channels_last_3d x neither;
    the knobs off, neither."""
    from convt3d_cutlass.kernel_table import BY_NAME

    def row(name):
        return types.SimpleNamespace(k=BY_NAME[name], name=name, tap_reuse=False, table=[], slices=1, taps_per_group=1)
    p = Problem(2, 64, 32, (16, 16, 16), 3, 2, 1, 1)  # U-Net 64->32 with output_padding: both FFMA rows
    fwd = _plan("direct", simt=True, precision="fp32")
    gi, gw = row("ffma_fprop_fp32_128x64x32_s3"), row("ffma_wgrad_fp32_64x128x16_s4")
    ints = eager.plan_ints(p, "fp32", False, fwd, gi, gw, False, True)
    assert (ints[9], ints[12], ints[16], ints[17]) == (0, 1, 1, 1)
    assert ints[21] == 0  # nothing for grad_input to copy
    cl = eager.plan_ints(p, "fp32", True, fwd, gi, gw, False, True)
    assert (cl[12], cl[16], cl[17]) == (0, 0, 0)
    wide = row("ffma_wgrad_fp32_128x128x32_s3")  # its NC kernel lost (v0.83): not taken
    assert eager.plan_ints(p, "fp32", False, fwd, gi, wide, False, True)[12] == 0
    monkeypatch.setattr(direct, "FFMA_WGRAD_NCDHW", False)
    monkeypatch.setattr(direct, "FFMA_FPROP_NCDHW", False)
    off = eager.plan_ints(p, "fp32", False, fwd, gi, gw, False, True)
    assert (off[12], off[16], off[17]) == (0, 0, 0)


def test_plan_ints_grad_input_reads_grad_y_after_grad_weight(monkeypatch):
    """Item 16 on an implicit-GEMM grad_input row: set at unit stride (the node runs it on the NCDHW grad_y in place,
    after grad_weight has read and released its channels_last_3d copy), not over a strided layer's grad_y (s_in 2:
    TMA cannot step along w), nor where grad_y's W % 4 != 0, nor with the rule off. grad_weight's item 17 stays 0."""
    gw = _plan("wgmma", slices=33, taps_per_group=3, precision="3xtf32")

    def item16(p):
        k = BY_NAME["igemm_3xtf32_1x8x16_n64_s6"]
        ig = types.SimpleNamespace(k=k, name=k.name, tap_reuse=True, table=list(direct.pass_plan(k, p, "fprop")[0]),
                                   slices=1, taps_per_group=1)
        fwd = types.SimpleNamespace(k=k, name=k.name, tap_reuse=True, table=list(direct.pass_plan(k, p, "dgrad")[0]),
                                    slices=1, taps_per_group=1)
        ints = eager.plan_ints(p, "3xtf32", False, fwd, ig, gw, True, True)
        assert ints[17] == 0
        return ints[16]

    assert item16(Problem(2, 128, 64, (8, 12, 16), 3, 1, 1)) == 1
    assert item16(Problem(2, 128, 64, (8, 12, 16), 3, 2, 1)) == 0
    assert item16(Problem(2, 128, 64, (8, 12, 14), 3, 1, 1)) == 0
    monkeypatch.setattr(direct, "GRAD_INPUT_READS_NCDHW", False)
    assert item16(Problem(2, 128, 64, (8, 12, 16), 3, 1, 1)) == 0
    monkeypatch.setattr(direct, "GRAD_INPUT_READS_NCDHW", True)
    monkeypatch.setattr(direct, "IGEMM_READS_NCDHW", False)
    assert item16(Problem(2, 128, 64, (8, 12, 16), 3, 1, 1)) == 0
    monkeypatch.setattr(direct, "IGEMM_READS_NCDHW", True)
    # tf32 keeps the shared copy (no IN_NC form, and the rule is 3xtf32's)
    k = BY_NAME["igemm_tf32_1x8x16_n64_s8"]
    p = Problem(2, 128, 64, (8, 12, 16), 3, 1, 1)
    ig = types.SimpleNamespace(k=k, name=k.name, tap_reuse=True, table=list(direct.pass_plan(k, p, "fprop")[0]),
                               slices=1, taps_per_group=1)
    assert eager.plan_ints(p, "tf32", False, ig, ig, _plan("wgmma", slices=33, taps_per_group=3), True, True)[16] == 0
