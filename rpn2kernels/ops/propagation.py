"""Python side of the propagation ops: Triton twins, fake kernels, autograd, and the graph ops.

Two layers:

* **Kernel ops** (schemas in csrc/ops.cpp; CPU/CUDA kernels in csrc/, Triton twins
  ``rpn2kernels::triton_*`` here): ``spmm``, ``pagerank_iterate``, ``sddmm``, ``edge_attention``,
  ``edge_attention_backward``, ``chain_filter``, ``chain_scan``. The chain ops carry their own
  autograd (their adjoints need no extra structure). The CSR kernels are differentiated through:
* **Graph ops** (``rpn2kernels::graph_spmm``, ``graph_attention``, ``pagerank``), which take the
  cached transposed CSR as inputs and whose backward is transposed SpMMs and SDDMMs of the kernel
  ops — no scatter, no float atomics, nothing but the inputs saved. They are custom ops, so
  ``torch.compile`` treats each as one node and ``opcheck`` covers them.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .. import _extension
from ..reference import propagation as reference
from ._ad_modes import refuse_double_backward, refuse_forward_ad

# ---------------------------------------------------------------------------------------------
# Triton twins of the kernel ops (the kernel module is imported on first call, after the user
# has set TRITON_INTERPRET).


def _triton_kernels():
    from ..triton import propagation as kernels

    return kernels


@torch.library.custom_op("rpn2kernels::triton_spmm", mutates_args=())
def triton_spmm(rowptr: Tensor, col: Tensor, value: Optional[Tensor], x: Tensor, base: Optional[Tensor],
                alpha: float, beta: float) -> Tensor:
    return _triton_kernels().spmm(rowptr, col, value, x, base, alpha, beta)


@torch.library.custom_op("rpn2kernels::triton_pagerank_iterate", mutates_args=())
def triton_pagerank_iterate(rowptr: Tensor, col: Tensor, value: Optional[Tensor], x: Tensor, c: float,
                            iterations: int) -> Tensor:
    # no launch to save here: each step is one Triton launch from Python either way
    return _triton_kernels().pagerank_iterate(rowptr, col, value, x, c, iterations)


@torch.library.custom_op("rpn2kernels::triton_sddmm", mutates_args=())
def triton_sddmm(rowptr: Tensor, col: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return _triton_kernels().sddmm(rowptr, col, a, b)


@torch.library.custom_op("rpn2kernels::triton_edge_attention", mutates_args=())
def triton_edge_attention(rowptr: Tensor, col: Tensor, value: Optional[Tensor], q: Tensor, k: Tensor, v: Tensor,
                          scale: float) -> Tuple[Tensor, Tensor]:
    return _triton_kernels().edge_attention(rowptr, col, value, q, k, v, scale)


@torch.library.custom_op("rpn2kernels::triton_edge_attention_backward", mutates_args=())
def triton_edge_attention_backward(rowptr: Tensor, col: Tensor, value: Optional[Tensor], q: Tensor, k: Tensor,
                                   v: Tensor, out: Tensor, lse: Tensor, grad_out: Tensor,
                                   scale: float) -> Tuple[Tensor, Tensor, Tensor]:
    return _triton_kernels().edge_attention_backward(rowptr, col, value, q, k, v, out, lse, grad_out, scale)


@torch.library.custom_op("rpn2kernels::triton_chain_filter", mutates_args=())
def triton_chain_filter(x: Tensor, taps: List[float], first_offset: int, base: Optional[Tensor],
                        beta: float, odd_reflect: bool = False) -> Tensor:
    return _triton_kernels().chain_filter(x, list(taps), first_offset, base, beta, odd_reflect)


@torch.library.custom_op("rpn2kernels::triton_chain_scan", mutates_args=())
def triton_chain_scan(x: Tensor, reverse: bool) -> Tensor:
    return _triton_kernels().chain_scan(x, reverse)


# ---------------------------------------------------------------------------------------------
# Fake kernels, shared by the compiled and the Triton op of each kind.

def _fake_spmm(rowptr, col, value, x, base, alpha, beta):
    return x.new_empty((rowptr.shape[0] - 1, x.shape[1]))


def _fake_pagerank_iterate(rowptr, col, value, x, c, iterations):
    return x.new_empty(x.shape)


def _fake_sddmm(rowptr, col, a, b):
    return a.new_empty((col.shape[0],))


def _fake_edge_attention(rowptr, col, value, q, k, v, scale):
    rows = rowptr.shape[0] - 1
    return v.new_empty((rows, v.shape[1])), q.new_empty((rows,), dtype=reference.lse_dtype(q.dtype))


def _fake_edge_attention_backward(rowptr, col, value, q, k, v, out, lse, grad_out, scale):
    return q.new_empty(q.shape), q.new_empty((col.shape[0],)), q.new_empty((col.shape[0],))


def _fake_chain_filter(x, taps, first_offset, base, beta, odd_reflect=False):
    return x.new_empty(x.shape)


def _fake_chain_scan(x, reverse):
    return x.new_empty(x.shape)


def _register_chain_autograd(prefix: str) -> None:
    ns = torch.ops.rpn2kernels
    chain_filter = getattr(ns, f"{prefix}chain_filter")
    chain_scan = getattr(ns, f"{prefix}chain_scan")

    def filter_setup(ctx, inputs, output):
        x, taps, first_offset, base, beta = inputs[:5]
        ctx.taps, ctx.first_offset, ctx.beta = list(taps), first_offset, beta
        ctx.odd_reflect = bool(inputs[5]) if len(inputs) > 5 else False

    backend = "triton" if prefix else None

    def filter_backward(ctx, grad):
        refuse_forward_ad(f"rpn2kernels::{prefix}chain_filter", backend or grad.device.type, grad)
        grad = grad.contiguous()
        grad_x = grad_base = None
        if ctx.needs_input_grad[0]:  # the adjoint: reversed taps, mirrored offsets (with odd_reflect the
            # taps are centred and symmetric, so this is the same pass: f(S_sym) is symmetric)
            grad_x = chain_filter(grad, ctx.taps[::-1], -(ctx.first_offset + len(ctx.taps) - 1), None, 0.0,
                                  ctx.odd_reflect)
        if ctx.needs_input_grad[3]:
            grad_base = grad * ctx.beta
        return grad_x, None, None, grad_base, None, None

    def scan_setup(ctx, inputs, output):
        ctx.reverse = inputs[1]

    def scan_backward(ctx, grad):
        refuse_forward_ad(f"rpn2kernels::{prefix}chain_scan", backend or grad.device.type, grad)
        return chain_scan(grad.contiguous(), not ctx.reverse), None

    torch.library.register_autograd(f"rpn2kernels::{prefix}chain_filter", filter_backward, setup_context=filter_setup)
    torch.library.register_autograd(f"rpn2kernels::{prefix}chain_scan", scan_backward, setup_context=scan_setup)


def _register(prefix: str) -> None:
    for name, fake in (("spmm", _fake_spmm), ("pagerank_iterate", _fake_pagerank_iterate), ("sddmm", _fake_sddmm),
                       ("edge_attention", _fake_edge_attention),
                       ("edge_attention_backward", _fake_edge_attention_backward),
                       ("chain_filter", _fake_chain_filter), ("chain_scan", _fake_chain_scan)):
        torch.library.register_fake(f"rpn2kernels::{prefix}{name}")(fake)
    _register_chain_autograd(prefix)


_register("triton_")
if _extension.extension_loaded():
    _register("")


# ---------------------------------------------------------------------------------------------
# Kernel calls on an already chosen backend.

def _kernel(name: str, backend: str):
    if backend in ("cpu", "cuda"):
        return getattr(torch.ops.rpn2kernels, name)
    if backend == "triton":
        return getattr(torch.ops.rpn2kernels, f"triton_{name}")
    raise ValueError(f"backend must be one of 'cpu', 'cuda', 'triton' for kernel {name!r}, got {backend!r}")


def spmm_kernel(rowptr, col, value, x, base, alpha, beta, backend: str) -> Tensor:
    if backend == "reference":
        return reference.spmm(rowptr, col, value, x, base, alpha, beta)
    return _kernel("spmm", backend)(rowptr, col, value, x, base, float(alpha), float(beta))


def sddmm_kernel(rowptr, col, a, b, backend: str) -> Tensor:
    if backend == "reference":
        return reference.sddmm(rowptr, col, a, b)
    return _kernel("sddmm", backend)(rowptr, col, a, b)


def chain_filter(x: Tensor, taps: Sequence[float], first_offset: int, base: Optional[Tensor], beta: float,
                 backend: str, odd_reflect: bool = False) -> Tensor:
    if backend == "reference":
        return reference.chain_filter(x, taps, first_offset, base, beta, odd_reflect)
    return _kernel("chain_filter", backend)(x, [float(t) for t in taps], int(first_offset), base, float(beta),
                                            bool(odd_reflect))


def chain_scan(x: Tensor, reverse: bool, backend: str) -> Tensor:
    if backend == "reference":
        return reference.chain_scan(x, reverse)
    return _kernel("chain_scan", backend)(x, bool(reverse))


# ---------------------------------------------------------------------------------------------
# Graph ops: the CSR of P plus its cached transpose as inputs — (t_rowptr, t_col, t_value) for
# SpMM and PageRank, whose backward is a transposed SpMM; (t_rowptr, t_col, t_perm) for attention,
# whose backward moves per-edge quantities computed at run time into the transposed order.

@torch.library.custom_op("rpn2kernels::graph_spmm", mutates_args=())
def graph_spmm(rowptr: Tensor, col: Tensor, value: Optional[Tensor], t_rowptr: Tensor, t_col: Tensor,
               t_value: Optional[Tensor], x: Tensor, base: Optional[Tensor], alpha: float, beta: float,
               backend: str) -> Tensor:
    """alpha·P·x + beta·base with P the CSR (rowptr, col, value); differentiable in x, base, value.
    (t_rowptr, t_col, t_value) is the CSR of Pᵀ with t_value = value[t_perm] (None when value is)."""
    return spmm_kernel(rowptr, col, value, x.contiguous(), None if base is None else base.contiguous(), alpha, beta,
                       backend)


@graph_spmm.register_fake
def _(rowptr, col, value, t_rowptr, t_col, t_value, x, base, alpha, beta, backend):
    return x.new_empty((rowptr.shape[0] - 1, x.shape[1]))


def _graph_spmm_setup(ctx, inputs, output):
    rowptr, col, value, t_rowptr, t_col, t_value, x, base, alpha, beta, backend = inputs
    # x is needed only for the edge-value gradient; otherwise nothing but the structure is kept.
    ctx.save_for_backward(rowptr, col, value, t_rowptr, t_col, t_value,
                          x if value is not None and ctx.needs_input_grad[2] else None)
    ctx.alpha, ctx.beta, ctx.backend = alpha, beta, backend


def _graph_spmm_backward(ctx, grad):
    refuse_forward_ad("rpn2kernels::graph_spmm", ctx.backend, grad)
    rowptr, col, value, t_rowptr, t_col, t_value, x = ctx.saved_tensors
    grad = grad.contiguous()
    grad_value = grad_x = grad_base = None
    if ctx.needs_input_grad[6]:
        if torch.is_grad_enabled():
            # create_graph=True: the same op on the transpose (whose transpose is P), which is
            # differentiable in grad, so double backward in x is exact on every backend.
            grad_x = graph_spmm(t_rowptr, t_col, t_value, rowptr, col, value, grad, None, ctx.alpha, 0.0,
                                ctx.backend)
        else:  # the kernel directly: the custom op's dispatch costs ≈ 50 µs per call
            grad_x = spmm_kernel(t_rowptr, t_col, t_value, grad, None, ctx.alpha, 0.0, ctx.backend)
    if ctx.needs_input_grad[7]:
        grad_base = grad * ctx.beta
    if ctx.needs_input_grad[2]:
        refuse_double_backward("rpn2kernels::graph_spmm", ctx.backend, "with respect to the edge values")
        grad_value = sddmm_kernel(rowptr, col, grad, x.contiguous(), ctx.backend) * ctx.alpha
    return None, None, grad_value, None, None, None, grad_x, grad_base, None, None, None


torch.library.register_autograd("rpn2kernels::graph_spmm", _graph_spmm_backward, setup_context=_graph_spmm_setup)


def _attention_kernels(backend: str):
    if backend == "reference":
        return reference.edge_attention, None
    return _kernel("edge_attention", backend), _kernel("edge_attention_backward", backend)


@torch.library.custom_op("rpn2kernels::graph_attention", mutates_args=())
def graph_attention(rowptr: Tensor, col: Tensor, value: Optional[Tensor], t_rowptr: Tensor, t_col: Tensor,
                    t_perm: Tensor, q: Tensor, k: Tensor, v: Tensor, scale: float,
                    backend: str) -> Tuple[Tensor, Tensor]:
    """Edge attention over the CSR rows (targets): returns (out, lse); see the edge_attention schema."""
    forward, _ = _attention_kernels(backend)
    return forward(rowptr, col, value, q.contiguous(), k.contiguous(), v.contiguous(), float(scale))


@graph_attention.register_fake
def _(rowptr, col, value, t_rowptr, t_col, t_perm, q, k, v, scale, backend):
    return _fake_edge_attention(rowptr, col, value, q, k, v, scale)


def _graph_attention_setup(ctx, inputs, output):
    rowptr, col, value, t_rowptr, t_col, t_perm, q, k, v, scale, backend = inputs
    out, lse = output
    ctx.save_for_backward(rowptr, col, value, t_rowptr, t_col, t_perm, q, k, v, out, lse)
    ctx.scale, ctx.backend = scale, backend


def _graph_attention_backward(ctx, grad_out, grad_lse):
    rowptr, col, value, t_rowptr, t_col, t_perm, q, k, v, out, lse = ctx.saved_tensors
    backend = ctx.backend
    refuse_double_backward("rpn2kernels::graph_attention", backend)
    refuse_forward_ad("rpn2kernels::graph_attention", backend, grad_out)
    _, backward = _attention_kernels(backend)
    grad_out = grad_out.contiguous()
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    if backward is None:  # reference: the same per-edge quantities from the definition
        grad_q, grad_logit, prob = _reference_attention_backward(rowptr, col, value, q, k, v, out, lse, grad_out,
                                                                 ctx.scale)
    else:
        grad_q, grad_logit, prob = backward(rowptr, col, value, q, k, v, out, lse, grad_out, float(ctx.scale))
    coef = grad_logit * ctx.scale if value is None else grad_logit * (ctx.scale * value)
    grad_k = grad_v = grad_value = None
    if ctx.needs_input_grad[7]:  # grad_k[u] = Σ_{edges u→i} coef_e·q_i: SpMM over the transpose
        grad_k = spmm_kernel(t_rowptr, t_col, coef[t_perm], q, None, 1.0, 0.0, backend)
    if ctx.needs_input_grad[8]:
        grad_v = spmm_kernel(t_rowptr, t_col, prob[t_perm], grad_out, None, 1.0, 0.0, backend)
    if ctx.needs_input_grad[2]:
        grad_value = grad_logit * ctx.scale * sddmm_kernel(rowptr, col, q, k, backend)
    return (None, None, grad_value, None, None, None, grad_q if ctx.needs_input_grad[6] else None, grad_k, grad_v,
            None, None)


def _reference_attention_backward(rowptr, col, value, q, k, v, out, lse, grad_out, scale):
    rows = reference.csr_rows(rowptr)
    logit = (q[rows] * k[col]).sum(1) * scale
    if value is not None:
        logit = logit * value
    row_lse = lse[rows].to(logit.dtype)
    prob = torch.where((logit != 0) & torch.isfinite(row_lse), torch.exp(logit - row_lse), torch.zeros_like(logit))
    delta = (grad_out * out).sum(1)
    grad_logit = prob * ((grad_out[rows] * v[col]).sum(1) - delta[rows])
    coef = grad_logit * scale if value is None else grad_logit * scale * value
    grad_q = q.new_zeros(q.shape).index_add(0, rows, coef.unsqueeze(1) * k[col])
    return grad_q, grad_logit, prob


torch.library.register_autograd("rpn2kernels::graph_attention", _graph_attention_backward,
                                setup_context=_graph_attention_setup)


# ---------------------------------------------------------------------------------------------
# PageRank by power iteration; its x-gradient is the same iteration on the transpose, its
# edge-value gradient a checkpointed reverse sweep.

def pagerank_iterations(c: float, tol: float) -> int:
    """Steps T with (1−c)^{T+1} ≤ tol: the a-priori bound of §5.5 for norm-bounded operators."""
    if not 0.0 < c <= 1.0:
        raise ValueError(f"c must be in (0, 1], got {c}")
    if c == 1.0:
        return 0
    return max(0, math.ceil(math.log(tol) / math.log(1.0 - c)) - 1)


def _pagerank_iterate(rowptr, col, value, x, c, iterations, backend):
    return _kernel("pagerank_iterate", backend)(rowptr, col, value, x, float(c), int(iterations))


@torch.library.custom_op("rpn2kernels::pagerank", mutates_args=())
def pagerank(rowptr: Tensor, col: Tensor, value: Optional[Tensor], t_rowptr: Tensor, t_col: Tensor,
             t_value: Optional[Tensor], x: Tensor, c: float, iterations: int, backend: str) -> Tensor:
    """Z = c·Σ_{k=0}^{T} (1−c)^k P^k x by Z ← c·x + (1−c)·P·Z (one fused SpMM per step)."""
    return _pagerank_iterate(rowptr, col, value, x.contiguous(), c, iterations, backend)


@pagerank.register_fake
def _(rowptr, col, value, t_rowptr, t_col, t_value, x, c, iterations, backend):
    return x.new_empty((rowptr.shape[0] - 1, x.shape[1]))


def _pagerank_setup(ctx, inputs, output):
    rowptr, col, value, t_rowptr, t_col, t_value, x, c, iterations, backend = inputs
    # The edge-value gradient replays the iteration (checkpointed), so it needs x as well.
    values_grad = value is not None and ctx.needs_input_grad[2]
    ctx.save_for_backward(t_rowptr, t_col, t_value, rowptr, col, value, x if values_grad else None)
    ctx.c, ctx.iterations, ctx.backend = c, iterations, backend


def _pagerank_backward(ctx, grad):
    refuse_forward_ad("rpn2kernels::pagerank", ctx.backend, grad)
    t_rowptr, t_col, t_value, rowptr, col, value, x = ctx.saved_tensors
    grad = grad.contiguous()
    if ctx.needs_input_grad[2] and value is not None:
        refuse_double_backward("rpn2kernels::pagerank", ctx.backend, "with respect to the edge values")
        grad_value, grad_x = _pagerank_backward_with_values(rowptr, col, value, t_rowptr, t_col, t_value,
                                                            x.contiguous(), grad, ctx.c, ctx.iterations, ctx.backend)
        return (None, None, grad_value, None, None, None, grad_x if ctx.needs_input_grad[6] else None,
                None, None, None)
    if not ctx.needs_input_grad[6]:
        return (None,) * 10
    # The truncated series is a polynomial in P, so its adjoint is the same polynomial in Pᵀ: no
    # iterate is stored. Under create_graph=True it runs as the op itself on the transpose, which
    # is differentiable in grad (double backward in x is exact).
    if torch.is_grad_enabled():
        grad_x = pagerank(t_rowptr, t_col, t_value, rowptr, col, value, grad, ctx.c, ctx.iterations, ctx.backend)
    else:
        grad_x = _pagerank_iterate(t_rowptr, t_col, t_value, grad, ctx.c, ctx.iterations, ctx.backend)
    return None, None, None, None, None, None, grad_x, None, None, None


def _pagerank_backward_with_values(rowptr, col, value, t_rowptr, t_col, t_value, x, grad, c, iterations, backend):
    """Exact gradient of the truncated series Z_0 = c·x, Z_{t+1} = c·x + a·P·Z_t (a = 1−c) in P's
    values and in x, by reverse iteration: λ_T = G, dP += a·SDDMM(λ_{t+1}, Z_t), λ_t = a·Pᵀλ_{t+1},
    dx = c·Σ_t λ_t. The reverse sweep needs Z_t in reverse order; instead of storing all T iterates
    it keeps every S-th one (S ≈ √T) and replays each segment from its checkpoint, so the memory is
    about 2·√T·N·F and the cost one extra forward pass."""
    a = 1.0 - c
    segment = max(1, math.isqrt(max(iterations, 1) - 1) + 1)

    def step(z):
        return spmm_kernel(rowptr, col, value, z, x, a, c, backend)

    checkpoints = []  # Z_t for t = 0, S, 2S, … < T
    z = x * c
    for t in range(iterations):
        if t % segment == 0:
            checkpoints.append(z)
        if t + 1 < iterations:
            z = step(z)
    grad_value = torch.zeros_like(value)
    lam = grad
    grad_x = grad * c
    for k in reversed(range(len(checkpoints))):
        iterates = [checkpoints[k]]
        for _ in range(k * segment + 1, min((k + 1) * segment, iterations)):
            iterates.append(step(iterates[-1]))
        for z_t in reversed(iterates):
            grad_value += sddmm_kernel(rowptr, col, lam, z_t, backend) * a
            lam = spmm_kernel(t_rowptr, t_col, t_value, lam, None, a, 0.0, backend)
            grad_x += lam * c
    return grad_value, grad_x


torch.library.register_autograd("rpn2kernels::pagerank", _pagerank_backward, setup_context=_pagerank_setup)
