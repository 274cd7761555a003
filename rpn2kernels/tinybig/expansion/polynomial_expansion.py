"""Polynomial expansions (tinyBIG: ``tinybig/expansion/polynomial_expansion.py``)."""
from __future__ import annotations

import warnings
from typing import Any

import torch

from ..module.base_transformation import transformation
from ._functional import check_input, kappa

__all__ = ["taylor_expansion"]


class taylor_expansion(transformation):
    """All ordered products of k attributes, k = 1 … d, D = Σ_{k=1}^{d} m^k (functions.md §2.4).

    Ordered monomials with duplicates (x_a·x_c and x_c·x_a are separate columns) are kept because
    they fix D and the column order of a trained W.
    """

    _config_keys = ("d",)

    def __init__(self, name: str = "taylor_expansion", d: int = 2, *args: Any, **kwargs: Any):
        super().__init__(name=name, *args, **kwargs)
        self.d = d

    def calculate_D(self, m: int) -> int:
        D = sum(m ** i for i in range(1, self.d + 1))
        if D > 10 ** 7:
            warnings.warn("You have expanded the input data to a very high-dimensional representation, "
                          "with more than 10M features per instance...", UserWarning)
        return D

    def forward(self, x: torch.Tensor, device: str = "cpu", *args: Any, **kwargs: Any) -> torch.Tensor:
        x = check_input(x, type(self).__name__)
        x = self.pre_process(x, device=device)
        return self.post_process(kappa(x, "taylor", self.d), device=device)
