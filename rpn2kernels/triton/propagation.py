"""Triton kernels of the propagation family (functions.md §5.4, §5.5, §5.11): raw launchers.

    spmm(rowptr, col, value, x, base, alpha, beta)            -> alpha·A·x + beta·base   (R, F)
    sddmm(rowptr, col, a, b)                                  -> <a[row(e)], b[col(e)]>  (E,)
    edge_attention(rowptr, col, value, q, k, v, scale)        -> (out (R, Fv), lse (R,))
    edge_attention_backward(rowptr, col, value, q, k, v, out, lse, grad_out, scale)
                                                              -> (grad_q (R, Fq), grad_logit (E,), prob (E,))
    chain_filter(x, taps, first_offset, base, beta)           -> banded Toeplitz filter along dim 1
    chain_scan(x, reverse)                                    -> inclusive prefix (suffix) sum along dim 1

No autograd and no op registration here (rpn2kernels.ops does both). rpn2kernels.reference.propagation
defines every op; csrc/include/rpn2kernels/propagation_math.h holds the conventions shared with the
compiled backends (masking of exactly-zero logits, lse = -inf for a row without unmasked edges).

Design notes
------------
* Row-split CSR, vectorised over a block of rows: every kernel over a graph runs one program per
  (block of BR rows, feature tile) on a flat grid axis 0 (no gridDim.y/z limit). A program
  handles its BR rows at once: step j gathers the (BR, BE) edge slots rowptr[r] + j·BE + 0…BE−1
  (masked by < rowptr[r+1]) and their (BR, BE, BF) tile of the dense operand by column index,
  for j up to the block's largest degree. Each output element is owned by exactly one program and
  summed in a fixed order — edge e of a row always lands in lane (e − rowptr[r]) mod BE of a
  (BR, BE, BF) register accumulator that is reduced over the lanes once at the end — so there
  are no atomics and results are bitwise reproducible for given tiles (and num_warps: on a GPU
  the reduction tree over the lanes follows the register layout).
* Choosing BR (a constexpr; the same kernel runs on a GPU and under TRITON_INTERPRET, only the
  constexprs differ). The rows of a block share one loop up to the block's largest degree, so
  a row's lanes idle while a longer row of its block finishes: on a power-law degree
  distribution one hub can waste up to (BR − 1)× its own work. On the other hand a single short
  row fills few of a chunk's BE lanes and one row per program means many tiny programs. On a
  GPU BR is therefore small: BE follows the average degree E/R (known on the host without a
  device sync; a power of two in [4, 64]), and BR fills about 16 edge slots per step: 4 up to
  an average degree of 4, 2 up to 8, 1 beyond — within the register budget (num_warps grows
  with the BR·BE·width tile, counting fp64 twice). Under TRITON_INTERPRET, where the cost is
  per triton.language call and hardly depends on the tile size, BR is the next power of two of
  R (capped) and BE that of the largest degree (capped; the rowptr tensor is on the host
  there), so a small graph runs in one program of a few steps.
* More row blocks than the grid's axis-0 limit: each program walks several consecutive blocks.
* sddmm and the attention logits reduce the feature dimension in chunks of BF/BQ inside each edge
  step, so any width works with bounded registers.
* edge_attention is an online (flash-style) softmax over the edge steps, per row of the block:
  running max m (BR,), running sum l (BR,) and a (BR, BE, BV) accumulator rescaled by
  exp(m_old − m_new); never an R × C matrix. A row whose edges are exhausted sees only masked
  lanes (rescale 1, nothing added). Wide v is split into BV tiles on the grid, each tile
  recomputing the (cheap) logits. The backward recomputes each logit, takes
  prob = exp(s − lse) and reduces grad_q per row; grad_k and grad_v are transposed SpMMs of the
  per-edge (grad_logit, prob) it returns (the caller's job).
* Chains: chain_filter tiles the flattened (chain, position) rows of x (b·L, m), chain_scan the
  flattened (chain, column) pairs (b·m of them) — a tile may span several chains, so a batch of
  short chains needs few programs. chain_filter sums BT taps a step through a (BT, BL, BM) tile:
  BT = 1 on a GPU (the register budget goes to BL × BM; taps summed in tap order), all the taps
  at once under TRITON_INTERPRET.
* Scalars (alpha, beta, scale, the filter taps) are handed over as a tiny cached tensor in the
  compute dtype: Triton passes Python floats as fp32, which would cap float64 at ~1e-7.
* Accumulation is fp32 for fp32/fp16/bf16 inputs and fp64 for fp64; outputs are rounded to the
  input dtype once (lse stays in the accumulation dtype, like the reference).
* Index arithmetic is int64 (row and edge ids come from int64 rowptr/col): no overflow on large
  graphs, and no int32 overflow checks, which cost the interpreter ~4 calls per operation.
* Column indices are trusted (validated once when a rpn2kernels.Graph is built, as for the CUDA
  kernels): an out-of-range col reads out of bounds.
"""
import contextlib
import functools
import os
from typing import List, Optional, Sequence, Tuple

import torch
import triton
import triton.language as tl

_SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

# Read once, like triton.jit does when it decides to interpret the kernels below.
_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

#: Largest grid (axis 0) a launch may use; row blocks per program grow beyond it.
_MAX_GRID = 2 ** 31 - 1

#: Tile caps under TRITON_INTERPRET. The interpreter's cost is per triton.language call, nearly
#: independent of tile size, so few large tiles are cheapest (BR rows × BE edge slots × width at
#: most TILE elements: BE is halved down to 8 first, then BR); BT caps chain_filter's taps a step.
#: Tests shrink these (monkeypatch) to exercise several edge steps, feature tiles, tap steps and
#: row blocks on small shapes.
_INTERPRET_BLOCKS = dict(BR=64, BE=32, BF=64, BL=64, BM=64, BT=16, TILE=1 << 16)

