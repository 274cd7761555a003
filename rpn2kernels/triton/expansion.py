"""Triton kernels of the expansion family κ (functions.md §2.4–2.7, §2.14): raw launchers.

    expand_forward(x, basis, degree, params)                       -> κ(x)            (B, D)
    expand_backward(grad_features, x, basis, degree, params)       -> dx              (B, m)
    expand_linear_forward(x, weight, bias, basis, degree, params)  -> κ(x)·Wᵀ + b     (B, n)
    expand_linear_backward(grad_out, x, weight, basis, degree, params) -> (dx, dW)

No autograd and no op registration here (rpn2kernels.ops does both). The fused launchers never
write κ(x) to global memory for the elementwise bases or Taylor degree ≤ 2: each feature tile
P_k(x) is generated in registers in the GEMM prologue and fed straight to ``tl.dot``.

Design notes
------------
* Basis constants (recurrence coefficients, RBF centres, B-spline knots and piece polynomials)
  are computed once in Python double precision and handed to the kernels as a tiny table in the
  compute dtype. Triton passes Python float arguments as fp32 scalars, which would cap float64
  accuracy at ~1e-7; the table keeps float64 exact, and one kernel body serves all ten polynomial
  families.
* The feature index k is a runtime loop variable, not unrolled: large K (B-splines with many
  intervals, RBFs with many centres) would otherwise blow up compile time, and the dW kernel needs
  k as a program id anyway. Polynomial families carry (P_{k-1}, P_k, P'_{k-1}, P'_k) across k.
* Accumulation is fp32 for fp32/fp16/bf16 inputs and fp64 for fp64; features are computed in the
  same accumulation dtype and rounded to the operand dtype only at the ``tl.dot`` boundary.
  fp32 dots use IEEE precision unless torch's float32 matmul precision allows TF32, matching what
  F.linear would do.
* Reductions are split without atomics: each program owns one output tile and walks its reduction
  loop (dW: the rows; Taylor-2 forward: the M+1 blocks of W's columns; Taylor-2 dx: the c sum).
  On a GPU with few output tiles that loop is split into S slices written to an (S, …) buffer in
  the accumulation dtype and summed by torch in a fixed order, so results are deterministic.
"""
import contextlib
import functools
import math
import os
from fractions import Fraction
from typing import List, Optional, Sequence, Tuple

import torch
import triton
import triton.language as tl

from ..basis import (bspline_knot_step, check_basis, expansion_width, features_per_attribute,
                     rbf_centres, taylor_degree_offsets)

# Kinds of elementwise basis the kernels distinguish (the ten polynomial families share one).
_POLY, _GAUSS, _INVQ, _BSPLINE = 0, 1, 2, 3

#: Tests set this to force the slice count of every split reduction (dW rows, Taylor-2 forward
#: and dx); None: chosen per device by _split_count.
_FORCE_SPLIT: Optional[int] = None

#: dW partials are whole copies of W, each read again by the reduction: at most this many.
_DW_MAX_SPLIT = 32

#: Taylor degree ≥ 3 materialises κ for this many elements at a time (rows · D).
_TAYLOR_CHUNK_ELEMENTS = 1 << 23

_SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

# Read once, like triton.jit does when it decides to interpret the kernels below.
_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


# =============================================================================================
# Per-element math (mirrors csrc/include/rpn2kernels/expansion_math.h)
# =============================================================================================

def _device_function(fn):
    """@triton.jit for a helper called from the kernels — except under TRITON_INTERPRET, where the
    interpreter re-patches all of triton.language on every call of a jit helper (~0.3 ms each,
    most of the CPU test time). There the kernel body is plain Python already and the helper runs
    as an ordinary function with the same semantics."""
    return fn if _INTERPRET else triton.jit(fn)


@_device_function
def _poly_start(x, c_ptr):
    """(P_0, P_1, P'_0, P'_1) from table rows 0 (P_0) and 1 (P_1 = u·x + v)."""
    p0 = tl.load(c_ptr)
    u1 = tl.load(c_ptr + 4)
    v1 = tl.load(c_ptr + 5)
    zero = tl.zeros_like(x)
    return zero + p0, x * u1 + v1, zero, zero + u1


@_device_function
def _poly_step(x, p_prev, p_cur, d_prev, d_cur, row_ptr,
               HAS_B: tl.constexpr, HAS_E: tl.constexpr, WITH_D: tl.constexpr):
    """One step of P_k = (a x + b) P_{k-1} + (c + e x²) P_{k-2} and of its derivative; row_ptr
    points at (a, b, c, e) of step k. b and e are zero for most families, so they are compiled
    in only where some step needs them."""
    a = tl.load(row_ptr)
    c = tl.load(row_ptr + 2)
    lead = a * x
    if HAS_B:
        lead = lead + tl.load(row_ptr + 1)
    if HAS_E:
        e = tl.load(row_ptr + 3)
        tail = c + e * x * x
    else:
        tail = c
    p_next = lead * p_cur + tail * p_prev
    if WITH_D:
        d_next = a * p_cur + lead * d_cur + tail * d_prev
        if HAS_E:
            d_next = d_next + 2.0 * e * x * p_prev
    else:
        d_next = d_cur
    return p_cur, p_next, d_cur, d_next


