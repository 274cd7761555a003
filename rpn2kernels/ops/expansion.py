"""Python side of the expansion ops: fake kernels, autograd, the Triton ops, and dispatch.

The compiled ops (schemas in csrc/ops.cpp, kernels in csrc/cpu and csrc/cuda) and the Triton ops
registered here share one fake kernel and one autograd formula per op; each forward's backward is
itself an op, so torch.compile traces through both.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .. import _extension
from ..basis import expansion_width
from ..reference import expansion as reference
from ._ad_modes import refuse_double_backward, refuse_forward_ad

# ---------------------------------------------------------------------------------------------
# Triton ops (custom_op rather than triton_op: triton_op/wrap_triton fail under TRITON_INTERPRET).
# The kernel module is imported on first call so TRITON_INTERPRET is read after the user set it.


def _triton_kernels():
    from ..triton import expansion as kernels

    return kernels


@torch.library.custom_op("rpn2kernels::triton_expand", mutates_args=())
def triton_expand(x: Tensor, basis: str, degree: int, params: List[float]) -> Tensor:
    return _triton_kernels().expand_forward(x, basis, degree, params)


@torch.library.custom_op("rpn2kernels::triton_expand_backward", mutates_args=())
def triton_expand_backward(grad_features: Tensor, x: Tensor, basis: str, degree: int, params: List[float]) -> Tensor:
    return _triton_kernels().expand_backward(grad_features, x, basis, degree, params)


@torch.library.custom_op("rpn2kernels::triton_expand_linear", mutates_args=())
def triton_expand_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor], basis: str, degree: int,
                         params: List[float]) -> Tensor:
    return _triton_kernels().expand_linear_forward(x, weight, bias, basis, degree, params)


@torch.library.custom_op("rpn2kernels::triton_expand_linear_backward", mutates_args=())
def triton_expand_linear_backward(grad_out: Tensor, x: Tensor, weight: Tensor, basis: str, degree: int,
                                  params: List[float]) -> Tuple[Tensor, Tensor]:
    return _triton_kernels().expand_linear_backward(grad_out, x, weight, basis, degree, params)


# ---------------------------------------------------------------------------------------------
# Fake kernels (shapes only), shared by the compiled and the Triton op of each kind.

def _fake_expand(x, basis, degree, params):
    return x.new_empty((x.shape[0], expansion_width(basis, degree, params, x.shape[1])))


def _fake_expand_backward(grad_features, x, basis, degree, params):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _fake_expand_linear(x, weight, bias, basis, degree, params):
    return x.new_empty((x.shape[0], weight.shape[0]))


def _fake_expand_linear_backward(grad_out, x, weight, basis, degree, params):
    return (torch.empty_like(x, memory_format=torch.contiguous_format),
            torch.empty_like(weight, memory_format=torch.contiguous_format))


# ---------------------------------------------------------------------------------------------
# Autograd: one formula per op kind, bound to the matching backward op.

def _register_expand_autograd(op: str, backward_op: Callable, triton: bool) -> None:
    def setup_context(ctx, inputs, output):
        x, basis, degree, params = inputs
        ctx.save_for_backward(x)
        ctx.spec = (basis, degree, list(params))

    def backward(ctx, grad_features):
        (x,) = ctx.saved_tensors
        backend = "triton" if triton else x.device.type
        refuse_double_backward(op, backend)  # dx's own derivative needs κ'', which no kernel computes
        refuse_forward_ad(op, backend, grad_features)
        return backward_op(grad_features.contiguous(), x, *ctx.spec), None, None, None

    torch.library.register_autograd(op, backward, setup_context=setup_context)


def _register_expand_linear_autograd(op: str, backward_op: Callable, triton: bool) -> None:
    def setup_context(ctx, inputs, output):
        x, weight, bias, basis, degree, params = inputs
        ctx.save_for_backward(x, weight)  # κ(x) is recomputed in backward, never saved
        ctx.spec = (basis, degree, list(params))
        ctx.has_bias = bias is not None

    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        backend = "triton" if triton else x.device.type
        refuse_double_backward(op, backend)
        refuse_forward_ad(op, backend, grad_out)
        grad_out = grad_out.contiguous()
        grad_x, grad_weight = backward_op(grad_out, x, weight, *ctx.spec)
        grad_bias = grad_out.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias, None, None, None

    torch.library.register_autograd(op, backward, setup_context=setup_context)


def _register(prefix: str, ns) -> None:
    torch.library.register_fake(f"rpn2kernels::{prefix}expand")(_fake_expand)
    torch.library.register_fake(f"rpn2kernels::{prefix}expand_backward")(_fake_expand_backward)
    torch.library.register_fake(f"rpn2kernels::{prefix}expand_linear")(_fake_expand_linear)
    torch.library.register_fake(f"rpn2kernels::{prefix}expand_linear_backward")(_fake_expand_linear_backward)
    triton = prefix == "triton_"
    _register_expand_autograd(f"rpn2kernels::{prefix}expand", getattr(ns, f"{prefix}expand_backward"), triton)
    _register_expand_linear_autograd(f"rpn2kernels::{prefix}expand_linear",
                                     getattr(ns, f"{prefix}expand_linear_backward"), triton)


_register("triton_", torch.ops.rpn2kernels)
if _extension.extension_loaded():
    _register("", torch.ops.rpn2kernels)


# ---------------------------------------------------------------------------------------------
# Dispatch on an already chosen backend (rpn2kernels.backends.select_backend).

def expand(x: Tensor, basis: str, degree: int, params: Sequence[float], backend: str) -> Tensor:
    params = list(params)
    if backend in ("cpu", "cuda"):
        return torch.ops.rpn2kernels.expand(x, basis, degree, params)
    if backend == "triton":
        return torch.ops.rpn2kernels.triton_expand(x, basis, degree, params)
    return reference.expand(x, basis, degree, params)


def expand_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor], basis: str, degree: int,
                  params: Sequence[float], backend: str) -> Tensor:
    params = list(params)
    if backend in ("cpu", "cuda"):
        return torch.ops.rpn2kernels.expand_linear(x, weight, bias, basis, degree, params)
    if backend == "triton":
        return torch.ops.rpn2kernels.triton_expand_linear(x, weight, bias, basis, degree, params)
    return reference.expand_linear(x, weight, bias, basis, degree, params)
