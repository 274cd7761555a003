"""Expansion functions κ of the tinyBIG namespace (mirrors ``tinybig.expansion``).

Same class names, constructor keywords, defaults and methods as tinyBIG 0.2.1; forward runs the
rpn2kernels kernels in the input's dtype on the input's device. Differences from tinyBIG are listed
in docs/tinybig-differences.md.
"""
from ..module.base_transformation import transformation

from .basic_expansion import identity_expansion, reciprocal_expansion
from .polynomial_expansion import taylor_expansion
from .rbf_expansion import gaussian_rbf_expansion, inverse_quadratic_rbf_expansion
from .recursive_expansion import bspline_expansion, chebyshev_expansion, jacobi_expansion
from .orthogonal_polynomial_expansion import (
    bessel_expansion,
    fibonacci_expansion,
    gegenbauer_expansion,
    hermite_expansion,
    laguerre_expansion,
    legendre_expansion,
    lucas_expansion,
    reverse_bessel_expansion,
)

__all__ = [
    "transformation",
    "identity_expansion", "reciprocal_expansion",
    "taylor_expansion",
    "gaussian_rbf_expansion", "inverse_quadratic_rbf_expansion",
    "bspline_expansion", "chebyshev_expansion", "jacobi_expansion",
    "hermite_expansion", "laguerre_expansion", "legendre_expansion", "gegenbauer_expansion", "bessel_expansion",
    "reverse_bessel_expansion", "fibonacci_expansion", "lucas_expansion",
]
