"""channel_pad: layers whose channel counts are not multiples of 4 run padded with zero channels (CPU: the
padding, cropping and their gradients around PyTorch's own op, in float64)."""
import pytest
import torch
import torch.nn.functional as F

from convt3d_cutlass import channel_pad, functional, ops
from convt3d_cutlass.layouts import CL
from convt3d_cutlass.problem import Problem


def test_padded_problem_rounds_channels_up_to_multiples_of_4():
    p = Problem(2, 32, 1, (4, 5, 6), 3, 2, 1, 1)
    q = channel_pad.padded_problem(p)
    assert (q.c_in, q.c_out) == (32, 4) and (q.n, q.spatial, q.k, q.stride, q.padding, q.output_padding) == (
        2, (4, 5, 6), 3, 2, 1, 1)
    assert channel_pad.padded_problem(Problem(1, 3, 6, (4, 4, 4), 3)).c_in == 4
    assert channel_pad.padded_problem(Problem(1, 3, 6, (4, 4, 4), 3)).c_out == 8
    assert channel_pad.padded_problem(Problem(1, 8, 24, (4, 4, 4), 3)) is None


def test_enabled_follows_the_environment(monkeypatch):
    monkeypatch.delenv("CONVT3D_PAD_CHANNELS", raising=False)
    assert channel_pad.enabled()
    monkeypatch.setenv("CONVT3D_PAD_CHANNELS", "0")
    assert not channel_pad.enabled()


def _padded_layer(monkeypatch, x, w, b, s, p, op):
    """(functional._apply_padded's output, the padded layer's output) with PyTorch's op in place of ours (its
    output in x's format, as ours)."""
    seen = {}

    def torch_op(xp, wp, bp, s, p, op, precision, config, problem):
        assert problem == Problem.of(xp, wp, s, p, op)
        seen["yp"] = F.conv_transpose3d(xp, wp, bp, s, p, op).contiguous(memory_format=channel_pad._format(xp))
        return seen["yp"]

    monkeypatch.setattr(ops, "apply", torch_op)
    prob = channel_pad.padded_problem(Problem.of(x, w, s, p, op))
    return functional._apply_padded(x, w, b, s, p, op, "fp32", None, prob), seen["yp"]


