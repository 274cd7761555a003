"""Python side of ``rpn2kernels::narrow_linear`` (y = x·Wᵀ + b; schema in csrc/ops.cpp, CPU kernel in
csrc/cpu/narrow_linear.cpp, CUDA registration in csrc/cuda/narrow_linear.cu): fake kernel and autograd.

The backward is the op itself on transposed views — dx = G·W = narrow_linear(G, Wᵀ) and
dW = Gᵀ·x = narrow_linear(Gᵀ, xᵀ) — so the CPU kernel's tiling serves all three products (each has
the layer's narrow dimension in it), nothing is copied, and double backward goes through the op.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .. import _extension
from ..reference import linear as reference
from ._ad_modes import refuse_forward_ad


def _fake_narrow_linear(x, weight, bias):
    return x.new_empty((x.shape[0], weight.shape[0]))


def _setup_context(ctx, inputs, output):
    x, weight, bias = inputs
    ctx.save_for_backward(x, weight)
    ctx.has_bias = bias is not None


def _backward(ctx, grad):
    refuse_forward_ad("rpn2kernels::narrow_linear", grad.device.type, grad)
    x, weight = ctx.saved_tensors
    op = torch.ops.rpn2kernels.narrow_linear
    grad_x = op(grad, weight.t(), None) if ctx.needs_input_grad[0] else None
    grad_weight = op(grad.t(), x.t(), None) if ctx.needs_input_grad[1] else None
    grad_bias = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
    return grad_x, grad_weight, grad_bias


if _extension.extension_loaded():
    torch.library.register_fake("rpn2kernels::narrow_linear")(_fake_narrow_linear)
    torch.library.register_autograd("rpn2kernels::narrow_linear", _backward, setup_context=_setup_context)


def narrow_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor], backend: str) -> Tensor:
    """The op on an already chosen backend (``cpu``/``cuda``: the compiled op; ``reference``: F.linear)."""
    if backend == "reference":
        return reference.narrow_linear(x, weight, bias)
    return torch.ops.rpn2kernels.narrow_linear(x, weight, bias)
