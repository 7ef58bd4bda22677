"""The backward pass's reduction kernels (csrc/reductions.cu): the bias gradient of a channels_last
grad_y and the weight gradient's sum over partial slices, against float64 on odd shapes (channel
counts below one warp, off the 32-channel tile, row counts off every block), every element checked,
results poisoned first, and bitwise reproducible."""
import pytest
import torch

from convt3d_cutlass import launch
from convt3d_cutlass.layouts import CL, channel_sums, row_sums
from convt3d_cutlass.problem import Problem

from conftest import cuda_kernel_counts, poison_allocator, requires_gpu

pytestmark = [requires_gpu, pytest.mark.gpu]


def _rel(got, ref):
    return ((got.double() - ref).norm() / ref.norm()).item()


@pytest.mark.parametrize("shape", [(2, 3, 5, 7, 9), (16, 128, 16, 16, 16), (1, 8, 40, 40, 40), (3, 24, 9, 9, 9),
                                   (1, 1, 3, 3, 3), (2, 200, 3, 5, 11), (1, 32, 1, 1, 1), (2, 5, 33, 1, 3),
                                   (4, 64, 32, 32, 32), (1, 40, 4, 16, 16), (1, 40, 1, 1, 1025)])
def test_channel_sums_match_float64(shape):
    x = (torch.randn(shape, device="cuda") + 0.5).to(memory_format=CL)  # nonzero mean: a lost row shows
    poison_allocator()
    got = channel_sums(x)
    assert got.shape == (shape[1],) and torch.isfinite(got).all()
    assert _rel(got, x.double().sum((0, 2, 3, 4))) < 1e-6
    assert torch.equal(got, channel_sums(x))  # fixed order: bitwise reproducible


def test_channel_sums_of_ncdhw_fall_back_to_torch():
    x = torch.randn(2, 6, 4, 4, 4, device="cuda")
    assert torch.equal(channel_sums(x), x.sum((0, 2, 3, 4)))


@pytest.mark.parametrize("slices,k,ci,co", [(1, 3, 48, 24), (2, 3, 256, 128), (19, 3, 128, 64), (5, 5, 33, 70),
                                            (40, 3, 16, 8), (3, 7, 4, 40), (1152, 3, 48, 24), (7, 1, 130, 31),
                                            (8, 3, 9, 40), (127, 3, 64, 8), (128, 2, 64, 32), (576, 3, 48, 24),
                                            (129, 5, 4, 12)])
@pytest.mark.parametrize("tap_major", [True, False])
def test_wgrad_finish_matches_float64(slices, k, ci, co, tap_major):
    t = k ** 3
    shape = (slices, t, ci, co) if tap_major else (slices, ci, k, k, k, co)
    partials = torch.randn(shape, device="cuda")
    poison_allocator()
    got = launch._finish(partials, Problem(1, ci, co, (4, 4, 4), k, 1, 0))
    ref = partials.double().sum(0)
    ref = (ref.view(k, k, k, ci, co).permute(3, 4, 0, 1, 2) if tap_major else ref.permute(0, 4, 1, 2, 3))
    assert got.shape == (ci, co, k, k, k) and got.is_contiguous()
    assert _rel(got, ref) < 1e-6
    assert torch.equal(got, launch._finish(partials, Problem(1, ci, co, (4, 4, 4), k, 1, 0)))


def test_wgrad_finish_kernel_alone_sums_many_slices():
    # The op on its own, into a NaN-filled result: one launch of the finish kernel whatever the slices.
    partials = torch.randn(70, 27, 9, 40, device="cuda")
    out = torch.full((9, 40, 3, 3, 3), float("nan"), device="cuda")
    names = cuda_kernel_counts(lambda: torch.ops.convt3d_cutlass.wgrad_finish(partials, out))
    assert len(names) == 1 and "finish_kernel" in next(iter(names))
    ref = partials.double().sum(0).view(3, 3, 3, 9, 40).permute(3, 4, 0, 1, 2)
    assert _rel(out, ref) < 1e-6


@pytest.mark.parametrize("rows", [0, 1, 3, 8, 31, 132, 396, 1024, 1025, 4000])
@pytest.mark.parametrize("c", [8, 24, 64, 130])
def test_row_sums_match_float64(rows, c):
    # The partial rows of grad_input's summing kernels and of the layout transpose: one launch up to
    # 1024 rows, the two-stage form past it; every channel checked, fixed order.
    t = torch.randn(rows, c, device="cuda") + 0.5
    poison_allocator()
    got = row_sums(t)
    assert got.shape == (c,) and torch.isfinite(got).all()
    ref = t.double().sum(0)
    if rows == 0:
        assert torch.equal(got, torch.zeros(c, device="cuda"))
    else:
        assert _rel(got, ref) < 1e-6
    assert torch.equal(got, row_sums(t))
    names = cuda_kernel_counts(lambda: row_sums(t))
    assert len(names) == (1 if rows <= 1024 else 2), names


def test_wgrad_finish_rejects_mismatched_shapes():
    with pytest.raises(RuntimeError, match="do not match"):
        torch.ops.convt3d_cutlass.wgrad_finish(torch.randn(2, 27, 8, 8, device="cuda"),
                                               torch.empty(8, 4, 3, 3, 3, device="cuda"))


def test_binding_errors_with_numbers_raise():
    # Messages that carry numbers (phase indices, shapes) raise like the others instead of crashing.
    from convt3d_cutlass import _extension
    names = sorted(n for n in _extension.compiled_kernels() if n.startswith(("igemm_tf32", "direct_tf32")))
    if not names:
        pytest.skip("no tap-reuse kernel in this build")
    x = torch.randn(1, 4, 4, 4, 8, device="cuda")
    w = torch.randn(27 * 8 * 8, device="cuda")
    y = torch.empty(1, 4, 4, 4, 8, device="cuda")
    bad = [100, 0, 0, 1, 1, 1, 0, 0, 0, 3, 3, 3, 0]  # phase 0 starts past the output
    with pytest.raises(RuntimeError, match="phase 0 writes outside"):
        torch.ops.convt3d_cutlass.direct(names[0], x, w, None, y, bad, 1, 1, False)


@pytest.mark.parametrize("slices,k,ci,co,tap_major", [(1, 3, 128, 64, True), (2, 3, 256, 128, False),
                                                       (3, 5, 40, 70, True), (4, 3, 9, 33, False),
                                                       (4, 2, 64, 32, True), (2, 7, 3, 8, False),
                                                       (5, 3, 16, 24, True), (9, 5, 8, 12, False)])
def test_wgrad_finish_of_few_slices_adds_them_in_order_and_writes_every_element(slices, k, ci, co, tap_major):
    # Up to 4 slices wgrad_finish takes its tiled kernel (whole result rows through shared memory), past them
    # finish_kernel; either way the sums are the slices added one after another from the first.
    t = k ** 3
    shape = (slices, t, ci, co) if tap_major else (slices, ci, k, k, k, co)
    partials = torch.randn(shape, device="cuda")
    out = torch.full((ci, co, k, k, k), float("nan"), device="cuda")
    names = cuda_kernel_counts(lambda: torch.ops.convt3d_cutlass.wgrad_finish(partials, out))
    assert len(names) == 1 and ("finish_kernel_tiled" in next(iter(names))) == (slices <= 4), names
    seq = partials[0].clone()
    for s in range(1, slices):
        seq += partials[s]
    ref = seq.view(k, k, k, ci, co).permute(3, 4, 0, 1, 2) if tap_major else seq.permute(0, 4, 1, 2, 3)
    assert torch.equal(out, ref.contiguous())