@pytest.mark.parametrize("c_in, c_out", [(32, 1), (8, 3), (3, 16), (6, 5)])
@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("s, p, op", [(1, 1, 0), (2, 1, 1)])
def test_padded_layer_has_the_layers_outputs_and_gradients(c_in, c_out, cl, s, p, op, monkeypatch):
    torch.manual_seed(c_in * 100 + c_out)
    x = torch.randn(2, c_in, 3, 4, 5, dtype=torch.float64)
    if cl:
        x = x.to(memory_format=CL)
    x.requires_grad_()
    w = torch.randn(c_in, c_out, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(c_out, dtype=torch.float64, requires_grad=True)
    y, yp = _padded_layer(monkeypatch, x, w, b, s, p, op)
    ref_x, ref_w, ref_b = (t.detach().clone().requires_grad_() for t in (x, w, b))
    ref = F.conv_transpose3d(ref_x, ref_w, ref_b, s, p, op)
    assert y.shape == ref.shape and torch.allclose(y, ref, rtol=1e-12, atol=1e-12)
    # the padded output's own channels past C_out are the zero filter's: the bias pad (zero) alone
    assert yp.shape[1] % 4 == 0 and torch.count_nonzero(yp[:, c_out:]) == 0
    if cl and c_out > 1:
        assert y.is_contiguous(memory_format=CL) and not y.is_contiguous()
    gy = torch.randn_like(ref)
    y.backward(gy)
    ref.backward(gy)
    for got, want in ((x.grad, ref_x.grad), (w.grad, ref_w.grad), (b.grad, ref_b.grad)):
        assert got.shape == want.shape and torch.allclose(got, want, rtol=1e-12, atol=1e-12)


def test_cropped_gradient_is_padded_in_the_padded_outputs_format():
    # A 1-channel gradient is contiguous in both formats: the pad follows the cropped tensor's format.
    yp = torch.randn(2, 4, 3, 4, 5).to(memory_format=CL).requires_grad_()
    seen = {}
    yp.register_hook(lambda g: seen.setdefault("g", g))
    channel_pad.crop_channels(yp, 1).backward(torch.ones(2, 1, 3, 4, 5))
    g = seen["g"]
    assert g.is_contiguous(memory_format=CL) and not g.is_contiguous()
    assert torch.equal(g[:, :1], torch.ones(2, 1, 3, 4, 5)) and torch.count_nonzero(g[:, 1:]) == 0


def test_padded_weight_is_cached_per_version_and_each_call_differentiable():
    w = torch.randn(3, 5, 3, 3, 3, requires_grad=True)
    a, b = channel_pad.pad_weight(w, 4, 8), channel_pad.pad_weight(w, 4, 8)
    # one cached padded filter (the kernels' filter caches key on it), two graph nodes
    assert a.data_ptr() == b.data_ptr() and a.grad_fn is not b.grad_fn
    assert torch.equal(a[:3, :5], w) and torch.count_nonzero(a[3:]) == 0 and torch.count_nonzero(a[:, 5:]) == 0
    # a shared weight used twice before one backward: both uses' gradients arrive
    (a.sum() + 2 * b.sum()).backward()
    assert torch.equal(w.grad, torch.full_like(w, 3.0))
    with torch.no_grad():
        w.add_(1.0)  # an optimizer step in place: the cache sees the new version
    c = channel_pad.pad_weight(w, 4, 8)
    assert torch.equal(c[:3, :5], w) and torch.count_nonzero(c[3:]) == 0


def test_aligned_tensors_pass_through():
    x, w = torch.randn(1, 8, 2, 2, 2), torch.randn(8, 4, 3, 3, 3)
    assert channel_pad.pad_channels(x, 8) is x and channel_pad.crop_channels(x, 8) is x
    assert channel_pad.pad_weight(w, 8, 4) is w


@pytest.mark.parametrize("cl", [False, True])
def test_padded_inputs_gradient_is_packed_in_the_inputs_format(cl):
    x = torch.randn(2, 3, 3, 4, 5)
    if cl:
        x = x.to(memory_format=CL)
    h = (x * 1.0).requires_grad_()  # not a leaf: what the layer before receives, as it comes
    seen = {}
    h.register_hook(lambda g: seen.setdefault("g", g))
    xp = channel_pad.pad_channels(h, 4)
    assert xp.shape[1] == 4 and torch.count_nonzero(xp[:, 3:]) == 0 and torch.equal(xp[:, :3], x)
    gp = torch.randn(2, 4, 3, 4, 5)
    xp.backward(gp)
    g = seen["g"]
    assert torch.equal(g, gp[:, :3])
    assert (g.is_contiguous(memory_format=CL) and not g.is_contiguous()) if cl else g.is_contiguous()


def test_padding_traces_under_torch_compile(monkeypatch):
    # Under torch.compile the padding is plain F.pad and slicing (no autograd.Function, no filter cache): the
    # traced layer has the eager one's outputs and gradients.
    compile_ = getattr(torch, "compile", None)
    if compile_ is None:
        pytest.skip("torch.compile needs torch >= 2.0")
    torch.manual_seed(0)
    x = torch.randn(2, 3, 3, 4, 5, dtype=torch.float64).to(memory_format=CL)
    w = torch.randn(3, 5, 3, 3, 3, dtype=torch.float64)

    def layer(x, w):
        return _padded_layer(monkeypatch, x, w, None, 2, 1, 1)[0]

    got_x, got_w = x.clone().requires_grad_(), w.clone().requires_grad_()
    ref_x, ref_w = x.clone().requires_grad_(), w.clone().requires_grad_()
    y = compile_(layer, backend="eager", fullgraph=True)(got_x, got_w)
    ref = F.conv_transpose3d(ref_x, ref_w, None, 2, 1, 1)
    assert y.shape == ref.shape and torch.allclose(y, ref, rtol=1e-12, atol=1e-12)
    gy = torch.randn_like(ref)
    y.backward(gy)
    ref.backward(gy)
    assert torch.allclose(got_x.grad, ref_x.grad, rtol=1e-12, atol=1e-12)
    assert torch.allclose(got_w.grad, ref_w.grad, rtol=1e-12, atol=1e-12)
