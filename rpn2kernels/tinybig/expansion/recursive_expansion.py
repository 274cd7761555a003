"""Recursive expansions (tinyBIG: ``tinybig/expansion/recursive_expansion.py``): B-spline,
Chebyshev, Jacobi; and the shared plumbing of every three-term-recurrence family."""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import torch

from ...basis import bspline_knot_step
from ..module.base_transformation import transformation
from ._functional import check_input, kappa

__all__ = ["bspline_expansion", "chebyshev_expansion", "jacobi_expansion"]


class _recurrence_expansion(transformation):
    """P_1 … P_d per attribute, interleaved (column = i·d + k − 1), D = m·d (functions.md §2.5)."""

    _basis: str = ""
    #: attributes forwarded to functional.expand as basis keywords
    _basis_keys: Tuple[str, ...] = ()
    _config_keys: Tuple[str, ...] = ("d",)

    def calculate_D(self, m: int) -> int:
        return m * self.d

    def forward(self, x: torch.Tensor, device: str = "cpu", *args: Any, **kwargs: Any) -> torch.Tensor:
        x = check_input(x, type(self).__name__)
        x = self.pre_process(x, device=device)
        # Attributes are read per call, so assigning e.g. ``expansion.d = 3`` behaves as in tinyBIG.
        expansion = kappa(x, self._basis, self.d, **{k: getattr(self, k) for k in self._basis_keys})
        return self.post_process(expansion, device=device)


class chebyshev_expansion(_recurrence_expansion):
    """Chebyshev T_1 … T_d (no range normalisation of x)."""

    _basis = "chebyshev"

    def __init__(self, name: str = "chebyshev_polynomial_expansion", d: int = 2, *args: Any, **kwargs: Any):
        super().__init__(name=name, *args, **kwargs)
        self.d = d


class jacobi_expansion(_recurrence_expansion):
    """Jacobi P_1^{(α,β)} … P_d^{(α,β)}."""

    _basis = "jacobi"
    _basis_keys = ("alpha", "beta")
    _config_keys = ("d", "alpha", "beta")

    def __init__(self, name: str = "jacobi_polynomial_expansion", d: int = 2, alpha: float = 1.0, beta: float = 1.0,
                 *args: Any, **kwargs: Any):
        super().__init__(name=name, *args, **kwargs)
        self.d = d
        self.alpha = alpha
        self.beta = beta


class bspline_expansion(transformation):
    """B_{j,d}(x), j = 0 … t+d−1, on t uniform intervals of ``grid_range`` extended by d knots on
    each side; column = i·(t + d) + j, D = m·(t + d) (functions.md §2.6).

    ``grid`` holds the knot vector lo + (j − d)·h, j = 0 … t + 2d, as a non-persistent buffer built
    at construction (tinyBIG builds an (m, t+2d+1) plain tensor at the first forward, which
    ``.to()`` and checkpoints miss). It is derived from ``grid_range``, ``t`` and ``d``, which are
    what forward uses; change them with :meth:`initialize_grid`.
    """

    _config_keys = ("grid_range", "t", "d")

    def __init__(self, name: str = "bspline_expansion", grid_range: Sequence[float] = (-1, 1), t: int = 5, d: int = 3,
                 *args: Any, **kwargs: Any):
        super().__init__(name=name, *args, **kwargs)
        self.grid_range = grid_range
        self.t = t
        self.d = d
        self.register_buffer("grid", None, persistent=False)
        self.initialize_grid(device=self.device)

    def calculate_D(self, m: int) -> int:
        return m * (self.t + self.d)

    def initialize_grid(self, m: Optional[int] = None, device: Any = None, grid_range: Optional[Sequence[float]] = None,
                        t: Optional[int] = None, d: Optional[int] = None) -> None:
        """(Re)build the knot buffer, updating grid_range / t / d when given. ``m`` is accepted for
        tinyBIG compatibility: the knots do not depend on it."""
        self.grid_range = grid_range if grid_range is not None else self.grid_range
        self.t = t if t is not None else self.t
        self.d = d if d is not None else self.d
        h = bspline_knot_step((self.grid_range[0], self.grid_range[1], self.t))
        if device is None:
            device = self.grid.device if self.grid is not None else self.device
        self.grid = torch.arange(-self.d, self.t + self.d + 1, device=device) * h + self.grid_range[0]

    def forward(self, x: torch.Tensor, device: str = "cpu", *args: Any, **kwargs: Any) -> torch.Tensor:
        x = check_input(x, type(self).__name__)
        x = self.pre_process(x, device=device)
        expansion = kappa(x, "bspline", self.d, lo=self.grid_range[0], hi=self.grid_range[1], intervals=self.t)
        return self.post_process(expansion, device=device)
