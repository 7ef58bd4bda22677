"""The benchmark's per-pass functions of ours (bench.runner._our_fns) for layers whose channel counts are not
multiples of 4 run the passes padded, as the step does (v0.79): PyTorch's own ops stand in for ours on the CPU, and
must see padded channels in the layer's format, while the passes return the unpadded layer's gradients."""
import types

import pytest
import torch
import torch.nn.functional as F

from bench import runner
from bench.shapes import Case
from convt3d_cutlass.layouts import CL


def _fake_ops(monkeypatch, channels_last, seen):
    def grad_input_op(gy, w, s, p, op, cl, prec, cfg):
        assert gy.shape[1] % 4 == 0 and w.shape[0] % 4 == 0 and w.shape[1] % 4 == 0
        assert cl == channels_last and gy.is_contiguous(memory_format=CL if cl else torch.contiguous_format)
        seen.append("grad_input")
        gx = F.conv3d(gy, w, None, s, p)
        return gx.contiguous(memory_format=CL if cl else torch.contiguous_format)

    def grad_weight_op(gy, x, k, s, p, op, prec, cfg):
        assert gy.shape[1] % 4 == 0 and x.shape[1] % 4 == 0
        seen.append("grad_weight")
        w = x.new_empty((x.shape[1], gy.shape[1], k, k, k))
        return torch.ops.aten.convolution_backward(gy, x, w, None, [s] * 3, [p] * 3, [1] * 3, True, [op] * 3, 1,
                                                   [False, True, False])[1]

    monkeypatch.setattr(runner.ops, "grad_input_op", grad_input_op)
    monkeypatch.setattr(runner.ops, "grad_weight_op", grad_weight_op)
    monkeypatch.setattr(runner.fast_path, "check", lambda *a: "")  # the fast path, as on a GPU


@pytest.mark.parametrize("c_in, c_out", [(32, 1), (3, 32), (6, 5), (8, 4)])
@pytest.mark.parametrize("cl", [False, True])
def test_per_pass_functions_run_padded_layers_padded(c_in, c_out, cl, monkeypatch):
    monkeypatch.delenv("CONVT3D_PAD_CHANNELS", raising=False)
    case = Case("t", 2, c_in, c_out, (4, 5, 3), 3, 2, 1, 1, source="test")
    x = torch.randn(2, c_in, 4, 5, 3, dtype=torch.float64)
    w = torch.randn(c_in, c_out, 3, 3, 3, dtype=torch.float64)
    gy = torch.randn(2, c_out, 8, 10, 6, dtype=torch.float64)
    fmt = CL if cl else torch.contiguous_format
    t = types.SimpleNamespace(case=case, x=x.contiguous(memory_format=fmt), w=w, b=torch.zeros(c_out),
                              gy=gy.contiguous(memory_format=fmt), channels_last=cl)
    seen = []
    _fake_ops(monkeypatch, cl, seen)
    fast, fns = runner._our_fns(t, "tf32")
    assert fast
    gx, gw = fns["grad_input"](), fns["grad_weight"]()
    assert seen == ["grad_input", "grad_weight"]
    ref_x = F.conv3d(gy, w, None, 2, 1)
    ref_w = torch.ops.aten.convolution_backward(gy, x, w, None, [2] * 3, [1] * 3, [1] * 3, True, [1] * 3, 1,
                                                [False, True, False])[1]
    assert gx.shape == ref_x.shape and torch.allclose(gx, ref_x)
    assert gw.shape == ref_w.shape and torch.allclose(gw, ref_w)
    assert gx.is_contiguous(memory_format=fmt)
