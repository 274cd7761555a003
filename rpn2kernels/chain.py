"""Chain interdependence operators on the (b, L, m) layout (functions.md §5.4), never as L×L matrices.

Every tinyBIG chain variant is one of: a banded Toeplitz filter (``chain_filter`` op: causal taps
or a centred stencil), repeated stencils (Horner), a prefix sum (``chain_scan`` op), or — for the
bi-directional inverse approximation, whose walk counts overflow any float — the exact spectral
form of the path graph through two DST-I transforms. z_t = Σ_u A[u, t]·K_u throughout.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .ops import propagation as _ops

VARIANTS = ("plain", "multihop", "inverse_approx", "exponential_approx")

#: Largest k kept in the causal 1/k! filter (dropped tail ≤ 2.3e−9 relative in fp32, §5.4).
EXP_CAUSAL_TERMS = {torch.float64: 18}
EXP_CAUSAL_TERMS_DEFAULT = 11
#: Taylor order of the bi-directional exponential (‖S_sym‖∞ ≤ 2; tail ≤ 3.6e−9 in fp32, 2.4e−18 in fp64).
EXP_STENCIL_ORDER = {torch.float64: 24}
EXP_STENCIL_ORDER_DEFAULT = 15


def causal_taps(variant: str, hops: int, self_dependence: bool, self_scaling: float, accumulative: bool,
                dtype: torch.dtype) -> Tuple[List[float], int]:
    """(taps, first_offset) of a uni-directional variant that is a causal filter."""
    if variant == "plain":
        return ([self_scaling, 1.0], 0) if self_dependence else ([1.0], 1)
    if variant == "multihop":
        if not self_dependence:
            return ([1.0] * hops, 1) if accumulative else ([1.0], hops)
        if accumulative:  # Σ_{j=1}^{h} (S+I)^j: tap k is C(h+1, k+1) − [k = 0]
            return [float(math.comb(hops + 1, k + 1) - (k == 0)) for k in range(hops + 1)], 0
        return [float(math.comb(hops, k)) for k in range(hops + 1)], 0
    if variant == "exponential_approx":
        terms = EXP_CAUSAL_TERMS.get(dtype, EXP_CAUSAL_TERMS_DEFAULT)
        return [1.0 / math.factorial(k) for k in range(terms + 1)], 0
    raise ValueError(f"variant {variant!r} is not a causal filter")


def _stencil(x: Tensor, self_weight: float, scale: float, base: Optional[Tensor], backend: str) -> Tensor:
    """scale·(x_{t−1} + self_weight·x_t + x_{t+1}) + base."""
    return _ops.chain_filter(x, [scale, scale * self_weight, scale], -1, base, 1.0, backend)


def _column_normalised_horner(x: Tensor, hops: int, self_weight: float, backend: str) -> Tensor:
    """(Σ_{j=1}^{h} A^j)ᵀ·x divided by its column sums, A the symmetric stencil (§5.4)."""
    ones = torch.ones((1, x.shape[1], 1), dtype=x.dtype, device=x.device)
    z, c = x, ones
    for _ in range(hops - 1):
        z = _stencil(z, self_weight, 1.0, x, backend)
        c = _stencil(c, self_weight, 1.0, ones, backend)
    z = _stencil(z, self_weight, 1.0, None, backend)
    c = _stencil(c, self_weight, 1.0, None, backend)
    return z / torch.where(c == 0, torch.ones_like(c), c)


def path_spectrum(L: int, device, dtype) -> Tensor:
    """Eigenvalues λ_j = 2cos(π(j+1)/(L+1)) of the path graph's adjacency, in float64."""
    j = torch.arange(1, L + 1, dtype=torch.float64, device=device)
    return 2.0 * torch.cos(math.pi * j / (L + 1))


def dst1(x: Tensor) -> Tensor:
    """Orthonormal DST-I along dim 1 (its own inverse): y_k = √(2/(L+1))·Σ_n x_n sin(π(n+1)(k+1)/(L+1))."""
    b, L, m = x.shape
    zero = x.new_zeros((b, 1, m))
    extended = torch.cat([zero, x, zero, -x.flip(1)], dim=1)  # odd extension, period 2(L+1)
    spectrum = torch.fft.rfft(extended, dim=1)
    return -spectrum.imag[:, 1:L + 1] * math.sqrt(2.0 / (L + 1)) / 2.0


def _inverse_bi_gain(lam: Tensor, L: int) -> Tensor:
    """g̃(λ) = 2^{−(L−1)}·Σ_{k=1}^{L−1} λ^k without overflow: (2(λ/2)^L − λ·2^{−(L−1)})/(λ − 1)."""
    near_one = (lam - 1.0).abs() < 1e-9
    safe = torch.where(near_one, torch.full_like(lam, 2.0), lam)
    gain = (2.0 * (safe / 2.0) ** L - safe * 2.0 ** (-(L - 1))) / (safe - 1.0)
    return torch.where(near_one, torch.full_like(lam, (L - 1) * 2.0 ** (-(L - 1))), gain)


def inverse_bidirectional(x: Tensor) -> Tensor:
    """Column-normalised (Σ_{k=1}^{L−1} S_sym^k)ᵀ·x by the DST-I diagonalisation (no L×L, no overflow)."""
    L = x.shape[1]
    gain = _inverse_bi_gain(path_spectrum(L, x.device, x.dtype), L)
    work = x.to(torch.float64)
    z = dst1(dst1(work) * gain.view(1, L, 1))
    c = dst1(dst1(torch.ones((1, L, 1), dtype=torch.float64, device=x.device)) * gain.view(1, L, 1))
    c = torch.where(c.abs() < 1e-300, torch.ones_like(c), c)
    return (z / c).to(x.dtype)


def apply_chain(x: Tensor, variant: str, hops: int, bidirectional: bool, self_dependence: bool,
                self_scaling: float, accumulative: bool, backend: str) -> Tensor:
    """z = Aᵀ·x for the chain variant (x: (b, L, m)); see functions.md §5.4 for A of each variant."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if not bidirectional:
        if variant == "inverse_approx":
            return _ops.chain_scan(x, False, backend)
        taps, first = causal_taps(variant, hops, self_dependence, self_scaling, accumulative, x.dtype)
        return _ops.chain_filter(x, taps, first, None, 0.0, backend)
    if variant == "plain":
        return _stencil(x, self_scaling if self_dependence else 0.0, 1.0, None, backend)
    if variant == "multihop":
        self_weight = 1.0 if self_dependence else 0.0
        if accumulative:
            return _column_normalised_horner(x, hops, self_weight, backend)
        for _ in range(hops):
            x = _stencil(x, self_weight, 1.0, None, backend)
        return x
    if variant == "exponential_approx":  # Horner on Σ_k S^k/k!: Y ← x + S·Y/(j+1)
        order = EXP_STENCIL_ORDER.get(x.dtype, EXP_STENCIL_ORDER_DEFAULT)
        y = x
        for j in range(order - 1, -1, -1):
            y = _stencil(y, 0.0, 1.0 / (j + 1), x, backend)
        return y
    return inverse_bidirectional(x)


__all__ = ["VARIANTS", "apply_chain", "causal_taps", "dst1", "inverse_bidirectional"]
