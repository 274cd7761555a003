"""Basic expansions (tinyBIG: ``tinybig/expansion/basic_expansion.py``)."""
from __future__ import annotations

from typing import Any

import torch

from ..module.base_transformation import transformation
from ._functional import check_input

__all__ = ["identity_expansion", "reciprocal_expansion"]

# tinyBIG's clamp threshold (functions.md §2.3; kept behaviour 7.2 #24).
_RECIPROCAL_EPS = 1e-6


class identity_expansion(transformation):
    """κ(x) = x, D = m."""

    def __init__(self, name: str = "identity_expansion", *args: Any, **kwargs: Any):
        super().__init__(name=name, *args, **kwargs)

    def calculate_D(self, m: int) -> int:
        return m

    def _kappa(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor, device: str = "cpu", *args: Any, **kwargs: Any) -> torch.Tensor:
        x = check_input(x, type(self).__name__)
        x = self.pre_process(x, device=device)
        return self.post_process(self._kappa(x), device=device)


class reciprocal_expansion(identity_expansion):
    """κ(x) = 1/x after mapping [0, 1e-6] to +1e-6 and [-1e-6, 0) to -1e-6, D = m.

    tinyBIG clamps the caller's tensor in place (defect 7.1 #18); here the input is left untouched
    and the clamped entries get a zero gradient.
    """

    def __init__(self, name: str = "reciprocal_expansion", *args: Any, **kwargs: Any):
        super().__init__(name=name, *args, **kwargs)

    def _kappa(self, x: torch.Tensor) -> torch.Tensor:
        # Two where() in tinyBIG's order so that 0 maps to +eps (the first rule wins there).
        x = torch.where((x >= 0) & (x <= _RECIPROCAL_EPS), _RECIPROCAL_EPS, x)
        x = torch.where((x < 0) & (x >= -_RECIPROCAL_EPS), -_RECIPROCAL_EPS, x)
        return torch.reciprocal(x)
