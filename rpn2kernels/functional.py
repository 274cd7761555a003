"""Public functions of rpn2kernels: validate the arguments, pick a backend, call the op.

Every function takes ``backend=None`` (see :mod:`rpn2kernels.backends` for the selection order and
``docs/backends.md`` for the support matrix).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .backends import select_backend
from .basis import basis_arguments, expansion_width
from .ops import expansion as _expansion_ops

INPUT_NORMS = (None, "tanh")


def _check_tensor(t, name: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")


def _check_like(t: Tensor, name: str, x: Tensor) -> None:
    _check_tensor(t, name)
    if t.device != x.device:
        raise ValueError(f"{name} must be on x's device {x.device}, got {t.device}")
    if t.dtype != x.dtype:
        raise TypeError(f"{name} must have x's dtype {x.dtype}, got {t.dtype}")


def _prepare_input(x: Tensor, input_norm: Optional[str]) -> Tensor:
    _check_tensor(x, "x")
    if x.dim() < 1:
        raise ValueError(f"x must have at least 1 dim (..., m), got shape {tuple(x.shape)}")
    if input_norm not in INPUT_NORMS:
        raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {input_norm!r}")
    x2 = x.reshape(-1, x.shape[-1]) if x.dim() != 2 else x
    return torch.tanh(x2) if input_norm == "tanh" else x2


def expand(x: Tensor, basis: str = "chebyshev", degree: int = 2, *, backend: Optional[str] = None,
           input_norm: Optional[str] = None, **basis_params: float) -> Tensor:
    """κ(x), materialised: x of shape (..., m) -> (..., D).

    Args:
        x: input, last dim m attributes. Values outside a basis's natural domain are expanded as
            tinyBIG does (no range normalisation); ``input_norm="tanh"`` maps them into (-1, 1) first.
        basis, degree, basis_params: the basis (see :mod:`rpn2kernels.basis`), e.g.
            ``expand(x, "jacobi", 3, alpha=0.5, beta=1.0)``.
        backend: ``"cpu"``, ``"cuda"``, ``"triton"``, ``"reference"`` or None (automatic).
    """
    basis, degree, params = basis_arguments(basis, degree, **basis_params)
    x2 = _prepare_input(x, input_norm)
    chosen = select_backend("expand", x2.device, x2.dtype, backend)
    out = _expansion_ops.expand(x2, basis, degree, params, chosen)
    return out.reshape(*x.shape[:-1], out.shape[-1])


def expand_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, basis: str = "chebyshev",
                  degree: int = 2, *, backend: Optional[str] = None, input_norm: Optional[str] = None,
                  **basis_params: float) -> Tensor:
    """y = κ(x)·Wᵀ + b without materialising κ(x): x (..., m), weight (n, D), bias (n,) -> (..., n).

    D is :func:`rpn2kernels.basis.expansion_width` of the basis for m attributes; W's columns follow
    the basis layout (interleaved i*K + k, or Taylor's ordered-monomial blocks). Backward recomputes
    κ tile by tile: only x and W are saved.
    """
    basis, degree, params = basis_arguments(basis, degree, **basis_params)
    x2 = _prepare_input(x, input_norm)
    _check_like(weight, "weight", x2)
    D = expansion_width(basis, degree, params, x2.shape[1])
    if weight.dim() != 2 or weight.shape[1] != D:
        raise ValueError(f"weight must have shape (n, D={D}) for basis {basis!r}, degree {degree} and "
                         f"m={x2.shape[1]}, got {tuple(weight.shape)}")
    if bias is not None:
        _check_like(bias, "bias", x2)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    chosen = select_backend("expand_linear", x2.device, x2.dtype, backend)
    y = _expansion_ops.expand_linear(x2, weight, bias, basis, degree, params, chosen)
    return y.reshape(*x.shape[:-1], weight.shape[0])


__all__ = ["expand", "expand_linear"]
