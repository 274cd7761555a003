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
* Row-split CSR: every kernel over a graph runs one program per (block of rows, feature tile) on a
  flat grid axis 0 (no gridDim.y/z limit), walks its rows one after the other and, per row, the
  row's edges in chunks of BE, gathering (BE, BF) tiles of the dense operand by column index.
  Each output element is owned by exactly one program and summed in a fixed order (a (BE, BF)
  register accumulator reduced once at the end of the row): no atomics, bitwise reproducible.
  The edge chunk BE follows the average degree E/R (known on the host without a device sync).
* sddmm and the attention logits reduce the feature dimension in chunks of BF/BQ inside each edge
  chunk, so any width works with bounded registers.
* edge_attention is an online (flash-style) softmax over the row's edge chunks: running max m,
  running sum l and a (BE, BV) accumulator rescaled by exp(m_old − m_new); never an R × C matrix.
  Wide v is split into BV tiles on the grid, each tile recomputing the (cheap) logits.
  The backward recomputes each logit, takes prob = exp(s − lse) and reduces grad_q per row; grad_k
  and grad_v are transposed SpMMs of the per-edge (grad_logit, prob) it returns (the caller's job).
* Scalars (alpha, beta, scale, the filter taps) are handed over as a tiny cached tensor in the
  compute dtype: Triton passes Python floats as fp32, which would cap float64 at ~1e-7.
* Accumulation is fp32 for fp32/fp16/bf16 inputs and fp64 for fp64; outputs are rounded to the
  input dtype once (lse stays in the accumulation dtype, like the reference).
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

#: Largest grid (axis 0) a launch may use; rows per program grow beyond it.
_MAX_GRID = 2 ** 31 - 1

#: Tile caps under TRITON_INTERPRET. The interpreter's cost is per triton.language call, nearly
#: independent of tile size, so few large tiles are cheapest; tests shrink these (monkeypatch) to
#: exercise several edge chunks and feature tiles on small shapes.
_INTERPRET_BLOCKS = dict(BE=32, BF=64, BL=64, BM=64)

#: Tests set this to force the number of rows each program walks (None: chosen per device).
_FORCE_ROWS_PER_PROGRAM: Optional[int] = None


def _device_function(fn):
    """@triton.jit for a helper called from the kernels — except under TRITON_INTERPRET, where the
    interpreter re-patches all of triton.language on every call of a jit helper; there the kernel
    body is plain Python already and the helper runs as an ordinary function (same semantics)."""
    return fn if _INTERPRET else triton.jit(fn)


# =============================================================================================
# Device helpers
# =============================================================================================

@_device_function
def _row_range(rb, rows_per_prog, R):
    """Rows [r0, r1) of row block rb, as int64 scalars."""
    r0 = rb.to(tl.int64) * rows_per_prog
    r1 = tl.minimum(r0 + rows_per_prog, R)
    return r0, r1


@_device_function
def _edge_dots(a_row_ptr, b_ptr, c, e_ok, F, CT: tl.constexpr, BE: tl.constexpr, BF: tl.constexpr):
    """<a_row, b[c_e]> for a chunk of BE edges (column indices c, valid lanes e_ok), the width F
    reduced in chunks of BF: (BE,) in CT."""
    acc = tl.zeros((BE, BF), dtype=CT)
    b_rows = b_ptr + c[:, None] * F
    for f0 in range(0, F, BF):
        offs_f = f0 + tl.arange(0, BF)
        f_ok = offs_f < F
        a = tl.load(a_row_ptr + offs_f, mask=f_ok, other=0.0).to(CT)
        b = tl.load(b_rows + offs_f[None, :], mask=e_ok[:, None] & f_ok[None, :], other=0.0).to(CT)
        acc += b * a[None, :]
    return tl.sum(acc, axis=1)


@_device_function
def _edge_logits(q_row_ptr, k_ptr, val_ptr, offs_e, c, e_ok, scale, FQ,
                 HAS_VALUE: tl.constexpr, CT: tl.constexpr, BE: tl.constexpr, BQ: tl.constexpr):
    """s_e = <q_i, k_col(e)> · scale · value_e for a chunk of edges (the reference's order)."""
    s = _edge_dots(q_row_ptr, k_ptr, c, e_ok, FQ, CT, BE, BQ) * scale
    if HAS_VALUE:
        s = s * tl.load(val_ptr + offs_e, mask=e_ok, other=0.0).to(CT)
    return s


# =============================================================================================
# Kernels
# =============================================================================================

@triton.jit
def _spmm_kernel(rowptr_ptr, col_ptr, val_ptr, x_ptr, base_ptr, c_ptr, out_ptr,
                 R, F, rows_per_prog, n_ftiles,
                 HAS_VALUE: tl.constexpr, HAS_BASE: tl.constexpr, CT: tl.constexpr,
                 BE: tl.constexpr, BF: tl.constexpr):
    pid = tl.program_id(0)
    rb = pid // n_ftiles
    offs_f = (pid % n_ftiles) * BF + tl.arange(0, BF)
    f_ok = offs_f < F
    alpha = tl.load(c_ptr)
    beta = tl.load(c_ptr + 1)
    r0, r1 = _row_range(rb, rows_per_prog, R)
    for row in range(r0, r1):
        start = tl.load(rowptr_ptr + row)
        end = tl.load(rowptr_ptr + row + 1)
        acc = tl.zeros((BE, BF), dtype=CT)
        for e0 in range(start, end, BE):
            offs_e = e0 + tl.arange(0, BE)
            e_ok = offs_e < end
            c = tl.load(col_ptr + offs_e, mask=e_ok, other=0)
            xt = tl.load(x_ptr + c[:, None] * F + offs_f[None, :], mask=e_ok[:, None] & f_ok[None, :],
                         other=0.0).to(CT)
            if HAS_VALUE:
                xt = xt * tl.load(val_ptr + offs_e, mask=e_ok, other=0.0).to(CT)[:, None]
            acc += xt
        res = tl.sum(acc, axis=0) * alpha
        if HAS_BASE:
            res += beta * tl.load(base_ptr + row * F + offs_f, mask=f_ok, other=0.0).to(CT)
        tl.store(out_ptr + row * F + offs_f, res.to(out_ptr.dtype.element_ty), mask=f_ok)


@triton.jit
def _sddmm_kernel(rowptr_ptr, col_ptr, a_ptr, b_ptr, out_ptr, R, F, rows_per_prog,
                  CT: tl.constexpr, BE: tl.constexpr, BF: tl.constexpr):
    r0, r1 = _row_range(tl.program_id(0), rows_per_prog, R)
    for row in range(r0, r1):
        start = tl.load(rowptr_ptr + row)
        end = tl.load(rowptr_ptr + row + 1)
        for e0 in range(start, end, BE):
            offs_e = e0 + tl.arange(0, BE)
            e_ok = offs_e < end
            c = tl.load(col_ptr + offs_e, mask=e_ok, other=0)
            d = _edge_dots(a_ptr + row * F, b_ptr, c, e_ok, F, CT, BE, BF)
            tl.store(out_ptr + offs_e, d.to(out_ptr.dtype.element_ty), mask=e_ok)


@triton.jit
def _attention_fwd_kernel(rowptr_ptr, col_ptr, val_ptr, q_ptr, k_ptr, v_ptr, c_ptr, out_ptr, lse_ptr,
                          R, FQ, FV, rows_per_prog, n_vtiles,
                          HAS_VALUE: tl.constexpr, CT: tl.constexpr,
                          BE: tl.constexpr, BQ: tl.constexpr, BV: tl.constexpr):
    pid = tl.program_id(0)
    rb = pid // n_vtiles
    vt = pid % n_vtiles
    offs_v = vt * BV + tl.arange(0, BV)
    v_ok = offs_v < FV
    scale = tl.load(c_ptr)
    r0, r1 = _row_range(rb, rows_per_prog, R)
    for row in range(r0, r1):
        start = tl.load(rowptr_ptr + row)
        end = tl.load(rowptr_ptr + row + 1)
        m = tl.full((), float("-inf"), CT)  # running max of the unmasked logits
        l = tl.zeros((), dtype=CT)  # running Σ exp(s − m)
        acc = tl.zeros((BE, BV), dtype=CT)  # running Σ exp(s − m)·v, reduced over lanes at the end
        for e0 in range(start, end, BE):
            offs_e = e0 + tl.arange(0, BE)
            e_ok = offs_e < end
            c = tl.load(col_ptr + offs_e, mask=e_ok, other=0)
            s = _edge_logits(q_ptr + row * FQ, k_ptr, val_ptr, offs_e, c, e_ok, scale, FQ,
                             HAS_VALUE, CT, BE, BQ)
            keep = e_ok & (s != 0.0)  # exactly-zero logits are masked (propagation_math.h)
            s = tl.where(keep, s, float("-inf"))
            m_new = tl.maximum(m, tl.max(s, axis=0))
            # m_new is finite once the row has an unmasked edge; before that, subtracting 0
            # instead keeps exp(-inf) = 0 for rescale and p, and no -inf − -inf = nan arises
            m_sub = tl.where(m_new > float("-inf"), m_new, 0.0)
            rescale = tl.exp(m - m_sub)
            p = tl.exp(s - m_sub)
            l = l * rescale + tl.sum(p, axis=0)
            vv = tl.load(v_ptr + c[:, None] * FV + offs_v[None, :], mask=e_ok[:, None] & v_ok[None, :],
                         other=0.0).to(CT)
            acc = acc * rescale + p[:, None] * vv
            m = m_new
        has = l > 0.0
        # an empty row has acc = 0 already: divide by 1 there (no vector where on a scalar
        # condition, which the interpreter mis-broadcasts)
        o = tl.sum(acc, axis=0) / tl.where(has, l, 1.0)
        tl.store(out_ptr + row * FV + offs_v, o.to(out_ptr.dtype.element_ty), mask=v_ok)
        lse = tl.where(has, m + tl.log(tl.where(has, l, 1.0)), float("-inf"))
        tl.store(lse_ptr + row, lse.to(lse_ptr.dtype.element_ty), mask=vt == 0)


@triton.jit
def _attention_bwd_kernel(rowptr_ptr, col_ptr, val_ptr, q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, go_ptr, c_ptr,
                          gq_ptr, gl_ptr, prob_ptr, R, FQ, FV, rows_per_prog, n_qtiles,
                          HAS_VALUE: tl.constexpr, CT: tl.constexpr,
                          BE: tl.constexpr, BQ: tl.constexpr, BV: tl.constexpr):
    pid = tl.program_id(0)
    rb = pid // n_qtiles
    qt = pid % n_qtiles
    offs_q = qt * BQ + tl.arange(0, BQ)
    q_ok = offs_q < FQ
    scale = tl.load(c_ptr)
    r0, r1 = _row_range(rb, rows_per_prog, R)
    for row in range(r0, r1):
        start = tl.load(rowptr_ptr + row)
        end = tl.load(rowptr_ptr + row + 1)
        lse = tl.load(lse_ptr + row).to(CT)
        # lse = -inf: no unmasked edge, every gradient is zero. Compared as a (BE,) vector: the
        # interpreter broadcasts a scalar comparison result with the wrong dtype.
        row_ok = (tl.zeros((BE,), dtype=CT) + lse) > float("-inf")
        first_tile = (tl.zeros((BE,), dtype=tl.int32) + qt) == 0  # one program writes prob, grad_logit
        lse_sub = tl.where(lse > float("-inf"), lse, 0.0)
        # delta_i = <grad_out_i, out_i>
        dacc = tl.zeros((BV,), dtype=CT)
        for f0 in range(0, FV, BV):
            offs_v = f0 + tl.arange(0, BV)
            v_ok = offs_v < FV
            go = tl.load(go_ptr + row * FV + offs_v, mask=v_ok, other=0.0).to(CT)
            o = tl.load(o_ptr + row * FV + offs_v, mask=v_ok, other=0.0).to(CT)
            dacc += go * o
        delta = tl.sum(dacc, axis=0)
        acc = tl.zeros((BE, BQ), dtype=CT)
        for e0 in range(start, end, BE):
            offs_e = e0 + tl.arange(0, BE)
            e_ok = offs_e < end
            c = tl.load(col_ptr + offs_e, mask=e_ok, other=0)
            s = _edge_logits(q_ptr + row * FQ, k_ptr, val_ptr, offs_e, c, e_ok, scale, FQ,
                             HAS_VALUE, CT, BE, BQ)
            keep = e_ok & (s != 0.0) & row_ok
            p = tl.exp(tl.where(keep, s, float("-inf")) - lse_sub)
            dp = _edge_dots(go_ptr + row * FV, v_ptr, c, e_ok, FV, CT, BE, BV)
            gl = tl.where(keep, p * (dp - delta), 0.0)
            first = e_ok & first_tile
            tl.store(prob_ptr + offs_e, p.to(prob_ptr.dtype.element_ty), mask=first)
            tl.store(gl_ptr + offs_e, gl.to(gl_ptr.dtype.element_ty), mask=first)
            coef = gl * scale
            if HAS_VALUE:
                coef = coef * tl.load(val_ptr + offs_e, mask=e_ok, other=0.0).to(CT)
            kk = tl.load(k_ptr + c[:, None] * FQ + offs_q[None, :], mask=e_ok[:, None] & q_ok[None, :],
                         other=0.0).to(CT)
            acc += coef[:, None] * kk
        tl.store(gq_ptr + row * FQ + offs_q, tl.sum(acc, axis=0).to(gq_ptr.dtype.element_ty), mask=q_ok)


@triton.jit
def _chain_filter_kernel(x_ptr, shift_ptr, tap_ptr, c_ptr, base_ptr, out_ptr, L, M, T, n_ltiles, n_mtiles,
                         HAS_BASE: tl.constexpr, CT: tl.constexpr, BL: tl.constexpr, BM: tl.constexpr):
    pid = tl.program_id(0)
    mt = pid % n_mtiles
    lt = (pid // n_mtiles) % n_ltiles
    bi = pid // (n_mtiles * n_ltiles)
    offs_t = lt.to(tl.int64) * BL + tl.arange(0, BL)
    offs_m = mt * BM + tl.arange(0, BM)
    t_ok = offs_t < L
    m_ok = offs_m < M
    plane = bi.to(tl.int64) * L * M
    acc = tl.zeros((BL, BM), dtype=CT)
    for j in range(T):  # nonzero in-range taps only, in tap order
        shift = tl.load(shift_ptr + j)
        tap = tl.load(tap_ptr + j)
        src = offs_t - shift
        ok = t_ok & (src >= 0) & (src < L)
        xt = tl.load(x_ptr + plane + src[:, None] * M + offs_m[None, :], mask=ok[:, None] & m_ok[None, :],
                     other=0.0).to(CT)
        acc += tap * xt
    o_off = plane + offs_t[:, None] * M + offs_m[None, :]
    mask = t_ok[:, None] & m_ok[None, :]
    if HAS_BASE:
        acc += tl.load(c_ptr) * tl.load(base_ptr + o_off, mask=mask, other=0.0).to(CT)
    tl.store(out_ptr + o_off, acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _chain_scan_kernel(x_ptr, out_ptr, L, M, n_mtiles,
                       REVERSE: tl.constexpr, CT: tl.constexpr, BL: tl.constexpr, BM: tl.constexpr):
    pid = tl.program_id(0)
    mt = pid % n_mtiles
    bi = pid // n_mtiles
    offs_m = mt * BM + tl.arange(0, BM)
    m_ok = offs_m < M
    plane = bi.to(tl.int64) * L * M
    carry = tl.zeros((BM,), dtype=CT)
    for c0 in range(0, L, BL):
        offs = c0 + tl.arange(0, BL)
        t_ok = offs < L
        if REVERSE:  # walk the chain from its end: the suffix sum is a prefix sum of the reversal
            t = (L - 1 - offs).to(tl.int64)
        else:
            t = offs.to(tl.int64)
        off = plane + t[:, None] * M + offs_m[None, :]
        mask = t_ok[:, None] & m_ok[None, :]
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


def _tile_budget(dtype: torch.dtype) -> int:
    """Elements of one register tile: 4096 (fp32 and halves), 2048 for fp64."""
    return 2048 if dtype == torch.float64 else 4096


def _feature_block(F: int, cap: int) -> int:
    if _INTERPRET:
        cap = _INTERPRET_BLOCKS["BF"]
    return max(1, min(_pow2(F), cap))


def _edge_block(rowptr: torch.Tensor, E: int, bf: int, dtype: torch.dtype) -> int:
    """Edges per chunk: about the average degree (a power of two in [8, 64]), within the budget."""
    if _INTERPRET:
        return _INTERPRET_BLOCKS["BE"]
    R = max(rowptr.numel() - 1, 1)
    want = _pow2(-(-E // R))
    fit = 1 << max(0, (_tile_budget(dtype) // max(bf, 1)).bit_length() - 1)  # a power of two
    return max(8, min(want, 64, fit))


def _num_warps(tile: int) -> int:
    """About 16 fp32 accumulator elements per thread: a power of two in [1, 8]."""
    if _INTERPRET:
        return 1
    return 1 << min(3, max(0, (tile // 512).bit_length() - 1))


def _row_blocks(R: int, other_tiles: int) -> Tuple[int, int]:
    """(rows per program, row blocks): one row a program on a GPU, a handful of programs under the
    interpreter (each program costs ~1 ms there); more rows a program where the grid would exceed
    its axis-0 limit."""
    if _FORCE_ROWS_PER_PROGRAM is not None:
        rpp = _FORCE_ROWS_PER_PROGRAM
    elif _INTERPRET:
        rpp = triton.cdiv(R, 8)
    else:
        rpp = 1
    rpp = max(rpp, triton.cdiv(R * other_tiles, _MAX_GRID))
    return rpp, triton.cdiv(R, rpp)


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
    be = _edge_block(rowptr, E, bf, x.dtype)
    n_ft = triton.cdiv(F, bf)
    rpp, n_rb = _row_blocks(R, n_ft)
    _spmm_kernel[(n_rb * n_ft,)](rowptr, col, val, x, base_arg, _scalars((alpha, beta), x), out,
                                 R, F, rpp, n_ft, HAS_VALUE=value is not None, HAS_BASE=base is not None,
                                 CT=_tl_dtype(x.dtype), BE=be, BF=bf, num_warps=_num_warps(be * bf))
    return out


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
    be = _edge_block(rowptr, E, bf, a.dtype)
    rpp, n_rb = _row_blocks(R, 1)
    _sddmm_kernel[(n_rb,)](rowptr, col, a, b, out, R, F, rpp, CT=_tl_dtype(a.dtype), BE=be, BF=bf,
                           num_warps=_num_warps(be * bf))
    return out


def _attention_blocks(rowptr, E, FQ, FW, dtype):
    """(BE, BQ, BW): edge chunk, q/k chunk and the tile of the wide per-row output (v in the
    forward, q in the backward)."""
    f64 = dtype == torch.float64
    bq = _feature_block(FQ, 32 if f64 else 64)
    bw = _feature_block(FW, 64 if f64 else 128)
    be = _edge_block(rowptr, E, bq + bw, dtype)  # two (BE, ·) tiles live at once
    return be, bq, bw


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
    be, bq, bv = _attention_blocks(rowptr, E, FQ, FV, q.dtype)
    n_vt = max(1, triton.cdiv(FV, bv))  # FV = 0 still needs lse
    rpp, n_rb = _row_blocks(R, n_vt)
    _attention_fwd_kernel[(n_rb * n_vt,)](rowptr, col, val, q, k, v, _scalars((scale,), q), _nonempty(out), lse,
                                          R, FQ, FV, rpp, n_vt, HAS_VALUE=value is not None,
                                          CT=_tl_dtype(q.dtype), BE=be, BQ=bq, BV=bv,
                                          num_warps=_num_warps(be * (bq + bv)))
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
    be, bv, bq = _attention_blocks(rowptr, E, FV, FQ, q.dtype)  # dprob chunks over v, grad_q tiles over q
    n_qt = max(1, triton.cdiv(FQ, bq))  # FQ = 0 still needs prob and grad_logit
    rpp, n_rb = _row_blocks(R, n_qt)
    _attention_bwd_kernel[(n_rb * n_qt,)](rowptr, col, val, q, k, v, out, lse, grad_out, _scalars((scale,), q),
                                          _nonempty(grad_q), grad_logit, prob, R, FQ, FV, rpp, n_qt,
                                          HAS_VALUE=value is not None, CT=_tl_dtype(q.dtype),
                                          BE=be, BQ=bq, BV=bv, num_warps=_num_warps(be * (bq + bv)))
    return grad_q, grad_logit, prob


def _chain_blocks(L: int, M: int, dtype: torch.dtype) -> Tuple[int, int]:
    if _INTERPRET:
        return (max(1, min(_pow2(L), _INTERPRET_BLOCKS["BL"])), max(1, min(_pow2(M), _INTERPRET_BLOCKS["BM"])))
    bm = max(1, min(_pow2(M), 64))
    bl = max(1, min(_pow2(L), _tile_budget(dtype) // 2 // bm))
    return bl, bm


def _check_grid(programs: int, what: str) -> None:
    if programs > _MAX_GRID:
        raise ValueError(f"{what}: {programs} programs exceed the grid limit {_MAX_GRID}")


@_on_device_of("x")
def chain_filter(x: torch.Tensor, taps: List[float], first_offset: int, base: Optional[torch.Tensor],
                 beta: float) -> torch.Tensor:
    """out[:, t] = Σ_j taps[j]·x[:, t − (first_offset + j)] (zero outside 0 … L−1) + beta·base[:, t],
    for x (b, L, m): (b, L, m) in x's dtype. Zero taps and taps shifted by |first_offset + j| ≥ L
    are skipped, as in the reference."""
    _check_floating("x", x, 3)
    taps = [float(t) for t in taps]
    if len(taps) == 0:
        raise ValueError("taps must hold at least one value, got 0")
    first_offset = int(first_offset)
    if base is not None:
        _check_same("base", base, "x", x)
        _check_shape("base", base, tuple(x.shape))
    Bn, L, M = x.shape
    out = torch.empty((Bn, L, M), dtype=x.dtype, device=x.device)
    if out.numel() == 0:
        return out
    kept = [(first_offset + j, tap) for j, tap in enumerate(taps) if tap != 0.0 and abs(first_offset + j) < L]
    x = x.contiguous()
    base_arg = base.contiguous() if base is not None else x
    if kept:
        shifts = _table_tensor(tuple(s for s, _ in kept), torch.int64, x.device)
        tap_t = _scalars([t for _, t in kept], x)
    else:  # no tap reaches the chain: out = beta·base (or 0) through the same kernel
        shifts, tap_t = _table_tensor((0,), torch.int64, x.device), _scalars((0.0,), x)
    bl, bm = _chain_blocks(L, M, x.dtype)
    n_lt, n_mt = triton.cdiv(L, bl), triton.cdiv(M, bm)
    programs = Bn * n_lt * n_mt
    _check_grid(programs, "chain_filter")
    _chain_filter_kernel[(programs,)](x, shifts, tap_t, _scalars((beta,), x), base_arg, out, L, M, len(kept),
                                      n_lt, n_mt, HAS_BASE=base is not None, CT=_tl_dtype(x.dtype),
                                      BL=bl, BM=bm, num_warps=_num_warps(bl * bm))
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
    bl, bm = _chain_blocks(L, M, x.dtype)
    n_mt = triton.cdiv(M, bm)
    programs = Bn * n_mt
    _check_grid(programs, "chain_scan")
    _chain_scan_kernel[(programs,)](x, out, L, M, n_mt, REVERSE=bool(reverse), CT=_tl_dtype(x.dtype),
                                    BL=bl, BM=bm, num_warps=_num_warps(bl * bm))
    return out


__all__ = ["spmm", "sddmm", "edge_attention", "edge_attention_backward", "chain_filter", "chain_scan"]
