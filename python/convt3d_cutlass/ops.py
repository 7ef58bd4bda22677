"""Autograd and torch.compile registration of the fast path.

With torch >= 2.4 the three passes are ``torch.library`` custom ops
(``convt3d_cutlass::conv_transpose3d``, ``..._grad_input``, ``..._grad_weight``) with fake
implementations and registered autograd, so ``torch.compile(fullgraph=True)`` traces through them.
Eager mode (and torch < 2.4) runs the same passes through the autograd node in C++ (``eager``,
csrc/eager_node.cpp) where it applies, else through an equivalent ``torch.autograd.Function``: the
custom ops' Python dispatch cost about 0.7 ms of host time per training step (measured on the H100
host, docs/performance.md v0.5), more than the kernels of a small layer, and eager mode gains nothing
from it.

Double backward (create_graph=True) runs the backward through ``aten.convolution_backward``,
PyTorch's own differentiable formula: correct, not accelerated.
"""
from __future__ import annotations

from typing import Optional

import torch

from . import eager, launch
from .layouts import CL, channel_sums, channels_last_with_sums, to_format, wants_channels_last
from .problem import Problem, out_size

HAS_CUSTOM_OP = hasattr(torch.library, "custom_op") and hasattr(torch.library, "register_autograd")


def _fwd(x, weight, bias, stride, padding, output_padding, precision, config, problem=None):
    p = problem or Problem.of(x, weight, stride, padding, output_padding)
    cl = wants_channels_last(x)
    y = launch.forward(x, weight, bias, p, precision, config or None, ncdhw=not cl)
    return to_format(y, cl)