#: Largest row block on a GPU (see "Choosing BR" above).
_GPU_MAX_BLOCK_R = 4

#: Tests set this to force the row block BR of the CSR kernels (None: chosen per device).
_FORCE_BLOCK_R: Optional[int] = None


def _device_function(fn):
    """@triton.jit for a helper called from the kernels — except under TRITON_INTERPRET, where the
    interpreter re-patches all of triton.language on every call of a jit helper; there the kernel
    body is plain Python already and the helper runs as an ordinary function (same semantics)."""
    return fn if _INTERPRET else triton.jit(fn)


# =============================================================================================
# Device helpers
# =============================================================================================

@_device_function
def _row_block(rowptr_ptr, rb, R, BR: tl.constexpr):
    """Rows rb·BR … rb·BR + BR − 1 of a block (int64 rb): their ids (BR,) int64, validity, CSR
    bounds [start, end) (0, 0 for rows past R) and the block's largest degree."""
    offs_r = rb * BR + tl.arange(0, BR).to(tl.int64)  # rb is a Python int under the interpreter
    r_ok = offs_r < R
    start = tl.load(rowptr_ptr + offs_r, mask=r_ok, other=0)
    end = tl.load(rowptr_ptr + offs_r + 1, mask=r_ok, other=0)
    return offs_r, r_ok, start, end, tl.max(end - start, axis=0)


@_device_function
def _edge_slots(start, end, j, lanes):
    """Edge ids rowptr[r] + j + lanes of every row of the block, (BR, BE), and their validity."""
    offs_e = (start + j)[:, None] + lanes[None, :]
    return offs_e, offs_e < end[:, None]


@_device_function
def _edge_dots(a_ptr, a_off, r_ok, b_ptr, c, e_ok, F, CT: tl.constexpr, BR: tl.constexpr, BE: tl.constexpr,
               BF: tl.constexpr):
    """<a[row], b[c_e]> for the (BR, BE) edge slots of a row block (row offsets a_off = row·F,
    column indices c, valid slots e_ok), the width F reduced in chunks of BF: (BR, BE) in CT."""
    acc = tl.zeros((BR, BE, BF), dtype=CT)
    a_rows = a_ptr + a_off[:, None]
    b_rows = b_ptr + (c * F)[:, :, None]
    a_row_ok = r_ok[:, None]
    b_row_ok = e_ok[:, :, None]
    lanes_f = tl.arange(0, BF).to(tl.int64)
    for f0 in range(0, F, BF):
        offs_f = f0 + lanes_f
        f_ok = offs_f < F
        a = tl.load(a_rows + offs_f[None, :], mask=a_row_ok & f_ok[None, :], other=0.0).to(CT)
        b = tl.load(b_rows + offs_f[None, None, :], mask=b_row_ok & f_ok[None, None, :], other=0.0).to(CT)
        acc += b * a[:, None, :]
    return tl.sum(acc, axis=2)


@_device_function
def _edge_logits(col_ptr, val_ptr, offs_e, e_ok, q_ptr, q_off, r_ok, k_ptr, scale, FQ, HAS_VALUE: tl.constexpr,
                 CT: tl.constexpr, BR: tl.constexpr, BE: tl.constexpr, BQ: tl.constexpr):
    """(c, w, s) of the (BR, BE) edge slots: source columns, edge values (scale as a stand-in
    without HAS_VALUE) and logits s_e = <q_i, k_col(e)> · scale · value_e (the reference's order)."""
    c = tl.load(col_ptr + offs_e, mask=e_ok, other=0)
    w = scale
    if HAS_VALUE:
        w = tl.load(val_ptr + offs_e, mask=e_ok, other=0.0).to(CT)
    s = _edge_dots(q_ptr, q_off, r_ok, k_ptr, c, e_ok, FQ, CT, BR, BE, BQ) * scale
    if HAS_VALUE:
        s = s * w
    return c, w, s


# =============================================================================================
# Kernels
# =============================================================================================

