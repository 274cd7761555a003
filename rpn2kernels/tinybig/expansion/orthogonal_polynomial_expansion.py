"""Orthogonal-polynomial expansions (tinyBIG: ``tinybig/expansion/orthogonal_polynomial_expansion.py``).

Constructor keywords and defaults are tinyBIG's, including its default names (Hermite's default
name is ``'chebyshev_polynomial_expansion'`` there, and stays so for config compatibility).
"""
from __future__ import annotations

from typing import Any

from .recursive_expansion import _recurrence_expansion

__all__ = [
    "hermite_expansion", "laguerre_expansion", "legendre_expansion", "gegenbauer_expansion", "bessel_expansion",
    "reverse_bessel_expansion", "fibonacci_expansion", "lucas_expansion",
]


class hermite_expansion(_recurrence_expansion):
    """Probabilists' Hermite He_1 … He_d."""

    _basis = "hermite"

    def __init__(self, name: str = "chebyshev_polynomial_expansion", d: int = 2, *args: Any, **kwargs: Any):
        super().__init__(name=name, *args, **kwargs)
        self.d = d


class laguerre_expansion(_recurrence_expansion):
    """Generalised Laguerre L_1^{(α)} … L_d^{(α)}.

    Correct polynomials (P_1 = 1 + α − x); tinyBIG codes P_1 = x + 1 + α, so its values differ at
    every degree (defect 7.1 #21).
    """

    _basis = "laguerre"
    _basis_keys = ("alpha",)
    _config_keys = ("d", "alpha")

    def __init__(self, name: str = "laguerre_polynomial_expansion", d: int = 2, alpha: float = 1.0,
                 *args: Any, **kwargs: Any):
        super().__init__(name=name, *args, **kwargs)
        self.d = d
        self.alpha = alpha


class legendre_expansion(_recurrence_expansion):
    """Legendre P_1 … P_d."""

    _basis = "legendre"

    def __init__(self, name: str = "legendre_polynomial_expansion", d: int = 2, *args: Any, **kwargs: Any):
        super().__init__(name=name, *args, **kwargs)
        self.d = d


class gegenbauer_expansion(_recurrence_expansion):
    """Gegenbauer C_1^{(α)} … C_d^{(α)}."""

    _basis = "gegenbauer"
    _basis_keys = ("alpha",)
    _config_keys = ("d", "alpha")

    def __init__(self, name: str = "gegenbauer_polynomial_expansion", d: int = 2, alpha: float = 1.0,
                 *args: Any, **kwargs: Any):
        super().__init__(name=name, *args, **kwargs)
        self.d = d
        self.alpha = alpha


class bessel_expansion(_recurrence_expansion):
    """Bessel polynomials y_1 … y_d."""

    _basis = "bessel"

    def __init__(self, name: str = "bessel_polynomial_expansion", d: int = 2, *args: Any, **kwargs: Any):
        super().__init__(name=name, *args, **kwargs)
        self.d = d


class reverse_bessel_expansion(_recurrence_expansion):
    """Reverse Bessel polynomials θ_1 … θ_d."""

    _basis = "reverse_bessel"

    def __init__(self, name: str = "reverse_bessel_polynomial_expansion", d: int = 2, *args: Any, **kwargs: Any):
        super().__init__(name=name, *args, **kwargs)
        self.d = d


class fibonacci_expansion(_recurrence_expansion):
    """Fibonacci polynomials F_1 … F_d; F_1 = 1 is a constant column (F_0 = 0 is dropped)."""

    _basis = "fibonacci"

    def __init__(self, name: str = "fibonacci_polynomial_expansion", d: int = 2, *args: Any, **kwargs: Any):
        super().__init__(name=name, *args, **kwargs)
        self.d = d


class lucas_expansion(_recurrence_expansion):
    """Lucas polynomials L_1 … L_d."""

    _basis = "lucas"

    def __init__(self, name: str = "lucas_polynomial_expansion", d: int = 2, *args: Any, **kwargs: Any):
        super().__init__(name=name, *args, **kwargs)
        self.d = d
