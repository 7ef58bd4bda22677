"""convt3d_cutlass: a drop-in ``ConvTranspose3d`` for PyTorch training on CUTLASS kernels.

Public API: :class:`ConvTranspose3d`, :func:`conv_transpose3d`, :func:`convert_model`,
:func:`available`, :func:`configs`, :func:`select_config`, :func:`set_precision`,
:func:`set_autotune`.
"""
from __future__ import annotations

from typing import List

from ._extension import available, compiled_kernels
from .autotune import set_autotune
from .functional import conv_transpose3d
from .kernel_table import KERNELS, KernelConfig
from .modules import ConvTranspose3d, convert_model
from .precision import set_precision
from .problem import Problem
from .selector import select_config

__version__ = "0.1.0"

__all__ = ["ConvTranspose3d", "conv_transpose3d", "convert_model", "available", "configs",
           "select_config", "set_precision", "set_autotune", "Problem", "KernelConfig", "__version__"]


def configs() -> List[dict]:
    """The kernel table: one dict per kernel (name, family, op, the passes it serves, precision,
    arch, tile, warp, block, stages, align, why) with ``compiled`` telling whether this build holds it."""
    built = compiled_kernels()
    return [dict(name=k.name, family=k.family, op=k.op,
                 passes=[op for op in ("dgrad", "fprop", "wgrad") if k.serves(op)], precision=k.precision,
                 math=k.math, arch=k.arch, tile=k.tile, warp=k.warp, block=k.block,
                 instruction=k.instruction, stages=k.stages, align=k.align, threads=k.threads, why=k.why,
                 compiled=k.name in built) for k in KERNELS]
