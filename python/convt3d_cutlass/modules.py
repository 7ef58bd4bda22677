"""``ConvTranspose3d`` (a drop-in subclass of ``torch.nn.ConvTranspose3d``) and ``convert_model``."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from . import precision as _precision
from .functional import conv_transpose3d


class ConvTranspose3d(nn.ConvTranspose3d):
    """``nn.ConvTranspose3d`` whose forward and backward run on CUTLASS kernels.

    Same arguments, defaults, initialisation and state_dict as ``nn.ConvTranspose3d`` (built under
    the same seed it holds the same weights), plus keyword-only:

    Args:
        precision: None/"auto" (follow ``set_precision`` / ``CONVT3D_PRECISION`` /
            ``torch.backends.cudnn.allow_tf32``), "fp32", "tf32" or "3xtf32".
        strict: raise ``ValueError`` instead of falling back to PyTorch outside the fast path.
        config: force kernels by name (see ``convt3d_cutlass.configs()``).

    Shapes: input [N, C_in, D, H, W] or [C_in, D, H, W] -> [N, C_out, Do, Ho, Wo].
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 groups=1, bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None, *,
                 precision: Optional[str] = None, strict: bool = False, config: Optional[str] = None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, output_padding,
                         groups, bias, dilation, padding_mode, device=device, dtype=dtype)
        self.precision = _precision.check(precision)
        self.strict = strict
        self.config = config

    def forward(self, input: torch.Tensor, output_size=None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            raise ValueError("Only 'zeros' padding mode is supported for ConvTranspose3d")
        output_padding = self.output_padding
        if output_size is not None:
            output_padding = self._output_padding(input, output_size, self.stride, self.padding,
                                                  self.kernel_size, 3, self.dilation)
        return conv_transpose3d(input, self.weight, self.bias, self.stride, self.padding,
                                output_padding, self.groups, self.dilation,
                                precision=self.precision or "auto", strict=self.strict,
                                config=self.config)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (f", precision={self.precision!r}" if self.precision else "")


def convert_model(model: nn.Module, precision: Optional[str] = None, strict: bool = False) -> nn.Module:
    """Swap every ``nn.ConvTranspose3d`` in ``model`` for :class:`ConvTranspose3d`, in place.

    Parameters, buffers and hooks are kept (the same tensors, so an optimizer built before the
    swap still updates them). Returns the model (or the converted layer if ``model`` is one).
    """
    _precision.check(precision)

    def convert(m: nn.Module) -> nn.Module:
        if isinstance(m, nn.ConvTranspose3d):
            new = m if isinstance(m, ConvTranspose3d) else ConvTranspose3d.__new__(ConvTranspose3d)
            if new is not m:
                new.__dict__.update(m.__dict__)
            new.precision, new.strict = precision, strict
            new.config = getattr(new, "config", None)
            return new
        for name, child in m.named_children():
            setattr(m, name, convert(child))
        return m

    return convert(model)