@triton.jit
def _spmm_kernel(rowptr_ptr, col_ptr, val_ptr, x_ptr, base_ptr, c_ptr, out_ptr,
                 R, F, n_rblocks, blocks_per_prog, n_ftiles,
                 HAS_VALUE: tl.constexpr, HAS_BASE: tl.constexpr, CT: tl.constexpr,
                 BR: tl.constexpr, BE: tl.constexpr, BF: tl.constexpr):
    pid = tl.program_id(0)
    offs_f = (pid % n_ftiles).to(tl.int64) * BF + tl.arange(0, BF)
    f_ok = offs_f < F
    alpha = tl.load(c_ptr)
    beta = tl.load(c_ptr + 1)
    lanes = tl.arange(0, BE)
    rb0 = (pid // n_ftiles).to(tl.int64) * blocks_per_prog
    for rb in range(rb0, tl.minimum(rb0 + blocks_per_prog, n_rblocks)):
        offs_r, r_ok, start, end, max_deg = _row_block(rowptr_ptr, rb, R, BR)
        acc = tl.zeros((BR, BE, BF), dtype=CT)
        for j in range(0, max_deg, BE):
            offs_e, e_ok = _edge_slots(start, end, j, lanes)
            c = tl.load(col_ptr + offs_e, mask=e_ok, other=0)
            xt = tl.load(x_ptr + (c * F)[:, :, None] + offs_f[None, None, :],
                         mask=e_ok[:, :, None] & f_ok[None, None, :], other=0.0).to(CT)
            if HAS_VALUE:
                xt = xt * tl.load(val_ptr + offs_e, mask=e_ok, other=0.0).to(CT)[:, :, None]
            acc += xt
        res = tl.sum(acc, axis=1) * alpha
        o_off = (offs_r * F)[:, None] + offs_f[None, :]
        o_ok = r_ok[:, None] & f_ok[None, :]
        if HAS_BASE:
            res += beta * tl.load(base_ptr + o_off, mask=o_ok, other=0.0).to(CT)
        tl.store(out_ptr + o_off, res.to(out_ptr.dtype.element_ty), mask=o_ok)


@triton.jit
def _sddmm_kernel(rowptr_ptr, col_ptr, a_ptr, b_ptr, out_ptr, R, F, n_rblocks, blocks_per_prog,
                  CT: tl.constexpr, BR: tl.constexpr, BE: tl.constexpr, BF: tl.constexpr):
    lanes = tl.arange(0, BE)
    rb0 = tl.program_id(0).to(tl.int64) * blocks_per_prog
    for rb in range(rb0, tl.minimum(rb0 + blocks_per_prog, n_rblocks)):
        offs_r, r_ok, start, end, max_deg = _row_block(rowptr_ptr, rb, R, BR)
        a_off = offs_r * F
        for j in range(0, max_deg, BE):
            offs_e, e_ok = _edge_slots(start, end, j, lanes)
            c = tl.load(col_ptr + offs_e, mask=e_ok, other=0)
            d = _edge_dots(a_ptr, a_off, r_ok, b_ptr, c, e_ok, F, CT, BR, BE, BF)
            tl.store(out_ptr + offs_e, d.to(out_ptr.dtype.element_ty), mask=e_ok)


@triton.jit
def _attention_fwd_kernel(rowptr_ptr, col_ptr, val_ptr, q_ptr, k_ptr, v_ptr, c_ptr, out_ptr, lse_ptr,
                          R, FQ, FV, n_rblocks, blocks_per_prog, n_vtiles,
                          HAS_VALUE: tl.constexpr, CT: tl.constexpr, BR: tl.constexpr,
                          BE: tl.constexpr, BQ: tl.constexpr, BV: tl.constexpr):
    pid = tl.program_id(0)
    vt = pid % n_vtiles
    offs_v = vt.to(tl.int64) * BV + tl.arange(0, BV)
    v_ok = offs_v < FV
    # one program of each row block writes lse. A (BR,) vector: the interpreter rejects a mask
    # built from a scalar comparison (wrong dtype after broadcasting)
    lse_tile = (tl.zeros((BR,), dtype=tl.int64) + vt) == 0
    scale = tl.load(c_ptr)
    lanes = tl.arange(0, BE)
    rb0 = (pid // n_vtiles).to(tl.int64) * blocks_per_prog
    for rb in range(rb0, tl.minimum(rb0 + blocks_per_prog, n_rblocks)):
        offs_r, r_ok, start, end, max_deg = _row_block(rowptr_ptr, rb, R, BR)
        q_off = offs_r * FQ
        m = tl.full((BR,), float("-inf"), CT)  # running max of the unmasked logits
        l = tl.zeros((BR,), dtype=CT)  # running Σ exp(s − m)
        acc = tl.zeros((BR, BE, BV), dtype=CT)  # running Σ exp(s − m)·v, reduced over lanes at the end
        for j in range(0, max_deg, BE):
            offs_e, e_ok = _edge_slots(start, end, j, lanes)
            c, w, s = _edge_logits(col_ptr, val_ptr, offs_e, e_ok, q_ptr, q_off, r_ok, k_ptr, scale, FQ, HAS_VALUE,
                                   CT, BR, BE, BQ)
            keep = e_ok & (s != 0.0)  # exactly-zero logits are masked (propagation_math.h)
            s = tl.where(keep, s, float("-inf"))
            m_new = tl.maximum(m, tl.max(s, axis=1))
            # m_new is finite once the row has an unmasked edge; before that, subtracting 0
            # instead keeps exp(-inf) = 0 for rescale and p, and no -inf − -inf = nan arises
            m_sub = tl.where(m_new > float("-inf"), m_new, 0.0)
            rescale = tl.exp(m - m_sub)
            p = tl.exp(s - m_sub[:, None])
            l = l * rescale + tl.sum(p, axis=1)
            vv = tl.load(v_ptr + (c * FV)[:, :, None] + offs_v[None, None, :],
                         mask=e_ok[:, :, None] & v_ok[None, None, :], other=0.0).to(CT)
            acc = acc * rescale[:, None, None] + p[:, :, None] * vv
            m = m_new
        has = l > 0.0
        l_div = tl.where(has, l, 1.0)  # an empty row has acc = 0 already: divide by 1 there
        o = tl.sum(acc, axis=1) / l_div[:, None]
        tl.store(out_ptr + (offs_r * FV)[:, None] + offs_v[None, :], o.to(out_ptr.dtype.element_ty),
                 mask=r_ok[:, None] & v_ok[None, :])
        lse = tl.where(has, m + tl.log(l_div), float("-inf"))
        tl.store(lse_ptr + offs_r, lse.to(lse_ptr.dtype.element_ty), mask=r_ok & lse_tile)


@triton.jit
def _attention_bwd_kernel(rowptr_ptr, col_ptr, val_ptr, q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, go_ptr, c_ptr,
                          gq_ptr, gl_ptr, prob_ptr, R, FQ, FV, n_rblocks, blocks_per_prog, n_qtiles,
                          HAS_VALUE: tl.constexpr, CT: tl.constexpr, BR: tl.constexpr,
                          BE: tl.constexpr, BQ: tl.constexpr, BV: tl.constexpr):
    pid = tl.program_id(0)
    qt = pid % n_qtiles
    offs_q = qt.to(tl.int64) * BQ + tl.arange(0, BQ)
    q_ok = offs_q < FQ
    # one program of each row block writes prob and grad_logit (a vector: see lse_tile above)
    first_tile = (tl.zeros((BR, BE), dtype=tl.int64) + qt) == 0
    scale = tl.load(c_ptr)
    lanes = tl.arange(0, BE)
    lanes_v = tl.arange(0, BV).to(tl.int64)
    rb0 = (pid // n_qtiles).to(tl.int64) * blocks_per_prog
    for rb in range(rb0, tl.minimum(rb0 + blocks_per_prog, n_rblocks)):
        offs_r, r_ok, start, end, max_deg = _row_block(rowptr_ptr, rb, R, BR)
        q_off = offs_r * FQ
        v_off = offs_r * FV
        # lse = -inf: no unmasked edge, every gradient of the row is zero (rows past R as well)
        lse = tl.load(lse_ptr + offs_r, mask=r_ok, other=float("-inf")).to(CT)
        row_ok = lse > float("-inf")
        lse_sub = tl.where(row_ok, lse, 0.0)
        # delta_i = <grad_out_i, out_i>
        dacc = tl.zeros((BR, BV), dtype=CT)
        for f0 in range(0, FV, BV):
            offs_v = f0 + lanes_v
            off = v_off[:, None] + offs_v[None, :]
            ok = r_ok[:, None] & (offs_v < FV)[None, :]
            go = tl.load(go_ptr + off, mask=ok, other=0.0).to(CT)
            o = tl.load(o_ptr + off, mask=ok, other=0.0).to(CT)
            dacc += go * o
        delta = tl.sum(dacc, axis=1)
        acc = tl.zeros((BR, BE, BQ), dtype=CT)
        for j in range(0, max_deg, BE):
            offs_e, e_ok = _edge_slots(start, end, j, lanes)
            c, w, s = _edge_logits(col_ptr, val_ptr, offs_e, e_ok, q_ptr, q_off, r_ok, k_ptr, scale, FQ, HAS_VALUE,
                                   CT, BR, BE, BQ)
            keep = e_ok & (s != 0.0) & row_ok[:, None]
            p = tl.exp(tl.where(keep, s, float("-inf")) - lse_sub[:, None])
            dp = _edge_dots(go_ptr, v_off, r_ok, v_ptr, c, e_ok, FV, CT, BR, BE, BV)
            gl = tl.where(keep, p * (dp - delta[:, None]), 0.0)
            first = e_ok & first_tile
            tl.store(prob_ptr + offs_e, p.to(prob_ptr.dtype.element_ty), mask=first)
            tl.store(gl_ptr + offs_e, gl.to(gl_ptr.dtype.element_ty), mask=first)
            coef = gl * scale
            if HAS_VALUE:
                coef = coef * w
            kk = tl.load(k_ptr + (c * FQ)[:, :, None] + offs_q[None, None, :],
                         mask=e_ok[:, :, None] & q_ok[None, None, :], other=0.0).to(CT)
            acc += coef[:, :, None] * kk
        tl.store(gq_ptr + q_off[:, None] + offs_q[None, :], tl.sum(acc, axis=1).to(gq_ptr.dtype.element_ty),
                 mask=r_ok[:, None] & q_ok[None, :])


@triton.jit
def _chain_filter_kernel(x_ptr, shift_ptr, tap_ptr, c_ptr, base_ptr, out_ptr, N, L, M, T, n_mtiles,
                         HAS_BASE: tl.constexpr, ODD_REFLECT: tl.constexpr, CT: tl.constexpr, BT: tl.constexpr,
                         BL: tl.constexpr, BM: tl.constexpr):
    """x viewed as (N = b·L, M): a (BL, BM) tile of flattened (chain, position) rows, which may
    span several chains (a tap reads within the row's own chain only), summing BT taps a step
    through a (BT, BL, BM) tile. ODD_REFLECT: a source outside the chain reads the chain's odd
    2(L+1)-periodic reflection (signed image, zero on the virtual end nodes), as
    odd_reflection_source in csrc/include/rpn2kernels/propagation_math.h."""
    pid = tl.program_id(0)
    offs_n = (pid // n_mtiles).to(tl.int64) * BL + tl.arange(0, BL)
    offs_m = (pid % n_mtiles).to(tl.int64) * BM + tl.arange(0, BM)
    n_ok = offs_n < N
    m_ok = offs_m < M
    t = offs_n % L  # position in the chain
    first = offs_n - t  # flat row of the chain's position 0
    pos = t[None, :]
    rows_ok = n_ok[None, :]
    chain_rows = first[None, :]
    cols = offs_m[None, None, :]
    cols_ok = m_ok[None, None, :]
    lanes_t = tl.arange(0, BT).to(tl.int64)
    acc = tl.zeros((BL, BM), dtype=CT)
    for j0 in range(0, T, BT):  # nonzero in-range taps only, BT a step in tap order
        offs_j = j0 + lanes_t
        j_ok = offs_j < T
        shift = tl.load(shift_ptr + offs_j, mask=j_ok, other=L)  # shift L: a lane past T reads nothing
        tap = tl.load(tap_ptr + offs_j, mask=j_ok, other=0.0)
        src = pos - shift[:, None]  # (BT, BL) source positions
        if ODD_REFLECT:
            period = 2 * (L + 1)
            s = ((src % period) + period) % period
            inside = s < L
            mirrored = (s > L) & (s < 2 * L + 1)
            src = tl.where(inside, s, 2 * L - s)
            ok = (inside | mirrored) & rows_ok & j_ok[:, None]  # (lanes past T carry tap 0: read nothing)
            tap_src = tl.where(mirrored, -tap[:, None], tap[:, None])
        else:
            ok = (src >= 0) & (src < L) & rows_ok
            tap_src = tap[:, None] + tl.zeros((BT, BL), dtype=tap.dtype)
        xt = tl.load(x_ptr + ((chain_rows + src) * M)[:, :, None] + cols, mask=ok[:, :, None] & cols_ok,
                     other=0.0).to(CT)
        acc += tl.sum(tap_src[:, :, None] * xt, axis=0)
    o_off = (offs_n * M)[:, None] + offs_m[None, :]
    mask = n_ok[:, None] & m_ok[None, :]
    if HAS_BASE:
        acc += tl.load(c_ptr) * tl.load(base_ptr + o_off, mask=mask, other=0.0).to(CT)
    tl.store(out_ptr + o_off, acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _chain_scan_kernel(x_ptr, out_ptr, L, M, J, REVERSE: tl.constexpr, CT: tl.constexpr, BL: tl.constexpr,
                       BM: tl.constexpr):
    """A tile of BM flattened (chain, column) pairs (J = b·M of them, possibly from several
    chains), scanned along the chain in chunks of BL with a running carry."""
    pid = tl.program_id(0)
    offs_j = pid.to(tl.int64) * BM + tl.arange(0, BM)
    j_ok = offs_j[None, :] < J
    m = offs_j % M
    col0 = ((offs_j - m) * L + m)[None, :]  # element (chain, position 0, column)
    lanes_l = tl.arange(0, BL).to(tl.int64)
    carry = tl.zeros((BM,), dtype=CT)
    for c0 in range(0, L, BL):
        offs = c0 + lanes_l
        t_ok = offs < L
        if REVERSE:  # walk the chain from its end: the suffix sum is a prefix sum of the reversal
            t = L - 1 - offs
        else:
            t = offs
        off = col0 + (t * M)[:, None]
        mask = t_ok[:, None] & j_ok
        xt = tl.load(x_ptr + off, mask=mask, other=0.0).to(CT)
        tl.store(out_ptr + off, (tl.cumsum(xt, axis=0) + carry[None, :]).to(out_ptr.dtype.element_ty),
                 mask=mask)
        carry += tl.sum(xt, axis=0)


# =============================================================================================
# Host side
# =============================================================================================

def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _tl_dtype(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _pow2(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


def _pow2_floor(n: int) -> int:
    return 1 << max(0, int(n).bit_length() - 1)


def _tile_budget(dtype: torch.dtype) -> int:
    """Elements of one register tile: 4096 (fp32 and halves), 2048 for fp64."""
    return 2048 if dtype == torch.float64 else 4096


def _feature_block(F: int, cap: int) -> int:
    if _INTERPRET:
        cap = _INTERPRET_BLOCKS["BF"]
    return max(1, min(_pow2(F), cap))


def _csr_blocks(rowptr: torch.Tensor, E: int, width: int, dtype: torch.dtype) -> Tuple[int, int]:
    """(BR, BE): rows per block and edge slots per row and step, for (BR, BE, width) tiles
    (width: the feature tile(s) live at once). See "Choosing BR" in the module docstring."""
    R = max(rowptr.numel() - 1, 1)
    if _INTERPRET:
        # rowptr is a host tensor here: the largest degree costs no device sync
        max_deg = int((rowptr[1:] - rowptr[:-1]).max()) if rowptr.numel() > 1 else 0
        br = min(_pow2(R), _INTERPRET_BLOCKS.get("BR", 64))
        be = min(_pow2(max_deg), _INTERPRET_BLOCKS["BE"])
        tile = _INTERPRET_BLOCKS.get("TILE", 1 << 16)
        while br * be * width > tile and br * be > 1:  # halve BE down to 8 first, then BR
            if be > 8 or br == 1:
                be //= 2
            else:
                br //= 2
    else:
        fit = _pow2_floor(max(1, _tile_budget(dtype) // max(width, 1)))
        be = max(1, min(max(4, _pow2(-(-E // R))), 64, fit))
        br = max(1, min(_GPU_MAX_BLOCK_R, 16 // be, fit // be))
    if _FORCE_BLOCK_R is not None:
        if _FORCE_BLOCK_R < 1 or _pow2(_FORCE_BLOCK_R) != _FORCE_BLOCK_R:
            raise ValueError(f"_FORCE_BLOCK_R must be a power of two, got {_FORCE_BLOCK_R}")
        br = _FORCE_BLOCK_R
    return br, be


def _num_warps(tile: int, dtype: torch.dtype) -> int:
    """About 16 fp32 (8 fp64) accumulator elements per thread: a power of two in [1, 8]."""
    if _INTERPRET:
        return 1
    regs = tile * (2 if dtype == torch.float64 else 1)  # 32-bit registers per tile
    return 1 << min(3, max(0, (regs // 512).bit_length() - 1))


def _row_grid(R: int, br: int, other_tiles: int) -> Tuple[int, int, int]:
    """(row blocks, row blocks per program, programs): one block a program unless the grid would
    exceed its axis-0 limit."""
    n_rb = triton.cdiv(R, br)
    bpp = max(1, triton.cdiv(n_rb * other_tiles, _MAX_GRID))
    return n_rb, bpp, triton.cdiv(n_rb, bpp) * other_tiles


@functools.lru_cache(maxsize=256)
def _table_tensor(values: Tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # Cached so a training loop does not pay a host-to-device copy per call.
    return torch.tensor(values, dtype=dtype, device=device)


def _scalars(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    return _table_tensor(tuple(float(v) for v in values), _compute_dtype(like.dtype), like.device)


def _nonempty(t: torch.Tensor) -> torch.Tensor:
    """t itself, or a one-element stand-in of its dtype when t is empty (then never read), so no
    null or zero-size buffer reaches a launch."""
    return t if t.numel() > 0 else torch.zeros(1, dtype=t.dtype, device=t.device)


def _on_device_of(name: str):
    """Triton launches on the current CUDA device, not the tensors': make argument `name`'s current."""
    def deco(fn):
        import inspect
        params = list(inspect.signature(fn).parameters)
        index = params.index(name)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            t = kwargs.get(name, args[index] if index < len(args) else None)
            guard = torch.cuda.device(t.device) if isinstance(t, torch.Tensor) and t.is_cuda \
                else contextlib.nullcontext()
            with guard:
                return fn(*args, **kwargs)
        return wrapper
    return deco


# ---------------------------------------------------------------------------------------------
# Argument checks (every failure names the argument, the expected and the actual value)
# ---------------------------------------------------------------------------------------------

def _check_tensor_arg(name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(t).__name__}")


def _check_floating(name: str, t: torch.Tensor, dims: int) -> None:
    _check_tensor_arg(name, t)
    if t.dtype not in _SUPPORTED_DTYPES:
        raise TypeError(f"{name} must be a float32, float64, float16 or bfloat16 tensor, got dtype {t.dtype}")
    if t.dim() != dims:
        raise ValueError(f"{name} must have {dims} dims, got shape {tuple(t.shape)}")
    if t.device.type == "cpu" and not _INTERPRET:
        raise RuntimeError(f"{name} is a CPU tensor: Triton kernels need CUDA tensors, or "
                           "TRITON_INTERPRET=1 set before triton is imported")


def _check_same(name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    _check_tensor_arg(name, t)
    if t.device != ref.device:
        raise ValueError(f"{name} must be on {ref_name}'s device {ref.device}, got {t.device}")
    if t.dtype != ref.dtype:
        raise TypeError(f"{name} must have {ref_name}'s dtype {ref.dtype}, got {t.dtype}")


def _check_shape(name: str, t: torch.Tensor, expected: Tuple[int, ...], what: str = "") -> None:
    if tuple(t.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}{what}, got {tuple(t.shape)}")


def _check_csr(rowptr, col, like: torch.Tensor, like_name: str) -> int:
    """Checks a CSR pattern (rowptr (R+1,), col (E,), int64, on like's device); returns R."""
    _check_tensor_arg("rowptr", rowptr)
    _check_tensor_arg("col", col)
    if rowptr.dtype != torch.int64:
        raise TypeError(f"rowptr must have dtype torch.int64, got {rowptr.dtype}")
    if col.dtype != torch.int64:
        raise TypeError(f"col must have dtype torch.int64, got {col.dtype}")
    if rowptr.dim() != 1 or rowptr.numel() < 1:
        raise ValueError(f"rowptr must have shape (R+1,) with R ≥ 0, got {tuple(rowptr.shape)}")
    if col.dim() != 1:
        raise ValueError(f"col must have 1 dim (E,), got shape {tuple(col.shape)}")
    for name, t in (("rowptr", rowptr), ("col", col)):
        if t.device != like.device:
            raise ValueError(f"{name} must be on {like_name}'s device {like.device}, got {t.device}")
    return rowptr.numel() - 1


def _check_edge_values(value, col: torch.Tensor, like: torch.Tensor, like_name: str) -> None:
    if value is None:
        return
    _check_same("value", value, like_name, like)
    _check_shape("value", value, (col.numel(),), " (one per edge)")


def _check_attention(rowptr, col, value, q, k, v) -> int:
    _check_floating("q", q, 2)
    _check_floating("k", k, 2)
    _check_floating("v", v, 2)
    _check_same("k", k, "q", q)
    _check_same("v", v, "q", q)
    R = _check_csr(rowptr, col, q, "q")
    _check_edge_values(value, col, q, "q")
    if q.shape[0] != R:
        raise ValueError(f"q must have R={R} rows (one per CSR row / target), got shape {tuple(q.shape)}")
    if k.shape[1] != q.shape[1]:
        raise ValueError(f"k must have q's width {q.shape[1]}, got shape {tuple(k.shape)}")
    if v.shape[0] != k.shape[0]:
        raise ValueError(f"v must have k's {k.shape[0]} rows (one per source), got shape {tuple(v.shape)}")
    return R


def _lse_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------------------------------------
# Public launchers
# ---------------------------------------------------------------------------------------------

@_on_device_of("x")
def spmm(rowptr: torch.Tensor, col: torch.Tensor, value: Optional[torch.Tensor], x: torch.Tensor,
         base: Optional[torch.Tensor], alpha: float, beta: float) -> torch.Tensor:
    """out[i] = alpha · Σ_{e ∈ row i} value[e]·x[col[e]] + beta·base[i]: (R, F) in x's dtype.

    value None means all ones, base None means no base term."""
    _check_floating("x", x, 2)
    R = _check_csr(rowptr, col, x, "x")
    _check_edge_values(value, col, x, "x")
    F = x.shape[1]
    if base is not None:
        _check_same("base", base, "x", x)
        _check_shape("base", base, (R, F))
    out = torch.empty((R, F), dtype=x.dtype, device=x.device)
    if R == 0 or F == 0:
        return out
    E = col.numel()
    rowptr, col, x = rowptr.contiguous(), _nonempty(col.contiguous()), _nonempty(x.contiguous())
    val = _nonempty(value.contiguous()) if value is not None else x
    base_arg = base.contiguous() if base is not None else x
    bf = _feature_block(F, 64 if x.dtype == torch.float64 else 128)
    br, be = _csr_blocks(rowptr, E, bf, x.dtype)
    n_ft = triton.cdiv(F, bf)
    n_rb, bpp, programs = _row_grid(R, br, n_ft)
    _spmm_kernel[(programs,)](rowptr, col, val, x, base_arg, _scalars((alpha, beta), x), out,
                              R, F, n_rb, bpp, n_ft, HAS_VALUE=value is not None, HAS_BASE=base is not None,
                              CT=_tl_dtype(x.dtype), BR=br, BE=be, BF=bf, num_warps=_num_warps(br * be * bf, x.dtype))
    return out


def pagerank_iterate(rowptr: torch.Tensor, col: torch.Tensor, value: Optional[torch.Tensor], x: torch.Tensor,
                     c: float, iterations: int) -> torch.Tensor:
    """Z_T of Z_0 = c·x, Z_{t+1} = c·x + (1−c)·P·Z_t on a square CSR: ``iterations`` spmm launches."""
    _check_floating("x", x, 2)
    R = _check_csr(rowptr, col, x, "x")
    if R != x.shape[0]:
        raise ValueError(f"pagerank_iterate needs a square graph: rowptr has R={R} rows, x has {x.shape[0]}")
    if not 0.0 < c <= 1.0:
        raise ValueError(f"c must be in (0, 1], got {c}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    x = x.contiguous()
    z = x * c
    for _ in range(iterations):
        z = spmm(rowptr, col, value, z, x, 1.0 - c, c)
    return z


@_on_device_of("a")
def sddmm(rowptr: torch.Tensor, col: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """out[e] = <a[row(e)], b[col[e]]>: (E,) in a's dtype."""
    _check_floating("a", a, 2)
    _check_floating("b", b, 2)
    _check_same("b", b, "a", a)
    R = _check_csr(rowptr, col, a, "a")
    if a.shape[0] != R:
        raise ValueError(f"a must have R={R} rows (one per CSR row), got shape {tuple(a.shape)}")
    if b.shape[1] != a.shape[1]:
        raise ValueError(f"b must have a's width {a.shape[1]}, got shape {tuple(b.shape)}")
    E, F = col.numel(), a.shape[1]
    if E == 0 or F == 0:
        return torch.zeros((E,), dtype=a.dtype, device=a.device)
    out = torch.empty((E,), dtype=a.dtype, device=a.device)
    rowptr, col, a, b = rowptr.contiguous(), col.contiguous(), a.contiguous(), b.contiguous()
    bf = _feature_block(F, 32 if a.dtype == torch.float64 else 64)
    br, be = _csr_blocks(rowptr, E, bf, a.dtype)
    n_rb, bpp, programs = _row_grid(R, br, 1)
    _sddmm_kernel[(programs,)](rowptr, col, a, b, out, R, F, n_rb, bpp, CT=_tl_dtype(a.dtype),
                               BR=br, BE=be, BF=bf, num_warps=_num_warps(br * be * bf, a.dtype))
    return out


def _attention_blocks(rowptr, E, FQ, FW, dtype):
    """(BR, BE, BQ, BW): row block, edge slots, q/k chunk and the tile of the wide per-row output
    (v in the forward, q in the backward)."""
    f64 = dtype == torch.float64
    bq = _feature_block(FQ, 32 if f64 else 64)
    bw = _feature_block(FW, 64 if f64 else 128)
    br, be = _csr_blocks(rowptr, E, bq + bw, dtype)  # two (BR, BE, ·) tiles live at once
    return br, be, bq, bw


@_on_device_of("q")
def edge_attention(rowptr: torch.Tensor, col: torch.Tensor, value: Optional[torch.Tensor], q: torch.Tensor,
                   k: torch.Tensor, v: torch.Tensor, scale: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Masked softmax over each CSR row's edges of s_e = scale·value_e·<q_i, k_col(e)> (exact zeros
    masked), then out_i = Σ p_e·v_col(e). Returns (out (R, Fv) in q's dtype, lse (R,) in the
    accumulation dtype); rows without an unmasked edge give out_i = 0, lse_i = -inf."""
    R = _check_attention(rowptr, col, value, q, k, v)
    FQ, FV = q.shape[1], v.shape[1]
    E = col.numel()
    lse = torch.empty((R,), dtype=_lse_dtype(q.dtype), device=q.device)
    out = torch.empty((R, FV), dtype=q.dtype, device=q.device)
    if R == 0:
        return out, lse
    if E == 0:
        return out.zero_(), lse.fill_(float("-inf"))
    rowptr, col = rowptr.contiguous(), col.contiguous()
    q, k, v = _nonempty(q.contiguous()), _nonempty(k.contiguous()), _nonempty(v.contiguous())
    val = value.contiguous() if value is not None else q
    br, be, bq, bv = _attention_blocks(rowptr, E, FQ, FV, q.dtype)
    n_vt = max(1, triton.cdiv(FV, bv))  # FV = 0 still needs lse
    n_rb, bpp, programs = _row_grid(R, br, n_vt)
    _attention_fwd_kernel[(programs,)](rowptr, col, val, q, k, v, _scalars((scale,), q), _nonempty(out), lse,
                                       R, FQ, FV, n_rb, bpp, n_vt, HAS_VALUE=value is not None,
                                       CT=_tl_dtype(q.dtype), BR=br, BE=be, BQ=bq, BV=bv,
                                       num_warps=_num_warps(br * be * (bq + bv), q.dtype))
    return out, lse


@_on_device_of("q")
def edge_attention_backward(rowptr: torch.Tensor, col: torch.Tensor, value: Optional[torch.Tensor],
                            q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                            lse: torch.Tensor, grad_out: torch.Tensor,
                            scale: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(grad_q (R, Fq), grad_logit (E,), prob (E,)), all in q's dtype: prob_e = exp(s_e − lse_i)
    (0 when masked or the row is empty), grad_logit_e = prob_e·(<grad_out_i, v_col(e)> −
    <grad_out_i, out_i>), grad_q_i = Σ_e grad_logit_e·scale·value_e·k_col(e)."""
    R = _check_attention(rowptr, col, value, q, k, v)
    FQ, FV = q.shape[1], v.shape[1]
    for name, t in (("out", out), ("grad_out", grad_out)):
        _check_floating(name, t, 2)
        _check_same(name, t, "q", q)
        _check_shape(name, t, (R, FV))
    _check_floating("lse", lse, 1)
    if lse.device != q.device:
        raise ValueError(f"lse must be on q's device {q.device}, got {lse.device}")
    _check_shape("lse", lse, (R,))
    E = col.numel()
    grad_q = torch.empty((R, FQ), dtype=q.dtype, device=q.device)
    grad_logit = torch.empty((E,), dtype=q.dtype, device=q.device)
    prob = torch.empty((E,), dtype=q.dtype, device=q.device)
    if R == 0:
        return grad_q, grad_logit, prob
    if E == 0:
        return grad_q.zero_(), grad_logit, prob
    rowptr, col = rowptr.contiguous(), col.contiguous()
    q, k, v = _nonempty(q.contiguous()), _nonempty(k.contiguous()), _nonempty(v.contiguous())
    out, grad_out = _nonempty(out.contiguous()), _nonempty(grad_out.contiguous())
    lse = lse.to(_lse_dtype(q.dtype)).contiguous()
    val = value.contiguous() if value is not None else q
    br, be, bv, bq = _attention_blocks(rowptr, E, FV, FQ, q.dtype)  # dprob chunks over v, grad_q tiles over q
    n_qt = max(1, triton.cdiv(FQ, bq))  # FQ = 0 still needs prob and grad_logit
    n_rb, bpp, programs = _row_grid(R, br, n_qt)
    _attention_bwd_kernel[(programs,)](rowptr, col, val, q, k, v, out, lse, grad_out, _scalars((scale,), q),
                                       _nonempty(grad_q), grad_logit, prob, R, FQ, FV, n_rb, bpp, n_qt,
                                       HAS_VALUE=value is not None, CT=_tl_dtype(q.dtype),
                                       BR=br, BE=be, BQ=bq, BV=bv, num_warps=_num_warps(br * be * (bq + bv), q.dtype))
    return grad_q, grad_logit, prob


def _chain_blocks(rows: int, cols: int, dtype: torch.dtype) -> Tuple[int, int]:
    """(BL, BM) for a (rows, cols) tiling: (flattened positions, columns) for chain_filter,
    (chain positions, flattened columns) for chain_scan."""
    if _INTERPRET:
        return (max(1, min(_pow2(rows), _INTERPRET_BLOCKS["BL"])),
                max(1, min(_pow2(cols), _INTERPRET_BLOCKS["BM"])))
    bm = max(1, min(_pow2(cols), 64))
    bl = max(1, min(_pow2(rows), _tile_budget(dtype) // 2 // bm))
    return bl, bm


def _check_grid(programs: int, what: str) -> None:
    if programs > _MAX_GRID:
        raise ValueError(f"{what}: {programs} programs exceed the grid limit {_MAX_GRID}")


@_on_device_of("x")
def chain_filter(x: torch.Tensor, taps: List[float], first_offset: int, base: Optional[torch.Tensor],
                 beta: float, odd_reflect: bool = False) -> torch.Tensor:
    """out[:, t] = Σ_j taps[j]·x[:, t − (first_offset + j)] (zero outside 0 … L−1; with odd_reflect
    x's odd reflection there, for centred symmetric taps) + beta·base[:, t], for x (b, L, m): (b, L, m)
    in x's dtype. Zero taps, and without odd_reflect taps shifted by |first_offset + j| ≥ L, are skipped."""
    _check_floating("x", x, 3)
    taps = [float(t) for t in taps]
    if len(taps) == 0:
        raise ValueError("taps must hold at least one value, got 0")
    first_offset = int(first_offset)
    if base is not None:
        _check_same("base", base, "x", x)
        _check_shape("base", base, tuple(x.shape))
    if odd_reflect and (len(taps) % 2 == 0 or taps != taps[::-1] or first_offset != -(len(taps) // 2)):
        raise ValueError(f"odd_reflect needs an odd number of centred symmetric taps (first_offset="
                         f"{-(len(taps) // 2)}), got taps {taps} and first_offset {first_offset}")
    Bn, L, M = x.shape
    out = torch.empty((Bn, L, M), dtype=x.dtype, device=x.device)
    if out.numel() == 0:
        return out
    kept = [(first_offset + j, tap) for j, tap in enumerate(taps)
            if tap != 0.0 and (odd_reflect or abs(first_offset + j) < L)]
    x = x.contiguous()
    base_arg = base.contiguous() if base is not None else x
    if kept:
        shifts = _table_tensor(tuple(s for s, _ in kept), torch.int64, x.device)
        tap_t = _scalars([t for _, t in kept], x)
    else:  # no tap reaches the chain: out = beta·base (or 0) through the same kernel
        shifts, tap_t = _table_tensor((0,), torch.int64, x.device), _scalars((0.0,), x)
    N, T = Bn * L, len(kept)
    bl, bm = _chain_blocks(N, M, x.dtype)
    # taps a step: all of them (up to a cap) under the interpreter; one on a GPU, where the
    # tile budget goes to (BL, BM) and the taps are summed in tap order
    bt = min(_pow2(T), _INTERPRET_BLOCKS.get("BT", 16)) if _INTERPRET else 1
    n_mt = triton.cdiv(M, bm)
    programs = triton.cdiv(N, bl) * n_mt
    _check_grid(programs, "chain_filter")
    _chain_filter_kernel[(programs,)](x, shifts, tap_t, _scalars((beta,), x), base_arg, out, N, L, M, T, n_mt,
                                      HAS_BASE=base is not None, ODD_REFLECT=bool(odd_reflect), CT=_tl_dtype(x.dtype),
                                      BT=bt, BL=bl, BM=bm,
                                      num_warps=_num_warps(bt * bl * bm, x.dtype))
    return out


@_on_device_of("x")
def chain_scan(x: torch.Tensor, reverse: bool) -> torch.Tensor:
    """Inclusive prefix sum along dim 1 of x (b, L, m); reverse=True gives the suffix sum."""
    _check_floating("x", x, 3)
    Bn, L, M = x.shape
    out = torch.empty((Bn, L, M), dtype=x.dtype, device=x.device)
    if out.numel() == 0:
        return out
    x = x.contiguous()
    J = Bn * M
    bl, bm = _chain_blocks(L, J, x.dtype)
    programs = triton.cdiv(J, bm)
    _check_grid(programs, "chain_scan")
    _chain_scan_kernel[(programs,)](x, out, L, M, J, REVERSE=bool(reverse), CT=_tl_dtype(x.dtype),
                                    BL=bl, BM=bm, num_warps=_num_warps(bl * bm, x.dtype))
    return out


__all__ = ["spmm", "pagerank_iterate", "sddmm", "edge_attention", "edge_attention_backward", "chain_filter",
           "chain_scan"]
