"""Reference of the dense transform ``narrow_linear``: torch's own GEMM (functions.md §3, the
identity reconciliation's inner product y = x·Wᵀ + b)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def narrow_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    return torch.nn.functional.linear(x, weight, bias)