def _in_spatial(out_spatial, k: int, stride: int, padding: int, output_padding: int):
    return tuple((o + 2 * padding - k - output_padding) // stride + 1 for o in out_spatial)


def _grad_in(grad_y, weight, stride, padding, output_padding, channels_last, precision, config, problem=None):
    p = problem
    if p is None:
        k = weight.shape[2]
        spatial = _in_spatial(grad_y.shape[2:], k, stride, padding, output_padding)
        p = Problem(grad_y.shape[0], weight.shape[0], weight.shape[1], spatial, k, stride, padding, output_padding)
    return to_format(launch.grad_input(grad_y, weight, p, precision, config or None, ncdhw=not channels_last),
                     channels_last)


def _grad_in_bias(grad_y, weight, stride, padding, output_padding, channels_last, precision, config, problem):
    """(grad_x as _grad_in returns it, the bias gradient from grad_input's own read of grad_y or None)."""
    gx, gb = launch.grad_input_with_bias(grad_y, weight, problem, precision, config or None, ncdhw=not channels_last)
    return to_format(gx, channels_last), gb


def _grad_w(grad_y, x, k, stride, padding, output_padding, precision, config, problem=None):
    p = problem or Problem(x.shape[0], x.shape[1], grad_y.shape[1], tuple(x.shape[2:]), k, stride, padding,
                           output_padding)
    return launch.grad_weight(grad_y, x, p, precision, config or None)


def _empty_like_format(ref: torch.Tensor, shape, channels_last: bool) -> torch.Tensor:
    return torch.empty(shape, dtype=ref.dtype, device=ref.device,
                       memory_format=CL if channels_last else torch.contiguous_format)


def _native_backward(grad_y, x, weight, has_bias, stride, padding, output_padding, precision, mask):
    """Differentiable backward through PyTorch's own op (for create_graph=True), in the
    precision class the forward ran: TF32 only when the forward was tf32."""
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    try:
        return torch.ops.aten.convolution_backward(
            grad_y, x, weight, [weight.shape[1]] if has_bias else None, [stride] * 3, [padding] * 3,
            [1, 1, 1], True, [output_padding] * 3, 1, list(mask))
    finally:
        torch.backends.cudnn.allow_tf32 = old


def _backward(ctx, grad_y, grad_in=None, grad_w=None, share_layout=False, grad_in_bias=None):
    """Gradients of (x, weight, bias); grad_in / grad_w run the two passes (default: the custom ops).
    grad_in_bias (eager): grad_in returning (grad_x, bias gradient or None), for a grad_input kernel
    that sums grad_y as it reads it.

    share_layout (eager mode): an NCDHW grad_y that two of the three gradients read is converted to
    channels_last_3d once, with the bias gradient summed from the same read, instead of once per pass
    and one more read for the bias. (Under torch.compile the conversion stays inside the custom ops,
    which the tracer sees whole.)"""
    grad_in = grad_in or grad_input_op
    grad_w = grad_w or grad_weight_op
    x, weight = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    need_b = need_b and ctx.has_bias
    gx = gw = gb = None
    if torch.is_grad_enabled():
        gx, gw, gb = _native_backward(grad_y, x, weight, ctx.has_bias, ctx.stride, ctx.padding,
                                      ctx.output_padding, ctx.precision, (need_x, need_w, need_b))
    else:
        # (the eager node's rule, csrc/eager_node.cpp: no conversion where the kernels read it in place)
        in_place = share_layout and launch.grad_y_in_place(grad_y, x, weight, ctx.problem, ctx.precision,
                                                           ctx.config or None, need_x, need_w)
        # grad_input reads an NCDHW grad_y in place and leaves grad_weight its channels_last_3d copy and the
        # bias gradient (the eager node's gi_copies rule): no conversion pass over grad_y.
        if (share_layout and need_x and need_w and not in_place and
                launch.grad_input_copies_grad_y(grad_y, x, weight, ctx.problem, ctx.precision, ctx.config or None)):
            gx, copy, gb = launch.grad_input_copying(grad_y, weight, ctx.problem, ctx.precision, ctx.config or None,
                                                     ncdhw=not wants_channels_last(x))
            gx = to_format(gx, wants_channels_last(x))
            gw = grad_w(copy, x, weight.shape[2], ctx.stride, ctx.padding, ctx.output_padding, ctx.precision,
                        ctx.config)
            return gx, gw, gb if need_b else None, None, None, None, None, None
        converted = None
        # gy_w: what grad_weight reads (the FFMA rows' NC mode takes an NCDHW grad_y as it is); gy_nc: grad_y as given
        gy_nc = gy_w = grad_y
        if share_layout and need_x + need_w + need_b >= 2 and not in_place:
            w_in_place = need_w and launch.grad_weight_reads_grad_y(grad_y, x, ctx.problem, ctx.precision,
                                                                     ctx.config or None)
            converted = channels_last_with_sums(grad_y)
            if converted is not None:
                grad_y, gb = converted
                gy_w = gy_w if w_in_place else grad_y
        # grad_weight first, so that its temporaries are gone before grad_x exists (launch.grad_weight_first,
        # as the eager node).
        # Eager only (share_layout): a traced backward is a graph whose order the compiler picks.
        w_first = False
        # the layer's Problem, for the eager decisions below (the Function keeps it on ctx)
        p = (getattr(ctx, "problem", None) or Problem.of(x, weight, ctx.stride, ctx.padding, ctx.output_padding)
             if share_layout else None)
        if share_layout and need_w and need_x and x.is_cuda:
            plan = launch._plan(p, "wgrad", ctx.precision, ctx.config or None, x.device,
                                lambda name: launch.grad_weight(grad_y, x, p, ctx.precision, name),
                                out_ncdhw=not wants_channels_last(x))
            w_first = launch.grad_weight_first(p, plan, x)
        if w_first:
            gw = grad_w(gy_w, x, weight.shape[2], ctx.stride, ctx.padding, ctx.output_padding,
                        ctx.precision, ctx.config)
            # grad_input reads the NCDHW grad_y in place where its kernel can, the copy that grad_weight read released
            # before grad_x exists (the eager node's rule: the peak holds one of them, not both).
            if (need_x and converted is not None and
                    launch.grad_input_reads_grad_y(gy_nc, x, weight, p, ctx.precision, ctx.config or None)):
                grad_y, converted, gy_w = gy_nc, None, None
        if need_x:
            # A stock grad_input writes channels_last_3d whatever x's layout: where grad_y is our copy and nothing
            # reads it after grad_input, grad_x is converted to NCDHW after the copy is released, as the eager
            # node does (its peak memory then holds the copy or the conversion's two grad_x, not all three).
            late = (converted is not None and not wants_channels_last(x) and (w_first or not need_w) and
                    launch.grad_input_writes_channels_last(grad_y, weight, p, ctx.precision, ctx.config or None))
            args = (grad_y, weight, ctx.stride, ctx.padding, ctx.output_padding, wants_channels_last(x) or late,
                    ctx.precision, ctx.config)
            if need_b and gb is None and grad_in_bias is not None:
                gx, gb = grad_in_bias(*args)
            else:
                gx = grad_in(*args)
            if late:
                del args
                grad_y = converted = gy_w = None
                gx = to_format(gx, False)
        if need_w and not w_first:
            gw = grad_w(gy_w, x, weight.shape[2], ctx.stride, ctx.padding, ctx.output_padding,
                        ctx.precision, ctx.config)
        if need_b and gb is None:
            # Eager only (share_layout): the kernel reads data pointers, which a traced backward lacks.
            gb = channel_sums(grad_y) if share_layout else grad_y.sum((0, 2, 3, 4))
        if not need_b:
            gb = None
    return gx, gw, gb, None, None, None, None, None


class ConvTranspose3dFunction(torch.autograd.Function):
    """The autograd wiring without torch.library (eager mode, torch < 2.4): same forward, same
    backward, calling the passes directly."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, output_padding, precision, config):
        _setup_context(ctx, (x, weight, bias, stride, padding, output_padding, precision, config), None)
        # The backward passes solve the same Problem: built once here (small layers are host-bound).
        ctx.problem = Problem.of(x, weight, stride, padding, output_padding)
        return _fwd(x, weight, bias, stride, padding, output_padding, precision, config, problem=ctx.problem)

    @staticmethod
    def backward(ctx, grad_y):
        p = ctx.problem
        return _backward(ctx, grad_y, lambda *a: _grad_in(*a, problem=p), lambda *a: _grad_w(*a, problem=p),
                         share_layout=True, grad_in_bias=lambda *a: _grad_in_bias(*a, problem=p))


def _setup_context(ctx, inputs, output):
    x, weight, bias, stride, padding, output_padding, precision, config = inputs
    ctx.save_for_backward(x, weight)
    ctx.has_bias = bias is not None
    ctx.stride, ctx.padding, ctx.output_padding = stride, padding, output_padding
    ctx.precision, ctx.config = precision, config


if HAS_CUSTOM_OP:
    @torch.library.custom_op("convt3d_cutlass::conv_transpose3d", mutates_args=(), device_types="cuda")
    def conv_transpose3d_op(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                            stride: int, padding: int, output_padding: int, precision: str,
                            config: str) -> torch.Tensor:
        return _fwd(x, weight, bias, stride, padding, output_padding, precision, config)

    @conv_transpose3d_op.register_fake
    def _(x, weight, bias, stride, padding, output_padding, precision, config):
        k = weight.shape[2]
        shape = (x.shape[0], weight.shape[1]) + tuple(out_size(s, k, stride, padding, output_padding)
                                                      for s in x.shape[2:])
        return _empty_like_format(x, shape, wants_channels_last(x))

    @torch.library.custom_op("convt3d_cutlass::conv_transpose3d_grad_input", mutates_args=(),
                             device_types="cuda")
    def grad_input_op(grad_y: torch.Tensor, weight: torch.Tensor, stride: int, padding: int,
                      output_padding: int, channels_last: bool, precision: str, config: str) -> torch.Tensor:
        return _grad_in(grad_y, weight, stride, padding, output_padding, channels_last, precision, config)

    @grad_input_op.register_fake
    def _(grad_y, weight, stride, padding, output_padding, channels_last, precision, config):
        spatial = _in_spatial(grad_y.shape[2:], weight.shape[2], stride, padding, output_padding)
        return _empty_like_format(grad_y, (grad_y.shape[0], weight.shape[0]) + spatial, channels_last)

    @torch.library.custom_op("convt3d_cutlass::conv_transpose3d_grad_weight", mutates_args=(),
                             device_types="cuda")
    def grad_weight_op(grad_y: torch.Tensor, x: torch.Tensor, k: int, stride: int, padding: int,
                       output_padding: int, precision: str, config: str) -> torch.Tensor:
        return _grad_w(grad_y, x, k, stride, padding, output_padding, precision, config)

    @grad_weight_op.register_fake
    def _(grad_y, x, k, stride, padding, output_padding, precision, config):
        return x.new_empty((x.shape[1], grad_y.shape[1], k, k, k))

    torch.library.register_autograd("convt3d_cutlass::conv_transpose3d", _backward,
                                    setup_context=_setup_context)

    def apply(x, weight, bias, stride, padding, output_padding, precision, config, problem=None):
        """y [N, C_out, Do, Ho, Wo] with autograd: the custom op while torch.compile traces; in eager
        mode the C++ node where it applies (``eager``), else the autograd.Function. ``problem``: the
        layer's Problem where the caller has it."""
        if torch.compiler.is_compiling():
            return conv_transpose3d_op(x, weight, bias, stride, padding, output_padding, precision, config or "")
        y = eager.apply(x, weight, bias, stride, padding, output_padding, precision, config, problem)
        if y is not None:
            return y
        return ConvTranspose3dFunction.apply(x, weight, bias, stride, padding, output_padding, precision,
                                             config or "")
else:  # torch < 2.4
    grad_input_op, grad_weight_op = _grad_in, _grad_w

    def apply(x, weight, bias, stride, padding, output_padding, precision, config, problem=None):
        y = eager.apply(x, weight, bias, stride, padding, output_padding, precision, config, problem)
        if y is not None:
            return y
        return ConvTranspose3dFunction.apply(x, weight, bias, stride, padding, output_padding, precision,
                                             config or "")
