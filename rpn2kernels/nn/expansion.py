"""Drop-in torch.nn modules of the expansion family."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from .. import functional as F
from ..basis import BASES, basis_arguments, expansion_width


class _BasisModule(nn.Module):
    def __init__(self, in_features: int, basis: str, degree: int, backend: Optional[str],
                 input_norm: Optional[str], basis_params: dict) -> None:
        super().__init__()
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 0:
            raise ValueError(f"in_features must be a non-negative int, got {in_features!r}")
        self.basis, self.degree, params = basis_arguments(basis, degree, **basis_params)
        self.basis_params = dict(zip(BASES[self.basis][1], params))
        self.in_features = in_features
        self.expansion_width = expansion_width(self.basis, self.degree, params, in_features)
        self.backend = backend
        self.input_norm = input_norm

    def extra_repr(self) -> str:
        params = "".join(f", {k}={v}" for k, v in self.basis_params.items())
        return f"in_features={self.in_features}, basis={self.basis!r}, degree={self.degree}{params}"


class Expansion(_BasisModule):
    """κ(x), materialised: (..., in_features) -> (..., D). For composing with other modules; use
    :class:`ExpansionLinear` when the expansion feeds a linear map."""

    def __init__(self, in_features: int, basis: str = "chebyshev", degree: int = 2, *,
                 backend: Optional[str] = None, input_norm: Optional[str] = None, **basis_params: float) -> None:
        super().__init__(in_features, basis, degree, backend, input_norm, basis_params)
        self.out_features = self.expansion_width

    def forward(self, x: Tensor) -> Tensor:
        return F.expand(x, self.basis, self.degree, backend=self.backend, input_norm=self.input_norm,
                        **self.basis_params)


class ExpansionLinear(_BasisModule):
    """y = κ(x)·Wᵀ + b, fused (a KAN-style layer): (..., in_features) -> (..., out_features).

    ``weight`` has shape (out_features, D) with D = in_features·K (K features per attribute,
    interleaved column i*K + k) or Taylor's D = Σ m^k. Initialised like ``nn.Linear`` with the fan
    of W (U(−1/√D, 1/√D)).

    Example::

        layer = ExpansionLinear(64, 32, basis="chebyshev", degree=3, input_norm="tanh")
        y = layer(torch.randn(128, 64))
    """

    def __init__(self, in_features: int, out_features: int, basis: str = "chebyshev", degree: int = 2, *,
                 bias: bool = True, backend: Optional[str] = None, input_norm: Optional[str] = None,
                 device=None, dtype=None, **basis_params: float) -> None:
        super().__init__(in_features, basis, degree, backend, input_norm, basis_params)
        if isinstance(out_features, bool) or not isinstance(out_features, int) or out_features < 0:
            raise ValueError(f"out_features must be a non-negative int, got {out_features!r}")
        self.out_features = out_features
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_features, self.expansion_width, **factory))
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.expansion_width) if self.expansion_width > 0 else 0.0
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return F.expand_linear(x, self.weight, self.bias, self.basis, self.degree, backend=self.backend,
                               input_norm=self.input_norm, **self.basis_params)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, out_features={self.out_features}, bias={self.bias is not None}"