@_device_function
def _cardinal_bspline(t, w_ptr, D: tl.constexpr):
    """Uniform cardinal B-spline N_D(t) on knots 0 … D+1 with half-open support [0, D+1).

    Triton has no local arrays for the Cox–de Boor triangle the C++ kernels use, so each unit
    piece is a polynomial in the fraction f = t − ⌊t⌋, Horner-evaluated from a table at w_ptr
    (D//2 + 1 pieces of D + 1 coefficients, highest power first). Only the pieces of the left
    half are stored: N_D(t) = N_D(D+1−t). Per-piece coefficients sum to < 2 in magnitude for every
    D ≤ 15, so this is as accurate as Cox–de Boor (the truncated-power sum Σ_i w_i max(t−i,0)^D
    loses ~5 digits to cancellation at D = 15 in fp32). All pieces are evaluated and one is
    selected, which keeps the code branch-free with uniform scalar loads."""
    inside = (t >= 0.0) & (t < D + 1.0)
    if D == 0:
        val = tl.where(inside, 1.0, 0.0).to(t.dtype)
    else:
        tt = tl.where(t > (D + 1) * 0.5, (D + 1.0) - t, t)
        # ⌊tt⌋ clamped: tt = (D+1)/2 for odd D lands on the end of the last stored piece
        r = tl.minimum(tl.maximum(tl.floor(tt), 0.0), D // 2)
        # the clamp only matters outside the support (masked below): no inf from huge |x|
        f = tl.minimum(tl.maximum(tt - r, 0.0), 1.0)
        val = tl.zeros_like(t)
        for p in tl.static_range(D // 2 + 1):
            acc = tl.zeros_like(t) + tl.load(w_ptr + p * (D + 1))
            for j in tl.static_range(1, D + 1):
                acc = acc * f + tl.load(w_ptr + p * (D + 1) + j)
            val = tl.where(r == p, acc, val)
        val = tl.where(inside, val, 0.0)
    return val


@_device_function
def _direct_feature(x, c_ptr, k, KIND: tl.constexpr, SD: tl.constexpr, WITH_D: tl.constexpr):
    """Feature k (and its derivative) of a non-recurrent basis: RBF centre k or B-spline j = k."""
    if KIND == 3:
        g0 = tl.load(c_ptr)
        h = tl.load(c_ptr + 1)
        t = (x - g0) / h - k
        v = _cardinal_bspline(t, c_ptr + 2, SD)
        if WITH_D:
            # N_D'(t) = N_{D-1}(t) − N_{D-1}(t − 1); the table of degree D−1 follows that of D
            lower = c_ptr + 2 + (SD // 2 + 1) * (SD + 1)
            dv = (_cardinal_bspline(t, lower, SD - 1) - _cardinal_bspline(t - 1.0, lower, SD - 1)) / h
        else:
            dv = v
        # x − x is NaN for NaN and ±inf: their features are NaN, as in the reference, not the
        # zeros of "outside the support"
        undefined = x - x
        v = tl.where(undefined == 0.0, v, undefined)
        dv = tl.where(undefined == 0.0, dv, undefined)
    else:
        eps2 = tl.load(c_ptr)
        diff = x - tl.load(c_ptr + 1 + k)
        r2 = eps2 * diff * diff
        if KIND == 1:
            v = tl.exp(-r2)
            dv = -2.0 * eps2 * diff * v
        else:
            v = 1.0 / (1.0 + r2)
            dv = -2.0 * eps2 * diff * v * v
    return v, dv


@_device_function
def _feature_at(x, c_ptr, k, KIND: tl.constexpr, SD: tl.constexpr, HAS_B: tl.constexpr,
                HAS_E: tl.constexpr):
    """Feature k alone (k may be a program id): polynomials run the recurrence k steps."""
    if KIND == 0:
        p_prev, p_cur, d_prev, d_cur = _poly_start(x, c_ptr)
        for r in range(k):
            p_prev, p_cur, d_prev, d_cur = _poly_step(x, p_prev, p_cur, d_prev, d_cur,
                                                      c_ptr + 4 * (r + 2), HAS_B, HAS_E, False)
        f = p_cur
    else:
        f, df = _direct_feature(x, c_ptr, k, KIND, SD, False)
    return f


# =============================================================================================
# Elementwise bases: materialised κ and its backward
# =============================================================================================

@triton.jit
def _expand_fwd_kernel(x_ptr, c_ptr, out_ptr, B, M, K, sxb, sxm, sob, sod,
                       KIND: tl.constexpr, SD: tl.constexpr, HAS_B: tl.constexpr, HAS_E: tl.constexpr,
                       CT: tl.constexpr, BB: tl.constexpr, BM: tl.constexpr):
    offs_b = tl.program_id(0) * BB + tl.arange(0, BB)
    offs_m = tl.program_id(1) * BM + tl.arange(0, BM)
    mask = (offs_b < B)[:, None] & (offs_m < M)[None, :]
    x = tl.load(x_ptr + offs_b.to(tl.int64)[:, None] * sxb + offs_m.to(tl.int64)[None, :] * sxm,
                mask=mask, other=0.0).to(CT)
    o_ptrs = out_ptr + offs_b.to(tl.int64)[:, None] * sob + (offs_m.to(tl.int64) * K)[None, :] * sod
    if KIND == 0:
        p_prev, p_cur, d_prev, d_cur = _poly_start(x, c_ptr)
    for k in range(K):
        if KIND == 0:
            f = p_cur
        else:
            f, df = _direct_feature(x, c_ptr, k, KIND, SD, False)
        tl.store(o_ptrs + k * sod, f.to(out_ptr.dtype.element_ty), mask=mask)
        if KIND == 0:
            p_prev, p_cur, d_prev, d_cur = _poly_step(x, p_prev, p_cur, d_prev, d_cur,
                                                      c_ptr + 4 * (k + 2), HAS_B, HAS_E, False)


@triton.jit
def _expand_bwd_kernel(g_ptr, x_ptr, c_ptr, dx_ptr, B, M, K, sgb, sgd, sxb, sxm, sdb, sdm,
                       KIND: tl.constexpr, SD: tl.constexpr, HAS_B: tl.constexpr, HAS_E: tl.constexpr,
                       CT: tl.constexpr, BB: tl.constexpr, BM: tl.constexpr):
    offs_b = tl.program_id(0) * BB + tl.arange(0, BB)
    offs_m = tl.program_id(1) * BM + tl.arange(0, BM)
    mask = (offs_b < B)[:, None] & (offs_m < M)[None, :]
    x = tl.load(x_ptr + offs_b.to(tl.int64)[:, None] * sxb + offs_m.to(tl.int64)[None, :] * sxm,
                mask=mask, other=0.0).to(CT)
    g_ptrs = g_ptr + offs_b.to(tl.int64)[:, None] * sgb + (offs_m.to(tl.int64) * K)[None, :] * sgd
    dx = tl.zeros((BB, BM), dtype=CT)
    if KIND == 0:
        p_prev, p_cur, d_prev, d_cur = _poly_start(x, c_ptr)
    for k in range(K):
        if KIND == 0:
            df = d_cur
        else:
            f, df = _direct_feature(x, c_ptr, k, KIND, SD, True)
        g = tl.load(g_ptrs + k * sgd, mask=mask, other=0.0).to(CT)
        dx += g * df
        if KIND == 0:
            p_prev, p_cur, d_prev, d_cur = _poly_step(x, p_prev, p_cur, d_prev, d_cur,
                                                      c_ptr + 4 * (k + 2), HAS_B, HAS_E, True)
    tl.store(dx_ptr + offs_b.to(tl.int64)[:, None] * sdb + offs_m.to(tl.int64)[None, :] * sdm,
             dx.to(dx_ptr.dtype.element_ty), mask=mask)


# =============================================================================================
# Elementwise bases fused with the linear map
# =============================================================================================

@triton.jit
def _linear_fwd_kernel(x_ptr, w_ptr, bias_ptr, c_ptr, y_ptr, B, M, N, K,
                       sxb, sxm, swn, swd, syb, syn,
                       KIND: tl.constexpr, SD: tl.constexpr, HAS_B: tl.constexpr, HAS_E: tl.constexpr,
                       HAS_BIAS: tl.constexpr, CT: tl.constexpr, PREC: tl.constexpr,
                       BB: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr):
    offs_b = tl.program_id(0) * BB + tl.arange(0, BB)
    offs_n = tl.program_id(1) * BN + tl.arange(0, BN)
    b_ok = offs_b < B
    n_ok = offs_n < N
    x_rows = x_ptr + offs_b.to(tl.int64)[:, None] * sxb
    w_cols = w_ptr + offs_n.to(tl.int64)[None, :] * swn
    acc = tl.zeros((BB, BN), dtype=CT)
    for i0 in range(0, M, BM):
        offs_m = i0 + tl.arange(0, BM)
        m_ok = offs_m < M
        x = tl.load(x_rows + offs_m.to(tl.int64)[None, :] * sxm, mask=b_ok[:, None] & m_ok[None, :],
                    other=0.0).to(CT)
        # W tile transposed, (BM, BN): row i of the tile is column i*K + k of W
        w_ptrs = w_cols + (offs_m.to(tl.int64) * K)[:, None] * swd
        w_mask = m_ok[:, None] & n_ok[None, :]
        if KIND == 0:
            p_prev, p_cur, d_prev, d_cur = _poly_start(x, c_ptr)
        for k in range(K):
            if KIND == 0:
                f = p_cur
            else:
                f, df = _direct_feature(x, c_ptr, k, KIND, SD, False)
            # padded attributes get W = 0, so their (finite) features contribute nothing
            w = tl.load(w_ptrs + k * swd, mask=w_mask, other=0.0)
            acc = tl.dot(f.to(w.dtype), w, acc, input_precision=PREC, out_dtype=CT)
            if KIND == 0:
                p_prev, p_cur, d_prev, d_cur = _poly_step(x, p_prev, p_cur, d_prev, d_cur,
                                                          c_ptr + 4 * (k + 2), HAS_B, HAS_E, False)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=n_ok, other=0.0).to(CT)[None, :]
    tl.store(y_ptr + offs_b.to(tl.int64)[:, None] * syb + offs_n.to(tl.int64)[None, :] * syn,
             acc.to(y_ptr.dtype.element_ty), mask=b_ok[:, None] & n_ok[None, :])


@triton.jit
def _linear_dx_kernel(g_ptr, x_ptr, w_ptr, c_ptr, dx_ptr, B, M, N, K,
                      sgb, sgn, sxb, sxm, swn, swd, sdb, sdm,
                      KIND: tl.constexpr, SD: tl.constexpr, HAS_B: tl.constexpr, HAS_E: tl.constexpr,
                      CT: tl.constexpr, PREC: tl.constexpr,
                      BB: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr):
    """dx[b, i] = Σ_k (G·W)[b, i*K + k] · P'_k(x[b, i]), the G·W tile formed per k in registers."""
    offs_b = tl.program_id(0) * BB + tl.arange(0, BB)
    offs_m = tl.program_id(1) * BM + tl.arange(0, BM)
    b_ok = offs_b < B
    m_ok = offs_m < M
    mask = b_ok[:, None] & m_ok[None, :]
    x = tl.load(x_ptr + offs_b.to(tl.int64)[:, None] * sxb + offs_m.to(tl.int64)[None, :] * sxm,
                mask=mask, other=0.0).to(CT)
    g_rows = g_ptr + offs_b.to(tl.int64)[:, None] * sgb
    w_cols = w_ptr + (offs_m.to(tl.int64) * K)[None, :] * swd
    dx = tl.zeros((BB, BM), dtype=CT)
    if KIND == 0:
        p_prev, p_cur, d_prev, d_cur = _poly_start(x, c_ptr)
    for k in range(K):
        if KIND == 0:
            df = d_cur
        else:
            f, df = _direct_feature(x, c_ptr, k, KIND, SD, True)
        dk = tl.zeros((BB, BM), dtype=CT)
        for j0 in range(0, N, BN):
            offs_n = j0 + tl.arange(0, BN)
            n_ok = offs_n < N
            g = tl.load(g_rows + offs_n.to(tl.int64)[None, :] * sgn, mask=b_ok[:, None] & n_ok[None, :],
                        other=0.0)
            w = tl.load(w_cols + offs_n.to(tl.int64)[:, None] * swn + k * swd,
                        mask=n_ok[:, None] & m_ok[None, :], other=0.0)
            dk = tl.dot(g, w, dk, input_precision=PREC, out_dtype=CT)
        dx += dk * df
        if KIND == 0:
            p_prev, p_cur, d_prev, d_cur = _poly_step(x, p_prev, p_cur, d_prev, d_cur,
                                                      c_ptr + 4 * (k + 2), HAS_B, HAS_E, True)
    tl.store(dx_ptr + offs_b.to(tl.int64)[:, None] * sdb + offs_m.to(tl.int64)[None, :] * sdm,
             dx.to(dx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _linear_dw_kernel(g_ptr, x_ptr, c_ptr, out_ptr, B, M, N, K, rows_per_split,
                      sgb, sgn, sxb, sxm, sos, son, sod,
                      KIND: tl.constexpr, SD: tl.constexpr, HAS_B: tl.constexpr, HAS_E: tl.constexpr,
                      CT: tl.constexpr, PREC: tl.constexpr,
                      BB: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr):
    """dW[j, i*K + k] = Σ_b G[b, j] P_k(x[b, i]) for one (n-tile, attribute-tile, k, row slice)."""
    offs_n = tl.program_id(0) * BN + tl.arange(0, BN)
    offs_m = tl.program_id(1) * BM + tl.arange(0, BM)
    k = tl.program_id(2) % K
    s = tl.program_id(2) // K
    n_ok = offs_n < N
    m_ok = offs_m < M
    r0 = s * rows_per_split
    r1 = tl.minimum(r0 + rows_per_split, B)
    acc = tl.zeros((BN, BM), dtype=CT)
    for b0 in range(r0, r1, BB):
        offs_b = b0 + tl.arange(0, BB)
        b_ok = offs_b < r1
        x = tl.load(x_ptr + offs_b.to(tl.int64)[:, None] * sxb + offs_m.to(tl.int64)[None, :] * sxm,
                    mask=b_ok[:, None] & m_ok[None, :], other=0.0).to(CT)
        f = _feature_at(x, c_ptr, k, KIND, SD, HAS_B, HAS_E)
        # padded rows load G = 0, so their (finite) features contribute nothing
        g_t = tl.load(g_ptr + offs_n.to(tl.int64)[:, None] * sgn + offs_b.to(tl.int64)[None, :] * sgb,
                      mask=n_ok[:, None] & b_ok[None, :], other=0.0)
        acc = tl.dot(g_t, f.to(g_t.dtype), acc, input_precision=PREC, out_dtype=CT)
    o_ptrs = (out_ptr + s.to(tl.int64) * sos + offs_n.to(tl.int64)[:, None] * son
              + (offs_m.to(tl.int64) * K + k)[None, :] * sod)
    tl.store(o_ptrs, acc.to(out_ptr.dtype.element_ty), mask=n_ok[:, None] & m_ok[None, :])


# =============================================================================================
# Taylor (ordered monomials, block layout §2.4)
# =============================================================================================

@triton.jit
def _taylor_block_kernel(x_ptr, out_ptr, B, M, ncols, n_ctiles, top, col0, sxb, sxm, sob, sod,
                         DEG: tl.constexpr, CT: tl.constexpr, BB: tl.constexpr, BC: tl.constexpr):
    """Degree-DEG block of κ: column c = Σ_j a_j M^{DEG-j} holds x_{a_1}·…·x_{a_DEG}; the product
    is formed in the reference's order ((x_{a_1} x_{a_2}) x_{a_3})… so results match bit for bit
    where the platform rounds alike. One flat grid axis (2^31 programs) holds column × row tiles,
    since M^DEG columns or B rows can each overflow the 65535 limit of axes 1 and 2."""
    pid = tl.program_id(0)
    cols = (pid % n_ctiles).to(tl.int64) * BC + tl.arange(0, BC)
    offs_b = (pid // n_ctiles) * BB + tl.arange(0, BB)
    c_ok = cols < ncols
    b_ok = offs_b < B
    mask = b_ok[:, None] & c_ok[None, :]
    x_rows = x_ptr + offs_b.to(tl.int64)[:, None] * sxb
    rem = cols
    div = top
    prod = tl.zeros((BB, BC), dtype=CT)
    for j in tl.static_range(DEG):
        digit = rem // div
        rem = rem - digit * div
        v = tl.load(x_rows + digit[None, :] * sxm, mask=mask, other=0.0).to(CT)
        if j == 0:
            prod = v
        else:
            prod = prod * v
        div = div // M
    tl.store(out_ptr + offs_b.to(tl.int64)[:, None] * sob + (col0 + cols)[None, :] * sod,
             prod.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _taylor2_fwd_kernel(x_ptr, w_ptr, bias_ptr, out_ptr, B, M, N, a_per_split,
                        sxb, sxm, swn, swd, sos, sob, son,
                        HAS_BIAS: tl.constexpr, CT: tl.constexpr, PREC: tl.constexpr,
                        BB: tl.constexpr, BN: tl.constexpr, BC: tl.constexpr):
    """y = x·W1ᵀ + Σ_a (x_a x)·W2[:, a, :]ᵀ + b: the prologue forms x_a·x_c tiles, x⊗x is never
    stored. Pass a = M stands for the degree-1 block (prefactor 1, columns 0 … M−1). Program s of
    axis 2 takes passes [s·a_per_split, (s+1)·a_per_split) and writes out[s]; slice 0 adds the
    bias, so it is added once to the sum of the slices."""
    offs_b = tl.program_id(0) * BB + tl.arange(0, BB)
    offs_n = tl.program_id(1) * BN + tl.arange(0, BN)
    s = tl.program_id(2)
    a0 = s * a_per_split
    a1 = tl.minimum(a0 + a_per_split, M + 1)
    b_ok = offs_b < B
    n_ok = offs_n < N
    x_rows = x_ptr + offs_b.to(tl.int64) * sxb
    w_cols = w_ptr + offs_n.to(tl.int64)[None, :] * swn
    acc = tl.zeros((BB, BN), dtype=CT)
    for c0 in range(0, M, BC):
        offs_c = c0 + tl.arange(0, BC)
        c_ok = offs_c < M
        xc = tl.load(x_rows[:, None] + offs_c.to(tl.int64)[None, :] * sxm,
                     mask=b_ok[:, None] & c_ok[None, :], other=0.0).to(CT)
        w_mask = c_ok[:, None] & n_ok[None, :]
        for a in range(a0, a1):
            # (offs_b * 0 + a) turns a loop index into a vector, as the interpreter's index is an int
            xa = tl.load(x_rows + a * sxm, mask=b_ok & ((offs_b * 0 + a) < M), other=1.0).to(CT)
            col0 = tl.where(a < M, M + a * M, 0)
            w = tl.load(w_cols + (col0 + offs_c.to(tl.int64))[:, None] * swd, mask=w_mask, other=0.0)
            acc = tl.dot((xc * xa[:, None]).to(w.dtype), w, acc, input_precision=PREC, out_dtype=CT)
    if HAS_BIAS:
        # (offs_n * 0 + s): the interpreter rejects a mask combined with a scalar comparison
        acc += tl.load(bias_ptr + offs_n, mask=n_ok & ((offs_n * 0 + s) == 0), other=0.0).to(CT)[None, :]
    o_ptrs = (out_ptr + s.to(tl.int64) * sos + offs_b.to(tl.int64)[:, None] * sob
              + offs_n.to(tl.int64)[None, :] * son)
    tl.store(o_ptrs, acc.to(out_ptr.dtype.element_ty), mask=b_ok[:, None] & n_ok[None, :])


@triton.jit
def _taylor2_dx_kernel(g_ptr, x_ptr, w_ptr, out_ptr, B, M, N, c_per_split,
                       sgb, sgn, sxb, sxm, swn, swd, sos, sob, som,
                       CT: tl.constexpr, PREC: tl.constexpr,
                       BB: tl.constexpr, BN: tl.constexpr, BA: tl.constexpr):
    """dx_a = Σ_j g_j (W1[j,a] + Σ_c (W2[j,a,c] + W2[j,c,a]) x_c), with x_c folded into the G tile
    so every term accumulates into one dot. Pass c = M is the degree-1 term (x_c = 1, W1 in place
    of W2[:, a, c], no mirrored column), so the split over axis 2 cuts one uniform loop: program s
    takes passes [s·c_per_split, (s+1)·c_per_split) and writes out[s]."""
    offs_b = tl.program_id(0) * BB + tl.arange(0, BB)
    offs_a = tl.program_id(1) * BA + tl.arange(0, BA)
    s = tl.program_id(2)
    c0 = s * c_per_split
    c1 = tl.minimum(c0 + c_per_split, M + 1)
    b_ok = offs_b < B
    a_ok = offs_a < M
    x_rows = x_ptr + offs_b.to(tl.int64) * sxb
    g_rows = g_ptr + offs_b.to(tl.int64)[:, None] * sgb
    a64 = offs_a.to(tl.int64)
    dx = tl.zeros((BB, BA), dtype=CT)
    for j0 in range(0, N, BN):
        offs_n = j0 + tl.arange(0, BN)
        n_ok = offs_n < N
        g = tl.load(g_rows + offs_n.to(tl.int64)[None, :] * sgn, mask=b_ok[:, None] & n_ok[None, :],
                    other=0.0)
        w_rows = w_ptr + offs_n.to(tl.int64)[:, None] * swn
        w_mask = n_ok[:, None] & a_ok[None, :]
        for c in range(c0, c1):
            # (offs_a * 0 + c) turns a loop index into a vector, as the interpreter's index is an int
            quadratic = (offs_a * 0 + c) < M
            xc = tl.load(x_rows + c * sxm, mask=b_ok & ((offs_b * 0 + c) < M), other=1.0).to(CT)
            col_ac = tl.where(quadratic, M + a64 * M + c, a64)
            w_ac = tl.load(w_rows + col_ac[None, :] * swd, mask=w_mask, other=0.0)
            w_ca = tl.load(w_rows + (M + c * M + a64)[None, :] * swd, mask=w_mask & quadratic[None, :], other=0.0)
            w_sum = (w_ac.to(CT) + w_ca.to(CT)).to(g.dtype)
            dx = tl.dot((g.to(CT) * xc[:, None]).to(g.dtype), w_sum, dx, input_precision=PREC, out_dtype=CT)
    tl.store(out_ptr + s.to(tl.int64) * sos + offs_b.to(tl.int64)[:, None] * sob + a64[None, :] * som,
             dx.to(out_ptr.dtype.element_ty), mask=b_ok[:, None] & a_ok[None, :])


@triton.jit
def _taylor2_dw_kernel(g_ptr, x_ptr, out_ptr, B, M, N, rows_per_split, n_ctiles,
                       sgb, sgn, sxb, sxm, sos, son, sod,
                       CT: tl.constexpr, PREC: tl.constexpr,
                       BB: tl.constexpr, BN: tl.constexpr, BC: tl.constexpr):
    """dW[j, col(a, c)] = Σ_b g_bj x_ba x_bc for one (n-tile, a, c-tile, row slice); the (x_a x)
    tile is generated in the prologue. a = M is the degree-1 block (dW1 = Gᵀ X). The (a, c-tile)
    pairs, ~M²/BC of them, take grid axis 0, the only one not limited to 65535."""
    a = tl.program_id(0) // n_ctiles
    offs_c = (tl.program_id(0) % n_ctiles) * BC + tl.arange(0, BC)
    offs_n = tl.program_id(1) * BN + tl.arange(0, BN)
    s = tl.program_id(2)
    n_ok = offs_n < N
    c_ok = offs_c < M
    r0 = s * rows_per_split
    r1 = tl.minimum(r0 + rows_per_split, B)
    acc = tl.zeros((BN, BC), dtype=CT)
    for b0 in range(r0, r1, BB):
        offs_b = b0 + tl.arange(0, BB)
        b_ok = offs_b < r1
        x_rows = x_ptr + offs_b.to(tl.int64) * sxb
        xc = tl.load(x_rows[:, None] + offs_c.to(tl.int64)[None, :] * sxm,
                     mask=b_ok[:, None] & c_ok[None, :], other=0.0).to(CT)
        xa = tl.load(x_rows + a * sxm, mask=b_ok & ((offs_b * 0 + a) < M), other=1.0).to(CT)
        g_t = tl.load(g_ptr + offs_n.to(tl.int64)[:, None] * sgn + offs_b.to(tl.int64)[None, :] * sgb,
                      mask=n_ok[:, None] & b_ok[None, :], other=0.0)
        acc = tl.dot(g_t, (xc * xa[:, None]).to(g_t.dtype), acc, input_precision=PREC, out_dtype=CT)
    col0 = tl.where(a < M, M + a * M, 0)
    o_ptrs = (out_ptr + s.to(tl.int64) * sos + offs_n.to(tl.int64)[:, None] * son
              + (col0 + offs_c.to(tl.int64))[None, :] * sod)
    tl.store(o_ptrs, acc.to(out_ptr.dtype.element_ty), mask=n_ok[:, None] & c_ok[None, :])


# =============================================================================================
# Host side
# =============================================================================================

def _interpreting() -> bool:
    return _INTERPRET


#: Tile sizes under TRITON_INTERPRET, shared by every kernel. The interpreter's cost is per
#: triton.language call, nearly independent of tile size, so few large programs are cheapest;
#: tests shrink these (monkeypatch) to exercise several tiles per dimension on small shapes.
_INTERPRET_BLOCKS = dict(BB=32, BN=32, BM=16, EB=32, EM=32, TC=128, num_warps=1)

# GPU tiles per kernel role, (BB rows, BN outputs, BM attributes, warps); each GEMM's reduction
# dim is BM (forward), BN (dx) or BB (dW). fp32 and half: the fastest of a sweep on an H100
# (scripts/gpu_expansion_tiles.py; Chebyshev degree 3 at B=4096, m=n=256 and B=32768, m=n=512):
# bf16 fwd (128, 128, 32, 8) 0.38 ms vs 0.52 ms for (64, 64, 32, 4) at the large shape, dx
# (128, 64, 32, 8) 1.9 vs 2.5 ms, dW (32, 64, 64, 4) 2.9 vs 3.6 ms. fp64 dots run on FMA units,
# where the register cost grows with the reduction dim: its tiles were chosen from ptxas register
# counts (not swept).
_GPU_BLOCKS = {
    "fp32": dict(fwd=(128, 64, 16, 4), dx=(64, 16, 32, 8), dw=(32, 64, 64, 4)),
    "fp64": dict(fwd=(32, 32, 16, 4), dx=(64, 16, 32, 8), dw=(32, 32, 32, 4)),
    "half": dict(fwd=(128, 128, 32, 8), dx=(128, 64, 32, 8), dw=(32, 64, 64, 4)),
}


def _blocks(dtype: torch.dtype, role: str) -> dict:
    """Tile sizes of one kernel role: "fwd", "dx", "dw" (GEMMs; tl.dot needs every dim ≥ 16) or
    "ew" (elementwise κ and its backward: EB × EM, and TC Taylor columns)."""
    if _interpreting():
        return dict(_INTERPRET_BLOCKS)
    if role == "ew":
        return dict(EB=32, EM=32, TC=128, num_warps=4)
    key = "fp64" if dtype == torch.float64 else "fp32" if dtype == torch.float32 else "half"
    BB, BN, BM, nw = _GPU_BLOCKS[key][role]
    return dict(BB=BB, BN=BN, BM=BM, num_warps=nw)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _tl_dtype(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _dot_precision(dtype: torch.dtype) -> str:
    # TF32 only where torch itself would use it for an fp32 matmul; fp64 and half dots ignore it
    # apart from validation, so they get the exact setting and the default respectively.
    if dtype == torch.float32:
        return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"
    if dtype == torch.float64:
        return "ieee"
    return "tf32"


def _check_tensor(name: str, t: torch.Tensor, dims: int, dtype: Optional[torch.dtype] = None,
                  device: Optional[torch.device] = None) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(t).__name__}")
    if t.dim() != dims:
        raise ValueError(f"{name} must have {dims} dims, got shape {tuple(t.shape)}")
    if t.dtype not in _SUPPORTED_DTYPES:
        raise TypeError(f"{name}: the Triton expansion kernels support float32, float64, float16 and "
                        f"bfloat16, got {t.dtype}")
    if dtype is not None and t.dtype != dtype:
        raise TypeError(f"{name} has dtype {t.dtype} but x has dtype {dtype}")
    if device is not None and t.device != device:
        raise ValueError(f"{name} is on {t.device} but x is on {device}")
    if t.device.type == "cpu" and not _interpreting():
        raise RuntimeError(f"{name} is a CPU tensor: Triton kernels need CUDA tensors, or "
                           "TRITON_INTERPRET=1 set before triton is imported")


def _cardinal_pieces(d: int) -> List[float]:
    """Horner coefficients (highest power first) of N_d on [r, r+1) as a polynomial in the
    fraction f, for r = 0 … d//2, from the truncated-power form
    N_d(r + f) = Σ_{i ≤ r} (−1)^i C(d+1, i) (f + r − i)^d / d!, expanded exactly in rationals."""
    out: List[float] = []
    for r in range(d // 2 + 1):
        coef = [Fraction(0)] * (d + 1)  # coef[j] multiplies f^j
        for i in range(r + 1):
            w = Fraction((-1) ** i * math.comb(d + 1, i), math.factorial(d))
            for j in range(d + 1):
                coef[j] += w * math.comb(d, j) * Fraction(r - i) ** (d - j)
        out += [float(c) for c in reversed(coef)]
    return out


@functools.lru_cache(maxsize=256)
def _basis_table(basis: str, degree: int, params: Tuple[float, ...]) -> Tuple[int, int, int, bool, bool,
                                                                            Tuple[float, ...]]:
    """(kind, K, spline degree, has_b, has_e, constants) of an elementwise basis, in double."""
    if basis == "taylor":  # degree 1 only: the identity, which is Chebyshev T_1
        basis, degree, params = "chebyshev", 1, ()
    K = features_per_attribute(basis, degree, params)
    if basis in ("gaussian_rbf", "inverse_quadratic_rbf"):
        eps = float(params[2])
        kind = _GAUSS if basis == "gaussian_rbf" else _INVQ
        return kind, K, 0, False, False, tuple([eps * eps] + [float(c) for c in rbf_centres(params, K)])
    if basis == "bspline":
        d = degree
        h = bspline_knot_step(params)
        g0 = float(params[0]) - d * h
        pieces = _cardinal_pieces(d) + (_cardinal_pieces(d - 1) if d >= 2 else [])  # d−1: derivative
        return _BSPLINE, K, d, False, False, tuple([g0, h] + pieces)
    # Three-term recurrence: row r = (a_r, b_r, c_r, e_r) for r ≥ 2; row 0 holds P_0 and row 1
    # holds P_1 = u x + v as (u, v). One extra zero row serves the step after the last feature.
    a0 = float(params[0]) if params else 0.0
    p0, u1, v1 = 1.0, 1.0, 0.0
    if basis == "jacobi":
        al, be = float(params[0]), float(params[1])
        u1, v1 = (al + be + 2) / 2, (al - be) / 2
    elif basis == "gegenbauer":
        u1 = 2 * a0
    elif basis == "laguerre":
        u1, v1 = -1.0, 1 + a0
    elif basis in ("bessel", "reverse_bessel"):
        v1 = 1.0
    elif basis == "fibonacci":
        p0, u1, v1 = 0.0, 0.0, 1.0
    elif basis == "lucas":
        p0 = 2.0
    rows = [[p0, 0.0, 0.0, 0.0], [u1, v1, 0.0, 0.0]]
    for k in range(2, degree + 1):
        if basis == "chebyshev":
            r = (2.0, 0.0, -1.0, 0.0)
        elif basis == "legendre":
            r = ((2 * k - 1) / k, 0.0, -(k - 1) / k, 0.0)
        elif basis == "jacobi":
            al, be = float(params[0]), float(params[1])
            s = 2 * k + al + be
            c1 = 2 * k * (k + al + be) * (s - 2)
            r = ((s - 1) * s * (s - 2) / c1, (s - 1) * (al * al - be * be) / c1,
                 -2 * (k + al - 1) * (k + be - 1) * s / c1, 0.0)
        elif basis == "gegenbauer":
            r = (2 * (k - 1 + a0) / k, 0.0, -(k - 2 + 2 * a0) / k, 0.0)
        elif basis == "hermite":
            r = (1.0, 0.0, -(k - 1.0), 0.0)
        elif basis == "laguerre":
            r = (-1.0 / k, (2 * k - 1 + a0) / k, -(k - 1 + a0) / k, 0.0)
        elif basis == "bessel":
            r = (2 * k - 1.0, 0.0, 1.0, 0.0)
        elif basis == "reverse_bessel":
            r = (0.0, 2 * k - 1.0, 0.0, 1.0)
        else:  # fibonacci, lucas
            r = (1.0, 0.0, 1.0, 0.0)
        rows.append(list(r))
    rows.append([0.0, 0.0, 0.0, 0.0])
    has_b = any(r[1] != 0.0 for r in rows[2:])
    has_e = any(r[3] != 0.0 for r in rows[2:])
    return _POLY, K, 0, has_b, has_e, tuple(v for r in rows for v in r)


@functools.lru_cache(maxsize=256)
def _table_tensor(values: Tuple[float, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # Cached so a training loop does not pay a host-to-device copy per call.
    return torch.tensor(values, dtype=dtype, device=device)


def _basis_spec(basis: str, degree: int, params: Sequence[float], x: torch.Tensor):
    kind, K, sd, has_b, has_e, values = _basis_table(basis, degree, tuple(float(p) for p in params))
    table = _table_tensor(values, _compute_dtype(x.dtype), x.device)
    meta = dict(KIND=kind, SD=sd, HAS_B=has_b, HAS_E=has_e, CT=_tl_dtype(x.dtype))
    return K, table, meta


def _split_count(steps: int, output_programs: int, device: torch.device, partial_numel: int,
                 max_split: Optional[int] = None) -> int:
    """Slices of a reduction loop of `steps` steps (row tiles, W blocks, …) when each of
    `output_programs` programs would otherwise walk all of it: about 2·SMs programs in all (1 once
    the output grid alone reaches that), each slice still ≥ 4 steps, at most max_split partials
    and 2^26 partial elements (partial_numel per slice). Slices are then evened out so none is
    empty: a split kernel takes cdiv(steps, split) steps per slice."""
    if _FORCE_SPLIT is not None:
        split = max(1, min(_FORCE_SPLIT, steps))
    elif _interpreting() or device.type != "cuda":
        return 1
    else:
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        want = triton.cdiv(2 * sms, max(output_programs, 1))
        split = max(1, min(want, triton.cdiv(steps, 4), max_split or want, (1 << 26) // max(partial_numel, 1)))
    return triton.cdiv(steps, triton.cdiv(steps, split))


def _split_output(shape: Tuple[int, ...], split: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(split, *shape) partials in the accumulation dtype; unsplit, the result itself (dtype) behind
    a unit axis, so the kernel writes it directly and _reduce_split costs nothing."""
    if split == 1:
        return torch.empty(shape, dtype=dtype, device=device).unsqueeze(0)
    return torch.empty((split,) + tuple(shape), dtype=_compute_dtype(dtype), device=device)


def _on_device_of_x(fn):
    """Triton launches on the current CUDA device, not the tensors' one: make x's current."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        x = kwargs.get("x", args[1] if fn.__name__ in ("expand_backward", "expand_linear_backward") else args[0])
        guard = torch.cuda.device(x.device) if isinstance(x, torch.Tensor) and x.is_cuda else contextlib.nullcontext()
        with guard:
            return fn(*args, **kwargs)
    return wrapper


def _check_common(x, basis, degree, params):
    check_basis(basis, degree, params)
    _check_tensor("x", x, 2)


# ---------------------------------------------------------------------------------------------
# Public launchers
# ---------------------------------------------------------------------------------------------

@_on_device_of_x
def expand_forward(x: torch.Tensor, basis: str, degree: int, params: List[float]) -> torch.Tensor:
    """κ(x), materialised: (B, D) in x's dtype."""
    _check_common(x, basis, degree, params)
    B, M = x.shape
    D = expansion_width(basis, degree, params, M)
    out = torch.empty((B, D), dtype=x.dtype, device=x.device)
    if B == 0 or D == 0:
        return out
    blk = _blocks(x.dtype, "ew")
    if basis == "taylor":
        offsets = taylor_degree_offsets(M, degree)
        BC = blk["TC"]
        for deg in range(1, degree + 1):
            ncols = M ** deg
            n_ctiles = triton.cdiv(ncols, BC)
            grid = (n_ctiles * triton.cdiv(B, blk["EB"]),)
            _taylor_block_kernel[grid](x, out, B, M, ncols, n_ctiles, M ** (deg - 1), offsets[deg - 1],
                                       x.stride(0), x.stride(1), out.stride(0), out.stride(1),
                                       DEG=deg, CT=_tl_dtype(x.dtype), BB=blk["EB"], BC=BC,
                                       num_warps=blk["num_warps"])
        return out
    K, table, meta = _basis_spec(basis, degree, params, x)
    grid = (triton.cdiv(B, blk["EB"]), triton.cdiv(M, blk["EM"]))
    _expand_fwd_kernel[grid](x, table, out, B, M, K, x.stride(0), x.stride(1), out.stride(0), out.stride(1),
                             BB=blk["EB"], BM=blk["EM"], num_warps=blk["num_warps"], **meta)
    return out


@_on_device_of_x
def expand_backward(grad_features: torch.Tensor, x: torch.Tensor, basis: str, degree: int,
                    params: List[float]) -> torch.Tensor:
    """dx = Σ_k grad_features[:, col(i, k)] · ∂κ_col/∂x_i: (B, m) in x's dtype."""
    _check_common(x, basis, degree, params)
    _check_tensor("grad_features", grad_features, 2, device=x.device)
    B, M = x.shape
    D = expansion_width(basis, degree, params, M)
    if tuple(grad_features.shape) != (B, D):
        raise ValueError(f"grad_features must have shape {(B, D)}, got {tuple(grad_features.shape)}")
    if B == 0 or M == 0:
        return torch.zeros((B, M), dtype=x.dtype, device=x.device)
    if basis == "taylor":
        return _taylor_backward_torch(grad_features, x, degree)
    dx = torch.empty((B, M), dtype=x.dtype, device=x.device)
    blk = _blocks(x.dtype, "ew")
    K, table, meta = _basis_spec(basis, degree, params, x)
    grid = (triton.cdiv(B, blk["EB"]), triton.cdiv(M, blk["EM"]))
    _expand_bwd_kernel[grid](grad_features, x, table, dx, B, M, K,
                             grad_features.stride(0), grad_features.stride(1), x.stride(0), x.stride(1),
                             dx.stride(0), dx.stride(1),
                             BB=blk["EB"], BM=blk["EM"], num_warps=blk["num_warps"], **meta)
    return dx


def _taylor_backward_torch(grad_features: torch.Tensor, x: torch.Tensor, degree: int) -> torch.Tensor:
    """Taylor dx from a materialised gradient: for each degree block and each factor position j,
    contract the block with x over every other index (trailing ones first). Pure contractions on
    an input that is already (B, D), so plain torch (bmm) is as good as a kernel; the largest
    temporary is B·m^{degree−1}, smaller than the input."""
    ct = _compute_dtype(x.dtype)
    B, M = x.shape
    xf = x.to(ct)
    g = grad_features.to(ct)
    x_col = xf.unsqueeze(2)  # (B, m, 1)
    x_row = xf.unsqueeze(1)  # (B, 1, m)
    dx = torch.zeros((B, M), dtype=ct, device=x.device)
    for deg, off in zip(range(1, degree + 1), taylor_degree_offsets(M, degree)):
        block = g[:, off:off + M ** deg]
        for j in range(deg):
            v = block
            for _ in range(deg - 1 - j):  # contract the least significant digit
                v = torch.bmm(v.reshape(B, -1, M), x_col).reshape(B, -1)
            for _ in range(j):  # contract the most significant digit
                v = torch.bmm(x_row, v.reshape(B, M, -1)).reshape(B, -1)
            dx += v
    return dx.to(x.dtype)


def _check_linear(x, weight, bias, basis, degree, params):
    _check_common(x, basis, degree, params)
    _check_tensor("weight", weight, 2, dtype=x.dtype, device=x.device)
    D = expansion_width(basis, degree, params, x.shape[1])
    if weight.shape[1] != D:
        raise ValueError(f"weight must have {D} columns (expansion width of {basis!r} degree {degree} "
                         f"on {x.shape[1]} attributes), got shape {tuple(weight.shape)}")
    if bias is not None:
        _check_tensor("bias", bias, 1, device=x.device)
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(f"bias must have {weight.shape[0]} entries, got shape {tuple(bias.shape)}")
    return D


@_on_device_of_x
def expand_linear_forward(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], basis: str,
                          degree: int, params: List[float]) -> torch.Tensor:
    """y = κ(x)·Wᵀ + b without materialising κ(x) (except Taylor degree ≥ 3, see below)."""
    D = _check_linear(x, weight, bias, basis, degree, params)
    B, M = x.shape
    N = weight.shape[0]
    if B == 0 or N == 0 or D == 0:
        y = torch.zeros((B, N), dtype=x.dtype, device=x.device)
        return y + bias.to(x.dtype) if bias is not None and B > 0 else y
    if basis == "taylor" and degree >= 3:
        return _taylor_linear_forward_chunked(x, weight, bias, degree)
    blk = _blocks(x.dtype, "fwd")
    bias_arg = bias.contiguous() if bias is not None else x
    grid = (triton.cdiv(B, blk["BB"]), triton.cdiv(N, blk["BN"]))
    prec = _dot_precision(x.dtype)
    if basis == "taylor" and degree == 2:
        # at small B·N the (row tile, output tile) grid is a handful of programs, each reading all of
        # W: split its M+1 column blocks over grid axis 2 as well
        split = _split_count(M + 1, grid[0] * grid[1], x.device, B * N)
        part = _split_output((B, N), split, x.dtype, x.device)
        _taylor2_fwd_kernel[grid + (split,)](
            x, weight, bias_arg, part, B, M, N, triton.cdiv(M + 1, split), x.stride(0), x.stride(1),
            weight.stride(0), weight.stride(1), part.stride(0), part.stride(1), part.stride(2),
            HAS_BIAS=bias is not None, CT=_tl_dtype(x.dtype), PREC=prec,
            BB=blk["BB"], BN=blk["BN"], BC=blk["BM"], num_warps=blk["num_warps"])
        return _reduce_split(part, x.dtype)
    K, table, meta = _basis_spec(basis, degree, params, x)
    y = torch.empty((B, N), dtype=x.dtype, device=x.device)
    _linear_fwd_kernel[grid](x, weight, bias_arg, table, y, B, M, N, K, x.stride(0), x.stride(1),
                             weight.stride(0), weight.stride(1), y.stride(0), y.stride(1),
                             HAS_BIAS=bias is not None, PREC=prec, BB=blk["BB"], BN=blk["BN"], BM=blk["BM"],
                             num_warps=blk["num_warps"], **meta)
    return y


@_on_device_of_x
def expand_linear_backward(grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, basis: str,
                           degree: int, params: List[float]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(dx, dW) of y = κ(x)·Wᵀ + b; κ(x) is regenerated tile by tile, never stored. The bias
    gradient (Σ_rows grad_out) is left to the caller."""
    D = _check_linear(x, weight, None, basis, degree, params)
    B, M = x.shape
    N = weight.shape[0]
    _check_tensor("grad_out", grad_out, 2, device=x.device)
    if tuple(grad_out.shape) != (B, N):
        raise ValueError(f"grad_out must have shape {(B, N)}, got {tuple(grad_out.shape)}")
    # the dots need equal operand dtypes; autograd hands back the output's dtype anyway
    grad_out = grad_out.to(weight.dtype)
    if B == 0 or N == 0 or D == 0:
        return (torch.zeros((B, M), dtype=x.dtype, device=x.device),
                torch.zeros((N, D), dtype=weight.dtype, device=x.device))
    if basis == "taylor" and degree >= 3:
        return _taylor_linear_backward_chunked(grad_out, x, weight, degree)
    bx, bw = _blocks(x.dtype, "dx"), _blocks(x.dtype, "dw")
    prec = _dot_precision(x.dtype)
    dx_grid = (triton.cdiv(B, bx["BB"]), triton.cdiv(M, bx["BM"]))
    row_tiles = triton.cdiv(B, bw["BB"])
    if basis == "taylor" and degree == 2:
        ct = _tl_dtype(x.dtype)
        # the c sum (M+1 passes, each over all of N) is split like the forward's column blocks
        dx_split = _split_count(M + 1, dx_grid[0] * dx_grid[1], x.device, B * M)
        dx_part = _split_output((B, M), dx_split, x.dtype, x.device)
        _taylor2_dx_kernel[dx_grid + (dx_split,)](
            grad_out, x, weight, dx_part, B, M, N, triton.cdiv(M + 1, dx_split), grad_out.stride(0),
            grad_out.stride(1), x.stride(0), x.stride(1), weight.stride(0), weight.stride(1),
            dx_part.stride(0), dx_part.stride(1), dx_part.stride(2),
            CT=ct, PREC=prec, BB=bx["BB"], BN=bx["BN"], BA=bx["BM"], num_warps=bx["num_warps"])
        n_ctiles = triton.cdiv(M, bw["BM"])
        programs = triton.cdiv(N, bw["BN"]) * (M + 1) * n_ctiles
        split = _split_count(row_tiles, programs, x.device, weight.numel(), max_split=_DW_MAX_SPLIT)
        part = _split_output(tuple(weight.shape), split, weight.dtype, x.device)
        _taylor2_dw_kernel[((M + 1) * n_ctiles, triton.cdiv(N, bw["BN"]), split)](
            grad_out, x, part, B, M, N, triton.cdiv(row_tiles, split) * bw["BB"], n_ctiles,
            grad_out.stride(0), grad_out.stride(1), x.stride(0), x.stride(1),
            part.stride(0), part.stride(1), part.stride(2),
            CT=ct, PREC=prec, BB=bw["BB"], BN=bw["BN"], BC=bw["BM"], num_warps=bw["num_warps"])
        return _reduce_split(dx_part, x.dtype), _reduce_split(part, weight.dtype)
    K, table, meta = _basis_spec(basis, degree, params, x)
    grad_x = torch.empty((B, M), dtype=x.dtype, device=x.device)
    _linear_dx_kernel[dx_grid](
        grad_out, x, weight, table, grad_x, B, M, N, K, grad_out.stride(0), grad_out.stride(1),
        x.stride(0), x.stride(1), weight.stride(0), weight.stride(1), grad_x.stride(0), grad_x.stride(1),
        PREC=prec, BB=bx["BB"], BN=bx["BN"], BM=bx["BM"], num_warps=bx["num_warps"], **meta)
    programs = triton.cdiv(N, bw["BN"]) * triton.cdiv(M, bw["BM"]) * K
    split = _split_count(row_tiles, programs, x.device, weight.numel(), max_split=_DW_MAX_SPLIT)
    part = _split_output(tuple(weight.shape), split, weight.dtype, x.device)
    _linear_dw_kernel[(triton.cdiv(N, bw["BN"]), triton.cdiv(M, bw["BM"]), K * split)](
        grad_out, x, table, part, B, M, N, K, triton.cdiv(row_tiles, split) * bw["BB"],
        grad_out.stride(0), grad_out.stride(1), x.stride(0), x.stride(1),
        part.stride(0), part.stride(1), part.stride(2),
        PREC=prec, BB=bw["BB"], BN=bw["BN"], BM=bw["BM"], num_warps=bw["num_warps"], **meta)
    return grad_x, _reduce_split(part, weight.dtype)


def _reduce_split(part: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # a fixed-order sum over the slices: deterministic, unlike float atomics
    if part.shape[0] == 1:
        return part[0]
    return part.sum(0).to(dtype)


# ---------------------------------------------------------------------------------------------
# Taylor degree ≥ 3: row chunks of the materialised κ (memory O(rows_per_chunk · D), not O(B · D))
# and the platform GEMM. The Horner contraction of §2.4 would avoid κ entirely but is not written.
# ---------------------------------------------------------------------------------------------

def _taylor_rows_per_chunk(B: int, D: int) -> int:
    return max(1, min(B, _TAYLOR_CHUNK_ELEMENTS // max(D, 1)))


def _taylor_linear_forward_chunked(x, weight, bias, degree):
    B, M = x.shape
    y = torch.empty((B, weight.shape[0]), dtype=x.dtype, device=x.device)
    rows = _taylor_rows_per_chunk(B, weight.shape[1])
    for r0 in range(0, B, rows):
        feats = expand_forward(x[r0:r0 + rows], "taylor", degree, [])
        y[r0:r0 + rows] = torch.nn.functional.linear(feats, weight, bias)
    return y


def _taylor_linear_backward_chunked(grad_out, x, weight, degree):
    B, M = x.shape
    ct = _compute_dtype(x.dtype)
    grad_w = torch.zeros(weight.shape, dtype=ct, device=x.device)  # fp32 sum across chunks for halves
    grad_x = torch.empty((B, M), dtype=x.dtype, device=x.device)
    rows = _taylor_rows_per_chunk(B, weight.shape[1])
    for r0 in range(0, B, rows):
        xc, gc = x[r0:r0 + rows], grad_out[r0:r0 + rows]
        feats = expand_forward(xc, "taylor", degree, [])
        grad_w.addmm_(gc.t().to(ct), feats.to(ct))
        grad_x[r0:r0 + rows] = expand_backward(gc @ weight, xc, "taylor", degree, [])
    return grad_x, grad_w.to(weight.dtype)


__all__ = ["expand_forward", "expand_backward", "expand_linear_forward", "expand_linear_backward"]
