"""Bases of the expansion family κ: names, parameters and feature counts (functions.md §2).

Every op of the family takes the same three basis arguments — ``basis`` (a name below), ``degree``
and ``params`` (a list of floats whose meaning depends on the basis) — so the C++ schema, the
Triton launcher and the reference agree on one encoding. :func:`basis_arguments` turns
user-facing keywords into that encoding and validates them; every layer above calls it once.

===================== ===================== =========================================================
basis                 params                features per attribute K (interleaved column i*K + k)
===================== ===================== =========================================================
chebyshev, legendre,  ()                    degree (P_1 … P_degree; degree 0 is never a column)
hermite, bessel,
reverse_bessel,
fibonacci, lucas
jacobi                (alpha, beta)         degree
gegenbauer, laguerre  (alpha,)              degree
gaussian_rbf,         (lo, hi, epsilon)     degree (= number of centres, linspace(lo, hi, K))
inverse_quadratic_rbf
bspline               (lo, hi, intervals)   intervals + degree
taylor                ()                    block layout, D = m + m² + … + m^degree (§2.4)
===================== ===================== =========================================================
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

#: basis name -> (id used by the C++/CUDA kernels, names of its params, default param values)
BASES: Dict[str, Tuple[int, Tuple[str, ...], Tuple[float, ...]]] = {
    "chebyshev": (0, (), ()),
    "legendre": (1, (), ()),
    "jacobi": (2, ("alpha", "beta"), (1.0, 1.0)),
    "gegenbauer": (3, ("alpha",), (1.0,)),
    "hermite": (4, (), ()),
    "laguerre": (5, ("alpha",), (1.0,)),
    "bessel": (6, (), ()),
    "reverse_bessel": (7, (), ()),
    "fibonacci": (8, (), ()),
    "lucas": (9, (), ()),
    "gaussian_rbf": (10, ("lo", "hi", "epsilon"), (-1.0, 1.0, 1.0)),
    "inverse_quadratic_rbf": (11, ("lo", "hi", "epsilon"), (-1.0, 1.0, 1.0)),
    "bspline": (12, ("lo", "hi", "intervals"), (-1.0, 1.0, 5.0)),
    "taylor": (13, (), ()),
}

POLYNOMIAL_BASES = (
    "chebyshev", "legendre", "jacobi", "gegenbauer", "hermite", "laguerre", "bessel",
    "reverse_bessel", "fibonacci", "lucas",
)
RBF_BASES = ("gaussian_rbf", "inverse_quadratic_rbf")

#: The B-spline degree bound of the compiled kernels (csrc/include/rpn2kernels/expansion_math.h).
MAX_BSPLINE_DEGREE = 15


def check_basis(basis: str, degree: int, params: Sequence[float]) -> None:
    """Validate the op-level encoding; raises ValueError/TypeError naming the argument."""
    if not isinstance(basis, str):
        raise TypeError(f"basis must be a str, got {type(basis).__name__}")
    if basis not in BASES:
        raise ValueError(f"basis must be one of {sorted(BASES)}, got {basis!r}")
    if isinstance(degree, bool) or not isinstance(degree, int):
        raise TypeError(f"degree must be an int, got {type(degree).__name__}")
    if degree < 1:
        raise ValueError(f"degree must be >= 1, got {degree}")
    names = BASES[basis][1]
    if len(params) != len(names):
        raise ValueError(
            f"params for basis {basis!r} must be {len(names)} values {names}, got {len(params)}: {list(params)}")
    if basis == "bspline":
        lo, hi, intervals = params
        if degree > MAX_BSPLINE_DEGREE:
            raise ValueError(f"degree of a bspline basis must be <= {MAX_BSPLINE_DEGREE}, got {degree}")
        if not float(intervals).is_integer() or intervals < 1:
            raise ValueError(f"intervals of a bspline basis must be a positive integer, got {intervals}")
        if not hi > lo:
            raise ValueError(f"bspline range must satisfy lo < hi, got lo={lo}, hi={hi}")
    if basis in RBF_BASES:
        lo, hi, _ = params
        if not hi >= lo:
            raise ValueError(f"rbf range must satisfy lo <= hi, got lo={lo}, hi={hi}")
    if basis == "jacobi" and (params[0] <= -1 or params[1] <= -1):
        raise ValueError(f"jacobi alpha and beta must be > -1, got alpha={params[0]}, beta={params[1]}")


def basis_arguments(basis: str, degree: int, **keywords: float) -> Tuple[str, int, List[float]]:
    """Map user keywords (``alpha=``, ``beta=``, ``lo=``, ``hi=``, ``epsilon=``, ``intervals=``)
    to the op encoding ``(basis, degree, params)``, filling defaults and rejecting unknown keys."""
    if not isinstance(basis, str) or basis not in BASES:
        raise ValueError(f"basis must be one of {sorted(BASES)}, got {basis!r}")
    _, names, defaults = BASES[basis]
    unknown = [k for k, v in keywords.items() if k not in names and v is not None]
    if unknown:
        raise ValueError(f"basis {basis!r} takes the parameters {names or '(none)'}, got unexpected {unknown}")
    params = [float(keywords[n]) if keywords.get(n) is not None else float(d) for n, d in zip(names, defaults)]
    check_basis(basis, degree, params)
    return basis, degree, params


def features_per_attribute(basis: str, degree: int, params: Sequence[float]) -> int:
    """K of the interleaved layout (column i*K + k). Not defined for Taylor."""
    if basis == "taylor":
        raise ValueError("taylor has a block layout; use expansion_width()")
    if basis == "bspline":
        return int(params[2]) + degree
    return degree


def expansion_width(basis: str, degree: int, params: Sequence[float], m: int) -> int:
    """D: the number of columns of κ(x) for m input attributes."""
    if basis == "taylor":
        return sum(m ** k for k in range(1, degree + 1))
    return m * features_per_attribute(basis, degree, params)


def taylor_degree_offsets(m: int, degree: int) -> List[int]:
    """Column offset of each Taylor degree block: off_k = Σ_{i<k} m^i (index 0 is degree 1)."""
    return [sum(m ** i for i in range(1, k)) for k in range(1, degree + 1)]


def bspline_knot_step(params: Sequence[float]) -> float:
    lo, hi, intervals = params
    return (hi - lo) / intervals


def rbf_centres(params: Sequence[float], count: int) -> List[float]:
    lo, hi, _ = params
    step = (hi - lo) / (count - 1) if count > 1 else 0.0
    return [lo + k * step for k in range(count)]


__all__ = [
    "BASES", "POLYNOMIAL_BASES", "RBF_BASES", "MAX_BSPLINE_DEGREE", "check_basis", "basis_arguments",
    "features_per_attribute", "expansion_width", "taylor_degree_offsets", "bspline_knot_step",
    "rbf_centres",
]
