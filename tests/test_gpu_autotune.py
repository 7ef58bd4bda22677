"""Autotuning on the GPU: a training step tunes each pass once, stays correct, writes the cache, and
the next step (or another process) reuses the choices without timing."""
import pytest
import torch
import torch.nn.functional as F

import convt3d_cutlass as ct
from convt3d_cutlass import autotune
from convt3d_cutlass.kernel_table import BY_NAME
from convt3d_cutlass.layouts import CL

from conftest import TOL, rel_l2, requires_gpu

pytestmark = [requires_gpu, pytest.mark.gpu]


@pytest.mark.parametrize("fmt", [CL, torch.contiguous_format], ids=["channels_last_3d", "ncdhw"])
def test_autotuned_step_is_correct_and_cached(monkeypatch, tmp_path, fmt):
    # NCDHW: the forward and grad_input are tuned writing NCDHW, under keys of their own (v0.51)
    monkeypatch.setenv("CONVT3D_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("CONVT3D_CONFIG", raising=False)
    autotune.set_autotune(True)
    autotune.clear_memory()
    try:
        x = torch.randn(2, 24, 6, 9, 17, device="cuda").to(memory_format=fmt).requires_grad_()
        w = (torch.randn(24, 16, 3, 3, 3, device="cuda") / 24 ** 0.5).requires_grad_()
        y = ct.conv_transpose3d(x, w, None, 1, 1, precision="tf32", strict=True)
        gy = torch.randn_like(y)
        y.backward(gy)
        xd, wd = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
        yd = F.conv_transpose3d(xd, wd, None, 1, 1)
        yd.backward(gy.double())
        for got, ref in ((y, yd), (x.grad, xd.grad), (w.grad, wd.grad)):
            assert rel_l2(got, ref) <= TOL["tf32"]
        cache = autotune.read_cache()
        ops = sorted(k.split("|")[5] for k in cache)
        assert ops == ["dgrad", "fprop", "wgrad"]
        ncdhw_keys = sorted(k.split("|")[5] for k in cache if k.endswith("|out NCDHW"))
        # grad_weight too: its kernel depends on the layer's layout (the patch rows, v0.74)
        assert ncdhw_keys == ([] if fmt is CL else ["dgrad", "fprop", "wgrad"])
        assert all(BY_NAME[name].serves(op) for key, name in cache.items()
                   for op in [key.split("|")[5]])
        # a new process's memory is empty: the disk answers, nothing is timed again
        autotune.clear_memory()
        monkeypatch.setattr(autotune, "fastest", lambda *a, **k: pytest.fail("timed again"))
        ct.conv_transpose3d(x, w, None, 1, 1, precision="tf32", strict=True).backward(gy)
    finally:
        autotune.set_autotune(None)
        autotune.clear_memory()


@pytest.mark.parametrize("stride", [1, 2])
def test_tuned_stock_forward_serves_every_phase(monkeypatch, tmp_path, stride):
    # Whichever kernel the timing picks must run every pass it was picked for: here the stock forward
    # wins (its per-phase reselection used to fall back to the tap-reuse default and call the stock op
    # with that name).
    monkeypatch.setenv("CONVT3D_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("CONVT3D_CONFIG", raising=False)
    stock = "dgrad_tf32_128x64x32_64x32x32_s3"
    monkeypatch.setattr(autotune, "fastest", lambda names, run, *a, **k: stock if stock in names else names[0])
    autotune.set_autotune(True)
    autotune.clear_memory()
    try:
        x = torch.randn(2, 24, 6, 9, 17, device="cuda").to(memory_format=CL)
        w = torch.randn(24, 16, 3, 3, 3, device="cuda") / 24 ** 0.5
        with torch.no_grad():
            y = ct.conv_transpose3d(x, w, None, stride, 1, precision="tf32", strict=True)
        ref = F.conv_transpose3d(x.double(), w.double(), None, stride, 1)
        assert rel_l2(y, ref) <= TOL["tf32"]
        assert stock in autotune.read_cache().values()
    finally:
        autotune.set_autotune(None)
        autotune.clear_memory()


def _last_runnable(names, run, *args, **kwargs):
    """A stand-in for autotune.fastest that picks the last candidate that runs (so that a pass with a choice
    differs from the heuristic's pick where it can), as fastest skips candidates that raise."""
    for name in reversed(names):
        try:
            run(name)
        except (RuntimeError, ValueError):
            continue
        return name
    return None


@pytest.mark.parametrize("fmt", [CL, torch.contiguous_format], ids=["channels_last_3d", "ncdhw"])
@pytest.mark.parametrize("prec", ["tf32", "3xtf32", "fp32"])
@pytest.mark.parametrize("stride", [1, 2])
def test_autotuned_step_runs_on_the_eager_node(monkeypatch, tmp_path, fmt, prec, stride):
    # v0.62: an autotuned layer runs on the C++ node with the tuner's kernel for each pass, and gives the bits
    # of the Python Function under the same choices (which it reads from the same cache keys).
    from convt3d_cutlass import eager
    monkeypatch.setenv("CONVT3D_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("CONVT3D_CONFIG", raising=False)
    monkeypatch.setattr(autotune, "fastest", _last_runnable)
    autotune.set_autotune(True)
    autotune.clear_memory()
    try:
        x = torch.randn(2, 24, 6, 9, 16, device="cuda").to(memory_format=fmt)
        w = torch.randn(24, 16, 3, 3, 3, device="cuda") / (24 * 27) ** 0.5
        b = torch.randn(16, device="cuda")
        gy = None
        got = {}
        for node in (True, False):
            monkeypatch.setenv("CONVT3D_EAGER_NODE", "1" if node else "0")
            xs, ws, bs = (t.clone().requires_grad_() for t in (x, w, b))
            y = ct.conv_transpose3d(xs, ws, bs, stride, 1, precision=prec, strict=True)
            if gy is None:
                gy = torch.randn_like(y)
            name = y.grad_fn.name()
            y.backward(gy)
            got[node] = (name, [y.detach(), xs.grad, ws.grad, bs.grad])
        assert "ConvTranspose3dNode" in got[True][0] and "ConvTranspose3dFunction" in got[False][0]
        for a, c in zip(got[True][1], got[False][1]):
            assert a.stride() == c.stride() and torch.equal(a, c)
        ref = F.conv_transpose3d(x.double(), w.double(), b.double(), stride, 1)
        assert rel_l2(got[True][1][0], ref) <= TOL[prec]
        # the node's plan took the cache's choices, one per pass (None where a pass had one candidate)
        by_op = {}
        for key, name in autotune.read_cache().items():
            op = key.split("|")[5]
            if op == "wgrad" or key.endswith("|out NCDHW") == (fmt is not CL):
                by_op[op] = name
        tuned = [v[1] for k, v in eager._tuned_configs.items() if v[0] == autotune.generation and k[3] == (fmt is CL)]
        assert tuned == [(by_op.get("dgrad"), by_op.get("fprop"), by_op.get("wgrad"))]
        # later steps time nothing and stay on the node
        monkeypatch.setenv("CONVT3D_EAGER_NODE", "1")
        monkeypatch.setattr(autotune, "fastest", lambda *a, **k: pytest.fail("timed again"))
        y = ct.conv_transpose3d(x.clone().requires_grad_(), w, b, stride, 1, precision=prec, strict=True)
        assert "ConvTranspose3dNode" in y.grad_fn.name()
    finally:
        autotune.set_autotune(None)
        autotune.clear_memory()


def test_autotuned_inference_tunes_the_forward_alone(monkeypatch, tmp_path):
    monkeypatch.setenv("CONVT3D_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("CONVT3D_CONFIG", raising=False)
    monkeypatch.setenv("CONVT3D_EAGER_NODE", "1")
    autotune.set_autotune(True)
    autotune.clear_memory()
    try:
        x = torch.randn(2, 24, 6, 9, 16, device="cuda").to(memory_format=CL)
        w = torch.randn(24, 16, 3, 3, 3, device="cuda") / (24 * 27) ** 0.5
        with torch.no_grad():
            y = ct.conv_transpose3d(x, w, None, 1, 1, precision="tf32", strict=True)
        assert rel_l2(y, F.conv_transpose3d(x.double(), w.double(), None, 1, 1)) <= TOL["tf32"]
        assert sorted(k.split("|")[5] for k in autotune.read_cache()) == ["dgrad"]
    finally:
        autotune.set_autotune(None)
        autotune.clear_memory()
