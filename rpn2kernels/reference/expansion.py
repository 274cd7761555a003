"""Pure-PyTorch reference of the expansion family: the test oracle and the fallback backend.

It materialises κ(x) exactly as functions.md §2 describes (and as tinyBIG does, minus the defects
of §7.1), with each recurrence written out per family from the spec's table rather than through
the unified recurrence of the compiled kernels, so that the two are independent.
Gradients come from PyTorch autograd through these formulas.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F

from ..basis import check_basis, features_per_attribute, rbf_centres


def _polynomial_terms(x: torch.Tensor, basis: str, degree: int, params: Sequence[float]) -> List[torch.Tensor]:
    """[P_0(x), P_1(x), …, P_degree(x)] for one of the ten recurrence families."""
    one = torch.ones_like(x)
    if basis == "jacobi":
        a, b = params
        terms = [one, ((a - b) + (a + b + 2) * x) / 2]
    elif basis == "gegenbauer":
        terms = [one, 2 * params[0] * x]
    elif basis == "laguerre":
        terms = [one, 1 + params[0] - x]
    elif basis in ("bessel", "reverse_bessel"):
        terms = [one, x + 1]
    elif basis == "fibonacci":
        terms = [torch.zeros_like(x), one]
    elif basis == "lucas":
        terms = [2 * one, x]
    else:  # chebyshev, legendre, hermite
        terms = [one, x]
    for k in range(2, degree + 1):
        p1, p2 = terms[k - 1], terms[k - 2]
        if basis == "chebyshev":
            nxt = 2 * x * p1 - p2
        elif basis == "legendre":
            nxt = ((2 * k - 1) * x * p1 - (k - 1) * p2) / k
        elif basis == "jacobi":
            a, b = params
            s = 2 * k + a + b
            c1 = 2 * k * (k + a + b) * (s - 2)
            ak = (s - 1) * s * (s - 2) / c1
            bk = (s - 1) * (a * a - b * b) / c1
            ck = 2 * (k + a - 1) * (k + b - 1) * s / c1
            nxt = (ak * x + bk) * p1 - ck * p2
        elif basis == "gegenbauer":
            a = params[0]
            nxt = (2 * x * (k - 1 + a) * p1 - (k - 2 + 2 * a) * p2) / k
        elif basis == "hermite":
            nxt = x * p1 - (k - 1) * p2
        elif basis == "laguerre":
            a = params[0]
            nxt = ((2 * k - 1 + a - x) * p1 - (k - 1 + a) * p2) / k
        elif basis == "bessel":
            nxt = (2 * k - 1) * x * p1 + p2
        elif basis == "reverse_bessel":
            nxt = (2 * k - 1) * p1 + x * x * p2
        else:  # fibonacci, lucas
            nxt = x * p1 + p2
        terms.append(nxt)
    return terms


def _bspline_terms(x: torch.Tensor, degree: int, params: Sequence[float]) -> List[torch.Tensor]:
    """Cox–de Boor on the extended uniform knot vector (functions.md §2.6), B_{j,degree} for
    j = 0 … intervals + degree − 1."""
    lo, hi, intervals = params
    intervals = int(intervals)
    h = (hi - lo) / intervals
    knots = [lo + (j - degree) * h for j in range(intervals + 2 * degree + 1)]
    bases = [((x >= knots[j]) & (x < knots[j + 1])).to(x.dtype) for j in range(len(knots) - 1)]
    for k in range(1, degree + 1):
        bases = [
            (x - knots[j]) / (knots[j + k] - knots[j]) * bases[j]
            + (knots[j + k + 1] - x) / (knots[j + k + 1] - knots[j + 1]) * bases[j + 1]
            for j in range(len(bases) - 1)
        ]
    return bases


def _rbf_terms(x: torch.Tensor, basis: str, count: int, params: Sequence[float]) -> List[torch.Tensor]:
    eps = params[2]
    out = []
    for mu in rbf_centres(params, count):
        r2 = (eps * (x - mu)) ** 2
        out.append(torch.exp(-r2) if basis == "gaussian_rbf" else 1.0 / (1.0 + r2))
    return out


def _taylor(x: torch.Tensor, degree: int) -> torch.Tensor:
    """Ordered monomial blocks of degree 1 … d (functions.md §2.4), a_1 the most significant digit."""
    b, m = x.shape
    blocks, block = [x], x
    for _ in range(2, degree + 1):
        block = (block.unsqueeze(2) * x.unsqueeze(1)).reshape(b, -1)
        blocks.append(block)
    return torch.cat(blocks, dim=1)


def expand(x: torch.Tensor, basis: str, degree: int, params: Sequence[float]) -> torch.Tensor:
    """κ(x) for x of shape (B, m), materialised: (B, D)."""
    check_basis(basis, degree, params)
    if x.dim() != 2:
        raise ValueError(f"x must have 2 dims (B, m), got shape {tuple(x.shape)}")
    if basis == "taylor":
        return _taylor(x, degree)
    if basis == "bspline":
        terms = _bspline_terms(x, degree, params)
    elif basis in ("gaussian_rbf", "inverse_quadratic_rbf"):
        terms = _rbf_terms(x, basis, degree, params)
    else:
        terms = _polynomial_terms(x, basis, degree, params)[1:]  # degree 0 is never a column
    K = features_per_attribute(basis, degree, params)
    assert len(terms) == K
    return torch.stack(terms, dim=2).reshape(x.shape[0], x.shape[1] * K)


def expand_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], basis: str, degree: int,
                  params: Sequence[float]) -> torch.Tensor:
    """y = κ(x)·Wᵀ + b, materialising κ(x) (the computation tinyBIG and the peers perform)."""
    return F.linear(expand(x, basis, degree, params), weight, bias)
