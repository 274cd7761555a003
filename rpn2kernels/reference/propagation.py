"""Pure-PyTorch reference of the propagation kernels: the test oracle and the `reference` backend.

Each function is the definition of the matching ``torch.ops.rpn2kernels`` op written with plain
gathers and index_add (autograd gives every gradient); none of them is fast, and the edge
attention forms a dense (R, C) logit matrix only here, never in a kernel.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor


def csr_rows(rowptr: Tensor) -> Tensor:
    """The row index of every edge of a CSR pattern (the COO rows)."""
    counts = rowptr[1:] - rowptr[:-1]
    return torch.repeat_interleave(torch.arange(counts.numel(), device=rowptr.device), counts)


def spmm(rowptr: Tensor, col: Tensor, value: Optional[Tensor], x: Tensor, base: Optional[Tensor] = None,
         alpha: float = 1.0, beta: float = 1.0) -> Tensor:
    """out[i] = alpha · Σ_{e ∈ row i} value[e]·x[col[e]] + beta·base[i]."""
    rows = csr_rows(rowptr)
    gathered = x[col]
    if value is not None:
        gathered = gathered * value.unsqueeze(1)
    out = x.new_zeros((rowptr.numel() - 1, x.shape[1])).index_add(0, rows, gathered)
    out = alpha * out
    if base is not None:
        out = out + beta * base
    return out


def pagerank_iterate(rowptr: Tensor, col: Tensor, value: Optional[Tensor], x: Tensor, c: float,
                     iterations: int) -> Tensor:
    """Z_T of Z_0 = c·x, Z_{t+1} = c·x + (1−c)·P·Z_t (differentiable through autograd)."""
    z = x * c
    for _ in range(iterations):
        z = spmm(rowptr, col, value, z, x, 1.0 - c, c)
    return z


def sddmm(rowptr: Tensor, col: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """out[e] = <a[row(e)], b[col[e]]>."""
    return (a[csr_rows(rowptr)] * b[col]).sum(1)


def edge_attention(rowptr: Tensor, col: Tensor, value: Optional[Tensor], q: Tensor, k: Tensor, v: Tensor,
                   scale: float) -> Tuple[Tensor, Tensor]:
    """Masked row softmax over each target row's edges, then the weighted sum of the sources' v.

    Duplicate edges are separate softmax entries, as separate CSR entries are.
    """
    rows = csr_rows(rowptr)
    R = rowptr.numel() - 1
    logit = (q[rows] * k[col]).sum(1) * scale
    if value is not None:
        logit = logit * value
    unmasked = logit != 0
    neg_inf = torch.full_like(logit, float("-inf"))
    masked_logit = torch.where(unmasked, logit, neg_inf)
    row_max = torch.full((R,), float("-inf"), dtype=logit.dtype, device=logit.device)
    row_max = row_max.scatter_reduce(0, rows, masked_logit, reduce="amax", include_self=True)
    safe_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    weight = torch.where(unmasked, torch.exp(logit - safe_max[rows].detach()), torch.zeros_like(logit))
    denom = logit.new_zeros(R).index_add(0, rows, weight)
    has_edges = denom > 0
    safe_denom = torch.where(has_edges, denom, torch.ones_like(denom))
    prob = weight / safe_denom[rows]
    out = v.new_zeros((R, v.shape[1])).index_add(0, rows, prob.unsqueeze(1) * v[col])
    lse = torch.where(has_edges, safe_max + torch.log(safe_denom), torch.full_like(denom, float("-inf")))
    return out, lse.to(lse_dtype(logit.dtype))


def lse_dtype(dtype: torch.dtype) -> torch.dtype:
    """The attention's log-sum-exp is kept in the accumulation type (float32 for half inputs)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def odd_reflection(x: Tensor, half_width: int) -> Tensor:
    """x (b, L, m) extended by ``half_width`` positions on each side with the odd, 2(L+1)-periodic
    reflection y_{−1} = y_L = 0, y_{−2−u} = y_{2L−u} = −x_u: the boundary under which a symmetric
    filter on the infinite chain equals f(S_sym) on the path exactly (method of images: the path's
    eigenvectors are the DST-I sines)."""
    L = x.shape[1]
    if 1 <= half_width <= L + 1:  # one image on each side: slices and flips (cheap backward)
        zero = x.new_zeros((x.shape[0], 1, x.shape[2]))
        left = x[:, :half_width - 1].flip(1).neg()
        right = x[:, L - half_width + 1:].flip(1).neg()
        return torch.cat([left, zero, x, zero, right], dim=1)
    period = 2 * (L + 1)
    s = torch.arange(-half_width, L + half_width, device=x.device) % period
    inside, mirrored = s < L, (s > L) & (s < 2 * L + 1)
    index = torch.where(inside, s, torch.where(mirrored, 2 * L - s, torch.zeros_like(s)))
    sign = inside.to(x.dtype) - mirrored.to(x.dtype)
    return x.index_select(1, index) * sign.view(1, -1, 1)


def chain_filter(x: Tensor, taps: Sequence[float], first_offset: int, base: Optional[Tensor] = None,
                 beta: float = 1.0, odd_reflect: bool = False) -> Tensor:
    """out[:, t] = Σ_j taps[j]·x[:, t − (first_offset + j)] (zero outside 0 … L−1, or with odd_reflect
    x's odd reflection there) + beta·base[:, t]."""
    L = x.shape[1]
    shifts = [first_offset + j for j in range(len(taps))]
    pad = max([abs(s) for s in shifts] + [0])
    # Slices of the padded x: every term stays connected to x for autograd, even when no tap
    # reaches inside the chain.
    padded = odd_reflection(x, pad) if odd_reflect and pad > 0 else torch.nn.functional.pad(x, (0, 0, pad, pad))
    out = padded[:, pad:pad + L] * 0.0 if not taps else None
    for tap, shift in zip(taps, shifts):  # out[t] takes x[t − shift]
        term = tap * padded[:, pad - shift:pad - shift + L]
        out = term if out is None else out + term
    if base is not None:
        out = out + beta * base
    return out


def chain_scan(x: Tensor, reverse: bool = False) -> Tensor:
    """Inclusive prefix sum along dim 1 (suffix sum when reverse)."""
    if reverse:
        return x.flip(1).cumsum(1).flip(1)
    return x.cumsum(1)
