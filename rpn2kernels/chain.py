"""Chain interdependence operators on the (b, L, m) layout (functions.md §5.4), never as L×L matrices.

Every tinyBIG chain variant is one pass of one of: a causal banded Toeplitz filter
(``chain_filter`` op) for the uni-directional variants; a centred symmetric filter on the
odd-reflected sequence for the bi-directional ones (exactly f(S_sym) on the path, by the method of
images); a prefix sum (``chain_scan`` op); or — for the bi-directional inverse approximation,
whose walk counts overflow any float — the spectral form through two DST-I transforms.
z_t = Σ_u A[u, t]·K_u throughout.
"""
from __future__ import annotations

import functools
import math
from typing import List, Tuple

import torch
from torch import Tensor

from .ops import propagation as _ops
from .reference.propagation import odd_reflection  # noqa: F401  (public here since the chain ops moved)

VARIANTS = ("plain", "multihop", "inverse_approx", "exponential_approx")

#: Largest k kept in the causal 1/k! filter (dropped tail ≤ 2.3e−9 relative in fp32, §5.4), and the
#: half-width of the bi-directional Bessel filter I_d(2) ≤ 1/d! (the same tail bound).
EXP_CAUSAL_TERMS = {torch.float64: 18}
EXP_CAUSAL_TERMS_DEFAULT = 11
#: Taylor order T of Σ_{k≤T} M^k/k! for an operator with ‖M‖∞ ≤ 2 (a normalised or bi-directional
#: chain applied as a graph): tail ≤ 3.6e−9 in fp32, 2.4e−18 in fp64.
EXP_STENCIL_ORDER = {torch.float64: 24}
EXP_STENCIL_ORDER_DEFAULT = 15


def causal_taps(variant: str, hops: int, self_dependence: bool, self_scaling: float, accumulative: bool,
                dtype: torch.dtype) -> Tuple[List[float], int]:
    """(taps, first_offset) of a uni-directional variant that is a causal filter."""
    if torch.compiler.is_compiling():  # traced once into constants; Dynamo warns about lru_cache
        return _causal_taps_uncached(variant, hops, self_dependence, self_scaling, accumulative, dtype)
    taps, first = _causal_taps(variant, hops, self_dependence, self_scaling, accumulative, dtype)
    return list(taps), first


def symmetric_taps(variant: str, hops: int, self_dependence: bool, self_scaling: float, accumulative: bool,
                   dtype: torch.dtype) -> List[float]:
    """Centred taps g(−T) … g(T) of f(S_sym) on the infinite chain for a bi-directional variant:
    the Laurent coefficients of f(z + 1/z) — (w + z + 1/z)^h, their sum over 1 … h, or
    e^{z + 1/z} = Σ_d I_d(2)·z^d (modified Bessel), truncated where the tail is below the dtype's
    resolution (§5.4)."""
    if torch.compiler.is_compiling():
        return _symmetric_taps_uncached(variant, hops, self_dependence, self_scaling, accumulative, dtype)
    return list(_symmetric_taps(variant, hops, self_dependence, self_scaling, accumulative, dtype))


# The taps depend only on the arguments; computing them (the Bessel sums of the exponential's) took
# 0.2–0.4 ms of Python per call, more than a (2, 8, 4) chain's whole filter pass.
@functools.lru_cache(maxsize=256)
def _causal_taps(variant: str, hops: int, self_dependence: bool, self_scaling: float, accumulative: bool,
                 dtype: torch.dtype) -> Tuple[Tuple[float, ...], int]:
    taps, first = _causal_taps_uncached(variant, hops, self_dependence, self_scaling, accumulative, dtype)
    return tuple(taps), first


@functools.lru_cache(maxsize=256)
def _symmetric_taps(variant: str, hops: int, self_dependence: bool, self_scaling: float, accumulative: bool,
                    dtype: torch.dtype) -> Tuple[float, ...]:
    return tuple(_symmetric_taps_uncached(variant, hops, self_dependence, self_scaling, accumulative, dtype))


def _causal_taps_uncached(variant: str, hops: int, self_dependence: bool, self_scaling: float, accumulative: bool,
                          dtype: torch.dtype) -> Tuple[List[float], int]:
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


