"""The opt-in autotuner's policy and cache without a GPU: switches, candidates, the on-disk cache
(concurrent writers included) and choose() with a fake device and timer."""
import os
import subprocess
import sys

import pytest

from convt3d_cutlass import autotune
from convt3d_cutlass.kernel_table import BY_NAME, KERNELS
from convt3d_cutlass.problem import Problem

HEADLINE = Problem(8, 48, 24, (96, 96, 96), 3)
ALL = frozenset(k.name for k in KERNELS)


@pytest.fixture(autouse=True)
def _clean(monkeypatch, tmp_path):
    monkeypatch.setenv("CONVT3D_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("CONVT3D_AUTOTUNE", raising=False)
    autotune.set_autotune(None)
    autotune.clear_memory()
    yield
    autotune.set_autotune(None)
    autotune.clear_memory()


def test_switches(monkeypatch):
    assert not autotune.enabled()
    monkeypatch.setenv("CONVT3D_AUTOTUNE", "1")
    assert autotune.enabled()
    autotune.set_autotune(False)
    assert not autotune.enabled()
    autotune.set_autotune(None)
    monkeypatch.setenv("CONVT3D_AUTOTUNE", "yes")
    with pytest.raises(ValueError, match="CONVT3D_AUTOTUNE"):
        autotune.enabled()
    with pytest.raises(ValueError, match="enabled"):
        autotune.set_autotune("on")


def test_candidates_follow_arch_precision_and_fit():
    hopper = autotune.candidates(HEADLINE, "dgrad", "tf32", ALL, (9, 0), 232448)
    ampere = autotune.candidates(HEADLINE, "dgrad", "tf32", ALL, (8, 0), 166912)
    assert "wgmma_tf32_4x8x14_kx3_n24_wg4_s3" in hopper and not any(n.startswith("wgmma") for n in ampere)
    assert "dgrad_tf32_256x32x32_64x32x32_s3" in hopper and "direct_tf32_4x8x16_n24" in ampere
    assert all(BY_NAME[n].serves("dgrad") and BY_NAME[n].precision == "tf32" for n in hopper)
    wgrad = autotune.candidates(HEADLINE, "wgrad", "tf32", ALL, (9, 0), 232448)
    assert "wgmma_wgrad_tf32_8x16_k3_n48_wg4_s2" in wgrad
    assert "wgmma_wgrad_tf32_8x16_k5_n32_wg4_s2" not in wgrad  # compiled for k5 only
    # exact fp32: the stock SIMT kernels and the FFMA tap-reuse rows (direct, fp32), no tensor-op row; the patch
    # rows only where k == stride
    fp32 = autotune.candidates(HEADLINE, "dgrad", "fp32", ALL, (9, 0), 232448)
    assert fp32 == [k.name for k in KERNELS if k.serves("dgrad") and k.precision == "fp32" and k.family != "patch"]
    k2 = autotune.candidates(Problem(2, 64, 32, (8, 8, 8), 2, 2), "fprop", "fp32", ALL, (8, 0), 166912)
    assert {"patch_fp32_128x128", "patch_fp32_128x64"} <= set(k2)
    k2_tf32 = autotune.candidates(Problem(2, 64, 32, (8, 8, 8), 2, 2), "fprop", "tf32", ALL, (8, 0), 166912)
    assert {"patch_tf32_128x128", "patch_tf32_128x64"} <= set(k2_tf32)
    assert not any(n.startswith("patch") for n in hopper + wgrad)
    assert "dgrad_fp32_128x32x8_32x32x8_s4" in fp32 and "direct_fp32_4x8x16_n24_m4" in fp32
    assert autotune.candidates(HEADLINE, "dgrad", "tf32", {"direct_tf32_2x8x16_n24"}, (9, 0), 232448) == [
        "direct_tf32_2x8x16_n24"]
    # channel counts that tensor-op kernels cannot load: nothing to tune in tf32
    assert autotune.candidates(Problem(1, 6, 8, (8, 8, 8), 3), "dgrad", "tf32", ALL, (9, 0), 232448) == []


def test_cache_survives_concurrent_writers(tmp_path):
    path = str(tmp_path / "autotune.json")
    code = ("import sys; from convt3d_cutlass import autotune\n"
            "for i in range(25): autotune.store(f'{sys.argv[1]}-{i}', 'k', sys.argv[2])\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    procs = [subprocess.Popen([sys.executable, "-c", code, f"w{j}", path], env=env) for j in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    data = autotune.read_cache(path)
    assert len(data) == 100 and set(data.values()) == {"k"}
    with open(path, "w") as f:
        f.write("{not json")
    assert autotune.read_cache(path) == {}


def test_choose_times_once_then_reads_the_cache(monkeypatch):
    monkeypatch.setattr(autotune, "device_facts", lambda index: ("Fake GPU", (9, 0), ALL, 232448))
    names = autotune.candidates(HEADLINE, "fprop", "tf32", ALL, (9, 0), 232448)
    assert len(names) >= 3
    want = names[2]
    timed, ran = [], []

    def timer(fn):
        fn()
        timed.append(ran[-1])
        return 1.0 if ran[-1] == want else 2.0

    def run(name):
        ran.append(name)
        if name == names[0]:
            raise RuntimeError("this candidate cannot take the input")

    assert autotune.choose(HEADLINE, "fprop", "tf32", 0, run, timer) == want
    assert timed == names[1:]  # the raising candidate was skipped
    key = autotune.cache_key(HEADLINE, "fprop", "tf32", "Fake GPU", (9, 0))
    assert autotune.read_cache()[key] == want
    # memory, then (a new process) the disk: no timing either way
    timed.clear()
    assert autotune.choose(HEADLINE, "fprop", "tf32", 0, run, timer) == want
    autotune.clear_memory()
    assert autotune.choose(HEADLINE, "fprop", "tf32", 0, run, timer) == want
    assert timed == []
    # another GPU is another key; a cached name this build lacks is re-tuned
    monkeypatch.setattr(autotune, "device_facts", lambda index: ("Other GPU", (9, 0), ALL, 232448))
    assert autotune.choose(HEADLINE, "fprop", "tf32", 0, run, timer) == want and timed
    autotune.store(key, "no_such_kernel")
    monkeypatch.setattr(autotune, "device_facts", lambda index: ("Fake GPU", (9, 0), ALL, 232448))
    autotune.clear_memory()
    timed.clear()
    assert autotune.choose(HEADLINE, "fprop", "tf32", 0, run, timer) == want and timed
    # an NCDHW output is tuned apart (its own key, timed again), and so is another output_padding
    timed.clear()
    assert autotune.choose(HEADLINE, "fprop", "tf32", 0, run, timer, out_ncdhw=True) == want and timed
    assert autotune.cache_key(HEADLINE, "fprop", "tf32", "Fake GPU", (9, 0), True) in autotune.read_cache()
    padded = Problem(8, 48, 24, (96, 96, 96), 3, 2, 1, 1)
    assert autotune.cache_key(padded, "dgrad", "tf32", "G", (9, 0)) != autotune.cache_key(
        Problem(8, 48, 24, (96, 96, 96), 3, 2, 1, 0), "dgrad", "tf32", "G", (9, 0))
    # one candidate: nothing to tune
    one = frozenset({"direct_tf32_2x8x16_n24"})
    monkeypatch.setattr(autotune, "device_facts", lambda index: ("Fake GPU", (9, 0), one, 232448))
    autotune.clear_memory()
    assert autotune.choose(HEADLINE, "dgrad", "tf32", 0, run, timer) is None
