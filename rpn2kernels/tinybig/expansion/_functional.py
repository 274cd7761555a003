"""The one call every expansion of the tinyBIG namespace makes into rpn2kernels.functional.

Only layout glue lives here: shape checks with tinyBIG's (b, m) contract, integer inputs promoted
the way tinyBIG's float32 work buffer promotes them, and the D = 0 case tinyBIG allows (d = 0) but
the kernels do not take. The math is in rpn2kernels.functional / rpn2kernels.reference.
"""
from __future__ import annotations

from typing import Any

import torch

from ... import functional


def check_input(x: torch.Tensor, cls_name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{cls_name}.forward expects a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{cls_name}.forward expects x of shape (b, m), got {tuple(x.shape)}")
    if not (x.is_floating_point() or x.is_complex()):
        # tinyBIG writes into a default-dtype buffer, so integer inputs come out as floats there too.
        x = x.to(torch.get_default_dtype())
    return x


def kappa(x: torch.Tensor, basis: str, degree: int, **basis_params: Any) -> torch.Tensor:
    """κ(x) of shape (b, D) in x's dtype and on x's device."""
    if degree == 0 and basis != "bspline":
        # tinyBIG: d = 0 (or num_interval = 0) gives D = 0 for the polynomial, Taylor and RBF families.
        return x.new_zeros((x.shape[0], 0))
    return functional.expand(x, basis=basis, degree=int(degree), **basis_params)
