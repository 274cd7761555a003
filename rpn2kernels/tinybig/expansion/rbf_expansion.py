"""Radial-basis-function expansions (tinyBIG: ``tinybig/expansion/rbf_expansion.py``)."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from ..module.base_transformation import transformation
from ._functional import check_input, kappa

__all__ = ["gaussian_rbf_expansion", "inverse_quadratic_rbf_expansion"]


def _uniform_centres(base: Any) -> tuple:
    """(lo, hi, K) of a linspace-like centre vector. The kernels generate the centres from
    (lo, hi, K) instead of reading a tensor, so arbitrary centres cannot be honoured."""
    values = torch.as_tensor(base, dtype=torch.float64).flatten().cpu()
    if values.numel() == 0:
        raise ValueError("base (the RBF centres) must not be empty")
    lo, hi, K = float(values[0]), float(values[-1]), values.numel()
    expected = torch.linspace(lo, hi, K, dtype=torch.float64)
    scale = max(abs(lo), abs(hi), 1.0)
    if not torch.allclose(values, expected, rtol=0.0, atol=1e-5 * scale):
        raise ValueError("rpn2kernels supports RBF centres evenly spaced from base[0] to base[-1] "
                         f"(torch.linspace); got {values.tolist()}")
    return lo, hi, K


class gaussian_rbf_expansion(transformation):
    """exp(−ε²(x − μ_k)²) for the centres μ_k = linspace(base_range, num_interval); column =
    i·K + k, D = m·K (functions.md §2.7).

    ``base`` holds the centres as a non-persistent buffer built at construction (tinyBIG creates a
    plain tensor at the first forward on whichever device comes first). They are derived from
    ``base_range`` and ``num_interval``, which are what forward uses. A ``base`` given to the
    constructor must be evenly spaced; it then sets base_range and num_interval.
    """

    _basis = "gaussian_rbf"
    _config_keys = ("base_range", "num_interval", "epsilon")

    def __init__(self, name: str = "gaussian_rbf_expansion", base_range: Sequence[float] = (-1, 1),
                 num_interval: int = 10, epsilon: float = 1.0, base: Optional[Any] = None, *args: Any, **kwargs: Any):
        super().__init__(name=name, *args, **kwargs)
        if base is not None:
            lo, hi, K = _uniform_centres(base)
            if K != num_interval:
                raise ValueError(f"base has {K} centres but num_interval={num_interval}; they must agree "
                                 "(calculate_D uses num_interval)")
            base_range = (lo, hi)
        self.base_range = base_range
        self.num_interval = num_interval
        self.epsilon = epsilon
        self.register_buffer("base", None, persistent=False)
        self.initialize_base(device=self.device)

    def calculate_D(self, m: int) -> int:
        return m * self.num_interval

    def initialize_base(self, device: Any = None, base_range: Optional[Sequence[float]] = None,
                        num_interval: Optional[int] = None) -> None:
        """(Re)build the centre buffer, updating base_range / num_interval when given."""
        self.base_range = base_range if base_range is not None else self.base_range
        self.num_interval = num_interval if num_interval is not None else self.num_interval
        if device is None:
            device = self.base.device if self.base is not None else self.device
        self.base = torch.linspace(self.base_range[0], self.base_range[1], self.num_interval, device=device)

    def forward(self, x: torch.Tensor, device: str = "cpu", *args: Any, **kwargs: Any) -> torch.Tensor:
        x = check_input(x, type(self).__name__)
        x = self.pre_process(x, device=device)
        expansion = kappa(x, self._basis, self.num_interval, lo=self.base_range[0], hi=self.base_range[1],
                          epsilon=self.epsilon)
        return self.post_process(expansion, device=device)


class inverse_quadratic_rbf_expansion(gaussian_rbf_expansion):
    """1/(1 + ε²(x − μ_k)²), same centres and layout as :class:`gaussian_rbf_expansion`."""

    _basis = "inverse_quadratic_rbf"

    def __init__(self, name: str = "inverse_quadratic_rbf", base_range: Sequence[float] = (-1, 1),
                 num_interval: int = 10, epsilon: float = 1.0, base: Optional[Any] = None, *args: Any, **kwargs: Any):
        super().__init__(name=name, base_range=base_range, num_interval=num_interval, epsilon=epsilon, base=base,
                         *args, **kwargs)