def _symmetric_taps_uncached(variant: str, hops: int, self_dependence: bool, self_scaling: float,
                             accumulative: bool, dtype: torch.dtype) -> List[float]:
    if variant == "plain":
        return [1.0, self_scaling if self_dependence else 0.0, 1.0]
    if variant == "multihop":
        step = [1.0, 1.0 if self_dependence else 0.0, 1.0]
        power, total = [1.0], [0.0] * (2 * hops + 1)
        for j in range(1, hops + 1):
            power = [sum(power[i] * step[k - i] for i in range(len(power)) if 0 <= k - i < 3)
                     for k in range(len(power) + 2)]
            if accumulative or j == hops:
                pad = hops - j
                for k, value in enumerate(power):
                    total[pad + k] += value
        return total
    if variant == "exponential_approx":
        half = EXP_CAUSAL_TERMS.get(dtype, EXP_CAUSAL_TERMS_DEFAULT)
        bessel = [sum(1.0 / (math.factorial(k) * math.factorial(k + d)) for k in range(40)) for d in range(half + 1)]
        return bessel[:0:-1] + bessel
    raise ValueError(f"variant {variant!r} has no finite symmetric filter")


def _reflected_filter(x: Tensor, taps: List[float], backend: str) -> Tensor:
    """f(S_sym)ᵀ·x on the path for centred symmetric taps: one filter pass over x continued by its odd
    reflection (the kernels map the images in place, no extended copy). f(S_sym) is symmetric, so
    the filter's backward is the same pass."""
    if list(taps) != list(taps)[::-1]:
        raise ValueError(f"taps must be symmetric (g(-d) = g(d)), got {list(taps)}")
    return _ops.chain_filter(x, taps, -(len(taps) // 2), None, 0.0, backend, odd_reflect=True)


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
    """Column-normalised (Σ_{k=1}^{L−1} S_sym^k)ᵀ·x in the path's eigenbasis (no L×L, no overflow).

    W = V·diag(g̃)·Vᵀ with the DST-I sines V; g̃_j ∝ (λ_j/2)^L decays like e^{−Lθ_j²/2} away from
    both ends of the spectrum, so only the r ≈ c·√L modes with |g̃_j| ≥ eps·max|g̃|/(L+1) can reach
    the output at the dtype's resolution (the 1/(L+1) covers the division by the small column sums
    at the chain's ends). z = diag(1/c)·V_r·diag(g̃_r)·V_rᵀ·x: two (L × r) GEMMs.
    """
    L = x.shape[1]
    gain = _inverse_bi_gain(path_spectrum(L, x.device, x.dtype), L)
    eps = torch.finfo(x.dtype).eps if x.dtype == torch.float64 else torch.finfo(torch.float32).eps
    modes = torch.nonzero(gain.abs() >= gain.abs().max() * eps / (L + 1)).squeeze(1)
    positions = torch.arange(1, L + 1, dtype=torch.float64, device=x.device)
    basis = math.sqrt(2.0 / (L + 1)) * torch.sin(math.pi * positions[:, None] * (modes[None, :] + 1) / (L + 1))
    weighted = basis * gain[modes]
    column_sums = weighted @ basis.sum(0)
    column_sums = torch.where(column_sums == 0, torch.ones_like(column_sums), column_sums)
    left = (weighted / column_sums[:, None]).to(x.dtype)
    return torch.matmul(left, torch.matmul(basis.t().to(x.dtype), x))


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
    if variant == "inverse_approx":
        return inverse_bidirectional(x)
    taps = symmetric_taps(variant, hops, self_dependence, self_scaling, accumulative, x.dtype)
    z = _reflected_filter(x, taps, backend)
    if variant == "multihop" and accumulative:  # tinyBIG column-normalises Σ_j A^j (§5.4)
        ones = torch.ones((1, x.shape[1], 1), dtype=x.dtype, device=x.device)
        c = _reflected_filter(ones, taps, backend)
        z = z / torch.where(c == 0, torch.ones_like(c), c)
    return z


__all__ = ["VARIANTS", "apply_chain", "causal_taps", "symmetric_taps", "odd_reflection", "dst1",
           "inverse_bidirectional"]
