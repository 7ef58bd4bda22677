"""Builds convt3d_cutlass: pure Python package + the CUTLASS extension `convt3d_cutlass._C`.

The extension is built by CMake (ninja generator) when torch has CUDA and nvcc is found;
otherwise the install is pure Python and the package falls back to PyTorch's own op.
Environment: TORCH_CUDA_ARCH_LIST (default "8.0;9.0a"), MAX_JOBS, CUTLASS_DIR,
CONVT3D_KERNELS (regex of kernel names to build), CONVT3D_NO_CUDA=1 (skip the extension).
"""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


def _why_no_cuda_build():
    if os.environ.get("CONVT3D_NO_CUDA", "") not in ("", "0"):
        return "CONVT3D_NO_CUDA is set"
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.version.cuda:
        return f"torch {torch.__version__} has no CUDA"
    if not (shutil.which("nvcc") or Path(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc").exists()):
        return "nvcc not found"
    if shutil.which("cmake") is None:
        return "cmake not found"
    try:
        import cutlass_library  # noqa: F401
    except ImportError:
        if not os.environ.get("CUTLASS_DIR"):
            return "CUTLASS headers not found (pip install nvidia-cutlass, or set CUTLASS_DIR)"
    return None


class CMakeBuild(build_ext):
    def run(self):
        reason = _why_no_cuda_build()
        if reason:
            print(f"convt3d_cutlass: pure-Python install, CUDA kernels not built ({reason}); "
                  "the package falls back to PyTorch", flush=True)
            return
        for ext in self.extensions:
            self.build_cmake(ext)

    def build_cmake(self, ext):
        out = Path(self.get_ext_fullpath(ext.name)).resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        build = Path(self.build_temp).resolve() / "cmake"
        build.mkdir(parents=True, exist_ok=True)
        nvcc = shutil.which("nvcc") or str(Path(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc"))
        cfg = [
            "cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
            f"-DPython_EXECUTABLE={sys.executable}", f"-DCONVT3D_OUTPUT={out}",
            f"-DCMAKE_CUDA_COMPILER={nvcc}",
        ]
        if shutil.which("ninja"):
            cfg += ["-G", "Ninja"]
        else:
            try:
                import ninja
                cfg += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={Path(ninja.BIN_DIR) / 'ninja'}"]
            except ImportError:
                pass
        jobs = os.environ.get("MAX_JOBS") or str(os.cpu_count() or 1)
        t0 = time.time()
        subprocess.check_call(cfg)
        subprocess.check_call(["cmake", "--build", str(build), "--parallel", jobs])
        print(f"convt3d_cutlass: CUDA extension built in {time.time() - t0:.0f} s with {jobs} jobs",
              flush=True)


setup(
    ext_modules=[CMakeExtension("convt3d_cutlass._C")],
    cmdclass={"build_ext": CMakeBuild},
)
