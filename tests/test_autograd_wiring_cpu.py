"""The backward's wiring (which passes run, with what arguments) checked on the CPU with the
kernel ops replaced by recorders; the GPU tests check the numbers."""
import types

import pytest
import torch

from convt3d_cutlass import ops


class _Ctx(types.SimpleNamespace):
    pass


def _ctx(x, w, needs, has_bias=True):
    return _Ctx(saved_tensors=(x, w), needs_input_grad=needs + (False,) * 4, has_bias=has_bias,
                stride=2, padding=1, output_padding=1, precision="3xtf32", config="")


@pytest.mark.parametrize("needs", [(True, True, True), (True, False, False), (False, True, False),
                                   (False, False, True), (False, False, False)])
def test_backward_runs_only_needed_passes(needs, monkeypatch):
    calls = []
    monkeypatch.setattr(ops, "grad_input_op", lambda gy, w, s, p, op, cl, prec, cfg: calls.append(
        ("input", s, p, op, cl, prec)) or torch.zeros(1))
    monkeypatch.setattr(ops, "grad_weight_op", lambda gy, x, k, s, p, op, prec, cfg: calls.append(
        ("weight", k, s, p, op, prec)) or torch.zeros(1))
    x = torch.randn(1, 4, 3, 3, 3).to(memory_format=torch.channels_last_3d)
    w = torch.randn(4, 2, 3, 3, 3)
    gy = torch.randn(1, 2, 6, 6, 6)
    with torch.no_grad():
        gx, gw, gb, *rest = ops._backward(_ctx(x, w, needs), gy)
    want = ([("input", 2, 1, 1, True, "3xtf32")] if needs[0] else []) + \
           ([("weight", 3, 2, 1, 1, "3xtf32")] if needs[1] else [])
    assert calls == want
    assert (gx is not None) == needs[0] and (gw is not None) == needs[1] and (gb is not None) == needs[2]
    if needs[2]:
        assert torch.allclose(gb, gy.sum((0, 2, 3, 4)))
    assert rest == [None] * 5


def test_no_bias_gives_no_bias_grad(monkeypatch):
    monkeypatch.setattr(ops, "grad_input_op", lambda *a: torch.zeros(1))
    x, w, gy = torch.randn(1, 4, 3, 3, 3), torch.randn(4, 2, 3, 3, 3), torch.randn(1, 2, 6, 6, 6)
    with torch.no_grad():
        assert ops._backward(_ctx(x, w, (True, False, True), has_bias=False), gy)[2] is None


def test_create_graph_uses_differentiable_native_formula():
    # Under grad mode (create_graph=True) the backward must stay differentiable: compare with
    # autograd of the native op in float64 on the CPU.
    x = torch.randn(1, 3, 3, 4, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    gy = torch.randn(1, 2, 6, 8, 4, dtype=torch.float64)
    with torch.enable_grad():
        gx, gw, gb, *_ = ops._backward(_ctx(x, w, (True, True, True)), gy)
    assert gx.requires_grad and gw.requires_grad
    y = torch.nn.functional.conv_transpose3d(x, w, torch.zeros(2, dtype=torch.float64), 2, 1, 1)
    rx, rw = torch.autograd.grad(y, (x, w), gy)
    torch.testing.assert_close(gx, rx)
    torch.testing.assert_close(gw, rw)
    torch.testing.assert_close(gb, gy.sum((0, 2, 3, 4)))


def test_autograd_function_path(monkeypatch):
    """The eager (and torch < 2.4) path, autograd.Function, with the passes replaced by PyTorch on
    the CPU: its backward calls the passes directly, not the custom ops."""
    import torch.nn.functional as F
    monkeypatch.setattr(ops, "_fwd", lambda x, w, b, s, p, op, prec, cfg, problem=None:
                        F.conv_transpose3d(x, w, b, s, p, op))
    monkeypatch.setattr(ops, "grad_input_op", None)
    monkeypatch.setattr(ops, "grad_weight_op", None)
    monkeypatch.setattr(ops, "_grad_in", lambda gy, w, s, p, op, cl, prec, cfg, problem=None: F.conv3d(gy, w, None, s, p))
    # grad_input that could not sum grad_y for the bias: the backward sums it itself.
    monkeypatch.setattr(ops, "_grad_in_bias", lambda gy, w, s, p, op, cl, prec, cfg, problem=None:
                        (F.conv3d(gy, w, None, s, p), None))
    monkeypatch.setattr(ops, "_grad_w", lambda gy, x, k, s, p, op, prec, cfg, problem=None: torch.ops.aten.convolution_backward(
        gy, x, torch.empty(x.shape[1], gy.shape[1], k, k, k, dtype=x.dtype), None, [s] * 3, [p] * 3,
        [1] * 3, True, [op] * 3, 1, [False, True, False])[1])
    x = torch.randn(2, 3, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    y = ops.ConvTranspose3dFunction.apply(x, w, b, 2, 1, 1, "fp32", "")
    gy = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, w, b), gy)
    ref = torch.autograd.grad(F.conv_transpose3d(x, w, b, 2, 1, 1), (x, w, b), gy)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r)


@pytest.mark.skipif(not ops.HAS_CUSTOM_OP, reason="torch.library.custom_op needs torch >= 2.4")
def test_eager_mode_takes_the_autograd_function_not_the_custom_op(monkeypatch):
    """The custom ops are for torch.compile; eager calls skip their Python dispatch."""
    import torch.nn.functional as F
    monkeypatch.setattr(ops, "_fwd", lambda x, w, b, s, p, op, prec, cfg, problem=None:
                        F.conv_transpose3d(x, w, b, s, p, op))
    x = torch.randn(1, 3, 3, 3, 3, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, 3, requires_grad=True)
    y = ops.apply(x, w, None, 1, 0, 0, "fp32", None)
    assert type(y.grad_fn).__name__ == "ConvTranspose3dFunctionBackward"
