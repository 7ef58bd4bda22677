"""API, validation, fallback and module parity: runs on any machine (CI included)."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convt3d_cutlass as ct
from convt3d_cutlass import fast_path, precision


def _x(*shape, **kw):
    return torch.randn(*shape, dtype=torch.float32, **kw)


def test_module_matches_native_weights_and_state_dict():
    torch.manual_seed(0)
    ours = ct.ConvTranspose3d(5, 7, 3, stride=2, padding=1)
    torch.manual_seed(0)
    ref = nn.ConvTranspose3d(5, 7, 3, stride=2, padding=1)
    assert isinstance(ours, nn.ConvTranspose3d)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    for k in ref.state_dict():
        assert torch.equal(ours.state_dict()[k], ref.state_dict()[k])
    ref.load_state_dict(ours.state_dict())
    ours2 = ct.ConvTranspose3d(5, 7, 3, stride=2, padding=1, bias=False)
    assert ours2.bias is None


def test_fallback_equals_torch_and_warns_once_on_cpu():
    x, w, b = _x(2, 3, 4, 5, 6), _x(3, 4, 3, 3, 3), _x(4)
    fast_path._warned.clear()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        y = ct.conv_transpose3d(x, w, b, stride=2, padding=1)
        ct.conv_transpose3d(x, w, b, stride=2, padding=1)
    assert torch.equal(y, F.conv_transpose3d(x, w, b, stride=2, padding=1))
    msgs = [str(r.message) for r in rec if "falling back" in str(r.message)]
    assert len(msgs) == 1 and "CUDA" in msgs[0]


@pytest.mark.parametrize("kw, arg", [
    (dict(groups=2), "groups"),
    (dict(dilation=2), "dilation"),
    (dict(output_padding=(1, 0, 1), stride=2), "output_padding"),
    (dict(stride=(1, 2, 1)), "stride"),
    (dict(padding=(0, 1, 0)), "padding"),
    (dict(stride=5), "stride"),
])
def test_outside_fast_path_falls_back_or_raises_strict(kw, arg):
    groups = kw.get("groups", 1)
    x, w = _x(1, 4, 3, 4, 5), _x(4, 2, 3, 3, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = ct.conv_transpose3d(x, w, **kw)
    assert torch.equal(y, F.conv_transpose3d(x, w, **kw))
    reasons = fast_path.check(x, w, None, kw.get("stride", 1), kw.get("padding", 0),
                              kw.get("output_padding", 0), groups, kw.get("dilation", 1))
    assert arg in [a for a, _ in reasons]


@pytest.mark.parametrize("shape, arg", [((4, 2, 8, 8, 8), "kernel_size"), ((4, 2, 3, 3, 1), "kernel_size")])
def test_large_or_noncubic_kernel_reason(shape, arg):
    x, w = _x(1, 4, 3, 4, 5), _x(*shape)
    reasons = fast_path.check(x, w, None, 1, 0, 0, 1, 1)
    assert arg in [a for a, _ in reasons]
    with pytest.raises(ValueError, match="kernel_size"):
        fast_path.fallback_or_raise([r for r in reasons if r[0] == arg], strict=True)


@pytest.mark.parametrize("k, stride, padding, output_padding", [
    (2, 2, 0, 0), (4, 2, 1, 0), (6, 3, 2, 2), (3, 2, 1, 1), (5, 4, 2, 3), (2, 1, 1, 0)])
def test_even_kernels_and_output_padding_are_on_the_fast_path(k, stride, padding, output_padding):
    # Only the device stands between these and the kernels (CPU tensors here).
    x, w = _x(1, 4, 3, 4, 5), _x(4, 2, k, k, k)
    reasons = fast_path.check(x, w, None, stride, padding, output_padding, 1, 1)
    assert [a for a, _ in reasons] == ["input"]


@pytest.mark.parametrize("stride, output_padding", [(2, 2), (1, 1), (3, 4)])
def test_output_padding_at_or_above_stride_is_a_reason(stride, output_padding):
    x, w = _x(1, 4, 3, 4, 5), _x(4, 2, 3, 3, 3)
    reasons = fast_path.check(x, w, None, stride, 1, output_padding, 1, 1)
    assert "output_padding" in [a for a, _ in reasons]


def test_strict_raises_value_error_naming_argument():
    x, w = _x(1, 4, 3, 4, 5), _x(4, 2, 3, 3, 3)
    with pytest.raises(ValueError, match="'input'"):  # CPU tensor: outside the fast path
        ct.conv_transpose3d(x, w, strict=True)


def test_float64_reason_names_dtype():
    x, w = _x(1, 4, 3, 4, 5).double(), _x(4, 2, 3, 3, 3).double()
    reasons = dict(fast_path.check(x, w, None, 1, 0, 0, 1, 1))
    assert "float64" in reasons["input"] or "float64" in str(reasons)


@pytest.mark.parametrize("make, exc, match", [
    (lambda: (_x(4, 3, 3), _x(4, 2, 3, 3, 3)), RuntimeError, "4D .* or 5D"),
    (lambda: (_x(1, 5, 3, 3, 3), _x(4, 2, 3, 3, 3)), RuntimeError, "channels"),
    (lambda: (_x(1, 4, 3, 3, 3), _x(4, 2, 3, 3)), RuntimeError, "weight"),
])
def test_invalid_input_raises(make, exc, match):
    x, w = make()
    with pytest.raises(exc, match=match):
        ct.conv_transpose3d(x, w)


def test_output_size_nonpositive_raises():
    with pytest.raises(RuntimeError, match="output size"):
        ct.conv_transpose3d(_x(1, 4, 1, 1, 1), _x(4, 2, 3, 3, 3), padding=2)


def test_bad_bias_shape_raises():
    with pytest.raises(RuntimeError, match="bias"):
        ct.conv_transpose3d(_x(1, 4, 3, 3, 3), _x(4, 2, 3, 3, 3), _x(3))


def test_bad_precision_names_argument_and_choices():
    with pytest.raises(ValueError, match="precision must be one of"):
        ct.conv_transpose3d(_x(1, 4, 3, 3, 3), _x(4, 2, 3, 3, 3), precision="fp16")
    with pytest.raises(ValueError, match="precision"):
        ct.ConvTranspose3d(4, 2, 3, precision="bf16")


def test_precision_resolution_order(monkeypatch):
    monkeypatch.delenv("CONVT3D_PRECISION", raising=False)
    old = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = True
        assert precision.resolve("auto") == "tf32"
        torch.backends.cudnn.allow_tf32 = False
        assert precision.resolve("auto") == "fp32"
        monkeypatch.setenv("CONVT3D_PRECISION", "3xtf32")
        assert precision.resolve("auto") == "3xtf32"
        with ct.set_precision("tf32"):
            assert precision.resolve("auto", None) == "tf32"
            assert precision.resolve("fp32") == "fp32"
            assert precision.resolve(None, "3xtf32") == "3xtf32"
        assert precision.resolve() == "3xtf32"
        monkeypatch.setenv("CONVT3D_PRECISION", "fp64")
        with pytest.raises(ValueError, match="CONVT3D_PRECISION"):
            precision.resolve()
    finally:
        torch.backends.cudnn.allow_tf32 = old


def test_unbatched_input_matches_torch():
    x, w = _x(4, 3, 4, 5), _x(4, 2, 3, 3, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.equal(ct.conv_transpose3d(x, w), F.conv_transpose3d(x, w))


def test_convert_model_swaps_in_place_keeping_parameters():
    model = nn.Sequential(nn.Conv3d(2, 4, 3), nn.ConvTranspose3d(4, 3, 3, stride=2),
                          nn.Sequential(nn.ReLU(), nn.ConvTranspose3d(3, 1, 5, padding=2, bias=False)))
    params = [id(p) for p in model.parameters()]
    x = _x(1, 2, 5, 5, 5)
    ref = model(x)
    out = ct.convert_model(model, precision="fp32")
    assert out is model
    assert isinstance(model[1], ct.ConvTranspose3d) and isinstance(model[2][1], ct.ConvTranspose3d)
    assert model[1].precision == "fp32"
    assert [id(p) for p in model.parameters()] == params
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.equal(model(x), ref)
    single = ct.convert_model(nn.ConvTranspose3d(2, 2, 3))
    assert isinstance(single, ct.ConvTranspose3d)


def test_module_output_size_argument_falls_back_correctly():
    m = ct.ConvTranspose3d(3, 2, 3, stride=2, padding=1)
    x = _x(1, 3, 4, 4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = m(x, output_size=[8, 8, 8])
    ref = F.conv_transpose3d(x, m.weight, m.bias, 2, 1, output_padding=1)
    assert y.shape[-3:] == (8, 8, 8) and torch.equal(y, ref)


def test_configs_lists_the_table():
    rows = ct.configs()
    assert len(rows) == len({r["name"] for r in rows}) >= 15
    for op in ("dgrad", "fprop", "wgrad"):
        for prec in ("fp32", "tf32", "3xtf32"):
            assert any(r["op"] == op and r["precision"] == prec for r in rows)
    assert {"name", "op", "precision", "arch", "tile", "warp", "stages", "align", "compiled"} <= set(rows[0])


def test_autograd_through_fallback():
    x = _x(1, 3, 3, 4, 5, requires_grad=True)
    m = ct.ConvTranspose3d(3, 2, 3, stride=2, padding=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m(x).square().sum().backward()
    ref = nn.ConvTranspose3d(3, 2, 3, stride=2, padding=1)
    ref.load_state_dict(m.state_dict())
    x2 = x.detach().clone().requires_grad_()
    ref(x2).square().sum().backward()
    assert torch.allclose(x.grad, x2.grad) and torch.allclose(m.weight.grad, ref.weight.grad)


def test_misaligned_views_are_copied_to_16_byte_boundaries():
    """Kernels read 16 bytes at a time: a view starting mid-vector (FSDP flat parameters) is copied."""
    from convt3d_cutlass.layouts import CL, aligned16, ndhwc
    flat = torch.randn(1 + 2 * 8 * 3 * 4 * 5)
    x = flat[1:].view(2, 3, 4, 5, 8).permute(0, 4, 1, 2, 3)  # channels_last_3d, 4 bytes off
    assert x.is_contiguous(memory_format=CL) and x.data_ptr() % 16 == 4
    got = ndhwc(x)
    assert got.data_ptr() % 16 == 0 and torch.equal(got, x.permute(0, 2, 3, 4, 1))
    ok = torch.randn(4, 8)
    assert aligned16(ok) is ok


def _fake_fast_path(monkeypatch):
    """The fast path as if on a GPU (CPU tensors): check() passes, ops.apply returns a marker and
    records its arguments; _validate and check() count their calls."""
    from convt3d_cutlass import functional, ops
    calls = {"validate": 0, "check": 0, "apply": []}
    validate, check = functional._validate, functional.fast_path.check

    def counted_validate(*a):
        calls["validate"] += 1
        return validate(*a)

    def passing_check(*a):
        calls["check"] += 1
        return [r for r in check(*a) if r[1] != "input is not a CUDA tensor"]

    def fake_apply(x, w, b, s, p, op, prec, cfg, problem=None):
        calls["apply"].append((tuple(x.shape), s, p, op, problem))
        return torch.zeros(1)

    monkeypatch.setattr(functional, "_fast_calls", {})
    monkeypatch.setenv("CONVT3D_PAD_CHANNELS", "0")  # the layers below have 2 output channels, run as given
    monkeypatch.setattr(functional, "_validate", counted_validate)
    monkeypatch.setattr(functional.fast_path, "check", passing_check)
    monkeypatch.setattr(ops, "apply", fake_apply)
    return calls


def test_fast_path_calls_are_validated_once_per_signature(monkeypatch):
    calls = _fake_fast_path(monkeypatch)
    x, w, b = _x(2, 4, 3, 4, 5), nn.Parameter(_x(4, 2, 3, 3, 3)), _x(2)
    for _ in range(3):
        ct.conv_transpose3d(x, w, b, stride=2, padding=1)
    assert calls["validate"] == 1 and calls["check"] == 1
    ct.conv_transpose3d(_x(2, 4, 3, 4, 6), w, b, stride=2, padding=1)  # another shape
    ct.conv_transpose3d(x, w, None, stride=2, padding=1)  # no bias
    ct.conv_transpose3d(x, w, b, stride=(2, 2, 2), padding=1)  # the same layer, stride as a tuple
    assert calls["validate"] == 4 and calls["check"] == 4
    (shape, s, p, op, problem), = set(calls["apply"][:3])
    assert (shape, s, p, op) == ((2, 4, 3, 4, 5), 2, 1, 0)
    assert problem == ct.problem.Problem.of(x, w, 2, 1, 0)
    # Unbatched input: the cached entry keeps the batch dimension it added.
    ct.conv_transpose3d(x[0], w, b, stride=2, padding=1)
    ct.conv_transpose3d(x[0], w, b, stride=2, padding=1)
    assert calls["apply"][-1][0] == (1, 4, 3, 4, 5) and calls["validate"] == 5


@pytest.mark.parametrize("kw, exc", [
    (dict(stride=1.0), TypeError),                       # equal to 1, but not a valid stride
    (dict(stride=[1, 1, 1]), None),                      # unhashable: validated every time
    (dict(padding=-1), ValueError),
])
def test_call_cache_keeps_validation_of_equal_looking_arguments(monkeypatch, kw, exc):
    calls = _fake_fast_path(monkeypatch)
    x, w = _x(1, 4, 3, 3, 3), _x(4, 2, 3, 3, 3)
    ct.conv_transpose3d(x, w, stride=1, padding=0)
    before = calls["validate"]
    if exc is None:
        ct.conv_transpose3d(x, w, **kw)
        ct.conv_transpose3d(x, w, **kw)
        assert calls["validate"] == before + 2
    else:
        with pytest.raises(exc):
            ct.conv_transpose3d(x, w, **kw)


def test_call_cache_still_rejects_bad_tensors(monkeypatch):
    _fake_fast_path(monkeypatch)
    x, w = _x(1, 4, 3, 3, 3), _x(4, 2, 3, 3, 3)
    ct.conv_transpose3d(x, w, _x(2))
    with pytest.raises(RuntimeError, match="bias"):
        ct.conv_transpose3d(x, w, _x(3))
    with pytest.raises(RuntimeError, match="channels"):
        ct.conv_transpose3d(_x(1, 5, 3, 3, 3), w)


def test_unaligned_channels_reach_the_kernels_padded(monkeypatch):
    # C_in 3 and C_out 2 run as 4 and 4 (channel_pad): the op gets the padded tensors and Problem, the caller
    # the first 2 channels of its output, in the input's format
    calls = _fake_fast_path(monkeypatch)
    monkeypatch.setenv("CONVT3D_PAD_CHANNELS", "1")
    from convt3d_cutlass import ops
    from convt3d_cutlass.layouts import CL

    def fake_apply(x, w, b, s, p, op, prec, cfg, problem=None):
        calls["apply"].append((x, w, b, problem))
        return torch.arange(2 * 4 * 5 * 7 * 9, dtype=x.dtype).view(2, 4, 5, 7, 9).contiguous(memory_format=CL)

    monkeypatch.setattr(ops, "apply", fake_apply)
    x = _x(2, 3, 3, 4, 5).contiguous(memory_format=CL)
    w, b = _x(3, 2, 3, 3, 3), _x(2)
    y = ct.conv_transpose3d(x, w, b, stride=2, padding=1)
    (xp, wp, bp, problem), = calls["apply"]
    assert problem == ct.problem.Problem(2, 4, 4, (3, 4, 5), 3, 2, 1, 0)
    assert xp.shape == (2, 4, 3, 4, 5) and xp.is_contiguous(memory_format=CL) and torch.equal(xp[:, :3], x)
    assert torch.count_nonzero(xp[:, 3:]) == 0
    assert wp.shape == (4, 4, 3, 3, 3) and torch.equal(wp[:3, :2], w) and torch.count_nonzero(wp[3:]) == 0
    assert torch.count_nonzero(wp[:, 2:]) == 0 and torch.equal(bp, torch.cat([b, b.new_zeros(2)]))
    full = fake_apply(xp, wp, bp, 2, 1, 0, None, None)
    assert y.shape == (2, 2, 5, 7, 9) and torch.equal(y, full[:, :2]) and y.is_contiguous(memory_format=CL)
