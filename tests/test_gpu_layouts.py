"""The layout transpose kernel (NCDHW <-> channels_last_3d) against torch's own copy: bitwise equal,
every element written, on odd shapes, channel counts below and above one 64-channel block and position
counts off the 128-position tile; its channel sums (the bias gradient) against float64."""
import pytest
import torch

from convt3d_cutlass.layouts import CL, channels_last_with_sums, ndhwc, to_format

from conftest import poison_allocator, requires_gpu

pytestmark = [requires_gpu, pytest.mark.gpu]


@pytest.mark.parametrize("shape", [(2, 3, 5, 7, 9), (1, 24, 17, 33, 31), (3, 48, 4, 4, 4), (2, 33, 1, 65, 2),
                                   (1, 8, 40, 40, 40), (1, 1, 3, 3, 3), (2, 130, 3, 5, 11), (1, 64, 2, 8, 8),
                                   (2, 24, 4, 6, 10), (1, 72, 4, 4, 6)])
def test_transpose_matches_torch_both_ways(shape):
    x = torch.randn(shape, device="cuda")
    poison_allocator()
    got = ndhwc(x)
    assert got.is_contiguous() and got.shape == (shape[0],) + shape[2:] + (shape[1],)
    assert torch.equal(got, x.permute(0, 2, 3, 4, 1))
    y = torch.randn(shape, device="cuda").to(memory_format=CL)
    poison_allocator()
    back = to_format(y, False)
    assert back.is_contiguous() and torch.equal(back, y)


@pytest.mark.parametrize("shape,z0,dz", [((2, 3, 9, 7, 9), 2, 4), ((1, 32, 16, 12, 12), 12, 4),
                                         ((3, 130, 5, 3, 11), 0, 2), ((2, 1, 6, 4, 4), 5, 1)])
def test_transpose_of_a_depth_slab(shape, z0, dz):
    """A depth slab of a packed NCDHW tensor (x.narrow(2, ...), the exact-fp32 grad_weight's slabs) to channels_last_3d,
    read through its own channel and sample strides: bitwise torch's copy, every element written; its sums too."""
    x = torch.randn(shape, device="cuda")
    slab = x.narrow(2, z0, dz)
    assert not slab.is_contiguous()
    n, c, _, h, w = shape
    out = torch.empty((n, dz, h, w, c), device="cuda")
    sums = torch.empty((n, torch.ops.convt3d_cutlass.transpose_tiles(dz * h * w), c), device="cuda")
    poison_allocator()
    torch.ops.convt3d_cutlass.transpose_layout(slab, out, True, sums)
    assert torch.equal(out, slab.permute(0, 2, 3, 4, 1))
    ref = slab.double().sum((2, 3, 4))
    assert torch.allclose(sums.double().sum(1), ref, rtol=1e-5, atol=1e-4)
    with pytest.raises(RuntimeError, match="depth slab"):  # back to NCDHW, src must be packed
        torch.ops.convt3d_cutlass.transpose_layout(out[:, :, ::2], torch.empty_like(x), False, None)


@pytest.mark.parametrize("offset", [1, 2, 4])
def test_transpose_of_a_view_with_a_storage_offset(offset):
    # A tensor that starts 4, 8 or 16 bytes into its storage, rows of 4k positions and a partial last tile.
    shape = (2, 24, 4, 6, 10)
    base = torch.randn(offset + 2 * 24 * 240, device="cuda")
    x = base[offset:].view(shape)
    assert x.is_contiguous()
    poison_allocator()
    got = ndhwc(x)
    assert torch.equal(got, x.permute(0, 2, 3, 4, 1))
    got, sums = channels_last_with_sums(x)
    assert torch.equal(got, x)
    ref = x.double().sum((0, 2, 3, 4))
    assert ((sums.double() - ref).norm() / ref.norm()).item() < 1e-6


def test_channels_last_input_is_not_copied():
    y = torch.randn(2, 8, 4, 4, 4, device="cuda").to(memory_format=CL)
    assert ndhwc(y).data_ptr() == y.data_ptr()
    assert to_format(y, True) is y


@pytest.mark.parametrize("shape", [(2, 3, 5, 7, 9), (3, 48, 4, 4, 4), (2, 130, 3, 5, 11), (1, 24, 20, 20, 20),
                                   (2, 72, 2, 6, 10)])
def test_channels_last_with_sums(shape):
    x = torch.randn(shape, device="cuda") + 0.5  # a nonzero mean: a dropped tile shows in the sums
    poison_allocator()
    got, sums = channels_last_with_sums(x)
    assert got.shape == x.shape and got.is_contiguous(memory_format=CL) and torch.equal(got, x)
    ref = x.double().sum((0, 2, 3, 4))
    assert ((sums.double() - ref).norm() / ref.norm()).item() < 1e-6
    assert channels_last_with_sums(got) is None  # channels_last already: nothing to convert


def test_ncdhw_backward_converts_grad_y_once(monkeypatch):
    # grad_input, grad_weight and the bias gradient of an NCDHW step share one conversion of grad_y
    # (the Python Function's backward; the C++ node's: test_gpu_eager_node.py).
    monkeypatch.setenv("CONVT3D_EAGER_NODE", "0")
    from convt3d_cutlass import direct
    monkeypatch.setattr(direct, "COPY_GRAD_Y", False)  # not grad_input's copy (test_gpu_grad_y_copy.py)
    calls = []
    ns = torch.ops.convt3d_cutlass

    class Ops:
        def __getattr__(self, name):
            return getattr(ns, name)

        def transpose_layout(self, src, dst, to_cl, sums=None):
            calls.append((tuple(src.shape), to_cl))
            return ns.transpose_layout(src, dst, to_cl, sums)

    monkeypatch.setattr(torch.ops, "convt3d_cutlass", Ops(), raising=False)
    import convt3d_cutlass as ct
    x = torch.randn(2, 8, 6, 6, 6, device="cuda", requires_grad=True)
    w = torch.randn(8, 4, 3, 3, 3, device="cuda", requires_grad=True)
    b = torch.randn(4, device="cuda", requires_grad=True)
    y = ct.conv_transpose3d(x, w, b, 1, 1, precision="3xtf32", strict=True)
    calls.clear()
    y.backward(torch.randn_like(y))
    grad_y_conversions = [c for c in calls if c == (tuple(y.shape), True)]
    assert len(grad_y_conversions) == 1, calls
