"""Public functions of rpn2kernels: validate the arguments, pick a backend, call the op.

Every function takes ``backend=None`` (see :mod:`rpn2kernels.backends` for the selection order and
``docs/backends.md`` for the support matrix).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.autograd.forward_ad as forward_ad
from torch import Tensor

from . import _extension
from ._autocast import autocast_policy
from .backends import requested_backend, select_backend
from .basis import basis_arguments, expansion_width
from .ops._ad_modes import refuse_forward_ad, through_linear
from . import chain as _chain
from .ops import expansion as _expansion_ops
from .ops import linear as _linear_ops
from .ops import propagation as _propagation_ops
from .reference import propagation as _propagation_reference

INPUT_NORMS = (None, "tanh")


def _check_tensor(t, name: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")


def _check_like(t: Tensor, name: str, x: Tensor) -> None:
    _check_tensor(t, name)
    if t.device != x.device:
        raise ValueError(f"{name} must be on x's device {x.device}, got {t.device}")
    if t.dtype != x.dtype:
        raise TypeError(f"{name} must have x's dtype {x.dtype}, got {t.dtype}")


def _prepare_input(x: Tensor, input_norm: Optional[str]) -> Tensor:
    _check_tensor(x, "x")
    if x.dim() < 1:
        raise ValueError(f"x must have at least 1 dim (..., m), got shape {tuple(x.shape)}")
    if input_norm not in INPUT_NORMS:
        raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {input_norm!r}")
    x2 = x.reshape(-1, x.shape[-1]) if x.dim() != 2 else x
    return torch.tanh(x2) if input_norm == "tanh" else x2


def expand(x: Tensor, basis: str = "chebyshev", degree: int = 2, *, backend: Optional[str] = None,
           input_norm: Optional[str] = None, **basis_params: float) -> Tensor:
    """κ(x), materialised: x of shape (..., m) -> (..., D).

    Args:
        x: input, last dim m attributes. Values outside a basis's natural domain are expanded as
            tinyBIG does (no range normalisation); ``input_norm="tanh"`` maps them into (-1, 1) first.
        basis, degree, basis_params: the basis (see :mod:`rpn2kernels.basis`), e.g.
            ``expand(x, "jacobi", 3, alpha=0.5, beta=1.0)``.
        backend: ``"cpu"``, ``"cuda"``, ``"triton"``, ``"reference"`` or None (automatic).
    """
    with autocast_policy("promote", x) as (x,):
        basis, degree, params = basis_arguments(basis, degree, **basis_params)
        x2 = _prepare_input(x, input_norm)
        chosen = select_backend("expand", x2.device, x2.dtype, backend)
        refuse_forward_ad("rpn2kernels.expand", chosen, x2)
        out = _expansion_ops.expand(x2, basis, degree, params, chosen)
        return out.reshape(*x.shape[:-1], out.shape[-1])


def expand_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, basis: str = "chebyshev",
                  degree: int = 2, *, backend: Optional[str] = None, input_norm: Optional[str] = None,
                  **basis_params: float) -> Tensor:
    """y = κ(x)·Wᵀ + b without materialising κ(x): x (..., m), weight (n, D), bias (n,) -> (..., n).

    D is :func:`rpn2kernels.basis.expansion_width` of the basis for m attributes; W's columns follow
    the basis layout (interleaved i*K + k, or Taylor's ordered-monomial blocks). Backward recomputes
    κ tile by tile: only x and W are saved.
    """
    with autocast_policy("gemm", x, weight, bias) as (x, weight, bias):
        basis, degree, params = basis_arguments(basis, degree, **basis_params)
        x2 = _prepare_input(x, input_norm)
        _check_like(weight, "weight", x2)
        D = expansion_width(basis, degree, params, x2.shape[1])
        if weight.dim() != 2 or weight.shape[1] != D:
            raise ValueError(f"weight must have shape (n, D={D}) for basis {basis!r}, degree {degree} and "
                             f"m={x2.shape[1]}, got {tuple(weight.shape)}")
        if bias is not None:
            _check_like(bias, "bias", x2)
            if bias.shape != (weight.shape[0],):
                raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
        chosen = select_backend("expand_linear", x2.device, x2.dtype, backend)
        refuse_forward_ad("rpn2kernels.expand_linear", chosen, x2, weight, bias)
        y = _expansion_ops.expand_linear(x2, weight, bias, basis, degree, params, chosen)
        return y.reshape(*x.shape[:-1], weight.shape[0])


__all__ = ["expand", "expand_linear"]


# =============================================================================================
# Dense transform (functions.md §3): the identity reconciliation's inner product, narrow layers.

#: narrow_linear's compiled CPU kernel is the CPU default where it measured faster than torch's GEMM
#: (MKL): with the AVX2+FMA loops, a narrow side (min(in, out) features) of at most this many, and
#: an x of at least NARROW_MIN_BYTES.
#: G1's layer at n=16 (N=2708, m=1433): x·Wᵀ, G·W, Gᵀ·x took 1.2, 1.8, 2.4 ms against MKL's 1.9,
#: 4.1, 3.6 ms; at n=64 the two were level (docs/backends.md).
NARROW_MAX_FEATURES = 32
#: Below this the kernel lost to MKL: its per-call costs (packing Wᵀ, the op's dispatch) are not
#: paid back while x fits in cache. Layer fwd+bwd, MKL ÷ kernel at 16 / 32 outputs: float32 x of
#: 1 KB–1 MB 0.55–0.98, 2 MB 0.84–1.03, 4 MB 1.05–1.25, 16 MB 1.48–1.82; float64 1–2 MB
#: 0.94–1.13, 4 MB 1.19 (docs/backends.md).
NARROW_MIN_BYTES = 4 << 20


def narrow_kernel_preferred(x: Tensor, weight: Tensor) -> bool:
    """Whether narrow_linear's default on these CPU tensors is the compiled kernel (else torch's GEMM)."""
    return (x.device.type == "cpu" and _extension.cpu_vector_kernels()
            and min(weight.shape[0], weight.shape[1]) <= NARROW_MAX_FEATURES
            and x.numel() * x.element_size() >= NARROW_MIN_BYTES)


def narrow_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, *, backend: Optional[str] = None) -> Tensor:
    """y = x·Wᵀ + b, as ``torch.nn.functional.linear``, for the dense transform of layers with a narrow
    side (a GCN layer's m → 16 features). x (..., in_features), weight (out_features, in_features).

    Backends: ``cpu`` — a register-tiled kernel whose backward reuses it for G·W and Gᵀ·x (the
    CPU BLAS runs these narrow shapes at a fraction of the machine's rate); ``cuda`` — cuBLAS;
    ``reference`` — ``F.linear``. With ``backend=None`` CPU tensors take the kernel only where it
    measured faster (:func:`narrow_kernel_preferred`), else ``F.linear``.
    """
    with autocast_policy("gemm", x, weight, bias) as (x, weight, bias):
        _check_tensor(x, "x")
        _check_like(weight, "weight", x)
        if bias is not None:
            _check_like(bias, "bias", x)
        if x.dim() < 1:
            raise ValueError(f"x must have at least 1 dim (..., in_features), got shape {tuple(x.shape)}")
        if weight.dim() != 2 or weight.shape[1] != x.shape[-1]:
            raise ValueError(f"weight must have shape (out_features, in_features={x.shape[-1]}), "
                             f"got {tuple(weight.shape)}")
        if bias is not None and tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
        chosen = select_backend("narrow_linear", x.device, x.dtype, backend)
        defaulted = requested_backend("narrow_linear", backend)[0] is None
        if defaulted and chosen == "cpu" and not narrow_kernel_preferred(x, weight):
            chosen = "reference"
        x2 = x.reshape(-1, x.shape[-1]) if x.dim() != 2 else x
        y = _narrow_linear_forward_ad(x2, weight, bias, chosen)
        return y.reshape(*x.shape[:-1], weight.shape[0]) if x.dim() != 2 else y


def _narrow_linear_forward_ad(x: Tensor, weight: Tensor, bias: Optional[Tensor], backend: str) -> Tensor:
    """The op; under forward-mode AD its bilinear tangent ẋ·Wᵀ + x·Ẇᵀ + ḃ from the same op."""
    if backend == "reference" or torch.compiler.is_compiling():
        return _linear_ops.narrow_linear(x, weight, bias, backend)
    (xp, xt), (wp, wt) = forward_ad.unpack_dual(x), forward_ad.unpack_dual(weight)
    bp, bt = forward_ad.unpack_dual(bias) if bias is not None else (None, None)
    if xt is None and wt is None and bt is None:
        return _linear_ops.narrow_linear(x, weight, bias, backend)
    terms = [_linear_ops.narrow_linear(xt, wp, None, backend) if xt is not None else None,
             _linear_ops.narrow_linear(xp, wt, None, backend) if wt is not None else None,
             bt.expand(xp.shape[0], -1) if bt is not None else None]
    tangent = sum(t for t in terms if t is not None)
    return forward_ad.make_dual(_linear_ops.narrow_linear(xp, wp, bp, backend), tangent)


__all__ += ["narrow_linear"]


# =============================================================================================
# Propagation family (functions.md §5.4, §5.5, §5.11): graph and chain interdependence.

def _check_graph(graph, x: Tensor, name: str = "x") -> None:
    from .graph import Graph

    if not isinstance(graph, Graph):
        raise TypeError(f"graph must be a rpn2kernels.Graph, got {type(graph).__name__}")
    _check_tensor(x, name)
    if x.dim() != 2:
        raise ValueError(f"{name} must have 2 dims (N, F), got shape {tuple(x.shape)}")
    if x.shape[0] != graph.num_nodes:
        raise ValueError(f"{name} must have one row per node: expected {graph.num_nodes} rows, got {x.shape[0]}")
    if graph.device != x.device:
        raise ValueError(f"{name} must be on the graph's device {graph.device}, got {x.device}")


def _graph_arrays(graph, dtype: torch.dtype):
    """(rowptr, col, value, t_rowptr, t_col, t_value) with the values in ``dtype`` (a float32 graph
    applied to float64 features is cast)."""
    value, t_value = graph.value, graph.t_value
    if value is not None and value.dtype != dtype:
        value, t_value = value.to(dtype), t_value.to(dtype)
    return graph.rowptr, graph.col, value, graph.t_rowptr, graph.t_col, t_value


def _graph_spmm(graph, x: Tensor, base: Optional[Tensor], alpha: float, beta: float, backend: str) -> Tensor:
    rowptr, col, value, t_rowptr, t_col, t_value = _graph_arrays(graph, x.dtype)
    if backend == "reference":  # plain autograd through the definition (double backward works)
        return _propagation_reference.spmm(rowptr, col, value, x, base, alpha, beta)
    return _propagation_ops.graph_spmm(rowptr, col, value, t_rowptr, t_col, t_value, x, base, alpha, beta, backend)


def propagate(graph, x: Tensor, hops: int = 1, accumulate: bool = False, *, backend: Optional[str] = None) -> Tensor:
    """(Âᵀ)^h·x, or Σ_{k=1}^{h} (Âᵀ)^k·x with ``accumulate=True``: h fused SpMM passes, never A^h.

    x: (N, F) node features. The accumulative sum runs by Horner, Y ← x + Âᵀ·Y, with the addition
    fused into each pass. Backward is the same passes over the cached transpose.
    """
    with autocast_policy("promote", x) as (x,):
        _check_graph(graph, x)
        if not isinstance(hops, int) or hops < 1:
            raise ValueError(f"hops must be an int >= 1, got {hops!r}")
        chosen = select_backend("spmm", x.device, x.dtype, backend)
        refuse_forward_ad("rpn2kernels.propagate", chosen, graph.value)
        return through_linear(lambda t: _propagate(graph, t, hops, accumulate, chosen), x, chosen)


def _propagate(graph, x: Tensor, hops: int, accumulate: bool, backend: str) -> Tensor:
    if not accumulate:
        for _ in range(hops):
            x = _graph_spmm(graph, x, None, 1.0, 0.0, backend)
        return x
    y = x
    for _ in range(hops - 1):
        y = _graph_spmm(graph, y, x, 1.0, 1.0, backend)
    return _graph_spmm(graph, y, None, 1.0, 0.0, backend)


def pagerank_steps(graph, c: float = 0.15, tol: float = 1e-6, max_iter: Optional[int] = None, *,
                   backend: Optional[str] = None) -> int:
    """Steps T of the PageRank series that reach ``tol``: the a-priori bound (1−c)^{T+1} ≤ tol for
    graphs normalised 'column', 'row' or 'symmetric' (‖Âᵀ‖ ≤ 1 in a matching norm, §5.5). Other
    graphs have no a-priori bound: ρ(Â) is estimated by power iteration and a divergent series
    ((1−c)·ρ ≥ 1) raises ValueError instead of returning garbage. ``max_iter`` caps T."""
    if not 0.0 < c <= 1.0:
        raise ValueError(f"c must be in (0, 1], got {c}")
    if not 0.0 < tol < 1.0:
        raise ValueError(f"tol must be in (0, 1), got {tol}")
    steps = _propagation_ops.pagerank_iterations(c, tol)
    if graph.normalization not in ("column", "row", "symmetric") and c < 1.0:
        radius, vanishes_at = _power_growth(graph, backend)
        if vanishes_at is not None:
            steps = vanishes_at  # Â is nilpotent: the series ends after these terms, exactly
        elif (1.0 - c) * radius >= 1.0:
            raise ValueError(f"pagerank diverges on this graph: (1-c)·ρ(Â) = {(1 - c) * radius:.4f} >= 1 "
                             f"(normalization={graph.normalization!r}); normalise the graph or raise c")
        else:
            steps = max(0, math.ceil(math.log(tol) / math.log((1.0 - c) * radius)))
    return steps if max_iter is None else min(steps, int(max_iter))


def pagerank(graph, x: Tensor, c: float = 0.15, *, tol: float = 1e-6, max_iter: Optional[int] = None,
             steps: Optional[int] = None, backend: Optional[str] = None) -> Tensor:
    """c·(I − (1−c)·Âᵀ)^{-1}·x by the power series c·Σ_k (1−c)^k (Âᵀ)^k x, never a dense inverse.

    Runs ``steps`` fused SpMM passes Z ← c·x + (1−c)·Âᵀ·Z, by default :func:`pagerank_steps` of
    (c, tol, max_iter) — pass ``steps`` precomputed to keep the call free of the spectral-radius
    estimate (as :class:`rpn2kernels.nn.GraphPropagation` does, so it compiles without graph breaks).
    Backward in x runs the same series on Â (no stored iterates); the graph's edge values, when they
    require grad, get the exact gradient of the truncated series by a checkpointed reverse sweep
    (docs/propagation.md).
    """
    with autocast_policy("promote", x) as (x,):
        _check_graph(graph, x)
        chosen = select_backend("spmm", x.device, x.dtype, backend)
        refuse_forward_ad("rpn2kernels.pagerank", chosen, graph.value)
        if steps is None:
            steps = pagerank_steps(graph, c, tol, max_iter, backend=chosen)
        elif not 0.0 < c <= 1.0:
            raise ValueError(f"c must be in (0, 1], got {c}")
        rowptr, col, value, t_rowptr, t_col, t_value = _graph_arrays(graph, x.dtype)
        if chosen == "reference":
            return _propagation_reference.pagerank_iterate(rowptr, col, value, x, c, steps)
        return through_linear(lambda t: _propagation_ops.pagerank(rowptr, col, value, t_rowptr, t_col, t_value, t,
                                                                  float(c), int(steps), chosen), x, chosen)


def _power_growth(graph, backend: Optional[str], iterations: int = 50):
    """(r, k0): r = ‖(|Â|ᵀ)^K·1‖∞^{1/K}, an upper estimate of ρ(Â) (Gelfand), and k0 the first
    power with (|Â|ᵀ)^k0·1 = 0 — then Â^k0 = 0 exactly (the start vector is positive) — or None."""
    if graph.device.type == "cpu":
        backend = None  # the structural estimate runs on the fastest CPU path (not the interpreter)
    chosen = select_backend("spmm", graph.device, torch.float64, backend)
    if graph.num_nodes == 0 or graph.num_edges == 0:
        return 0.0, 1
    z = torch.ones((graph.num_nodes, 1), dtype=torch.float64, device=graph.device)
    rowptr, col, value, *_ = _graph_arrays(graph, torch.float64)
    if value is not None:
        value = value.abs()
    log_norm = 0.0
    for k in range(1, iterations + 1):
        z = _propagation_ops.spmm_kernel(rowptr, col, value, z, None, 1.0, 0.0, chosen)
        norm = float(z.abs().max())
        if norm == 0.0:
            return 0.0, k
        log_norm += math.log(norm)
        z = z / norm
    return math.exp(log_norm / iterations), None


def spectral_radius(graph, iterations: int = 50, *, backend: Optional[str] = None) -> float:
    """An upper estimate of ρ(Â) by power iteration on a positive start vector (Gelfand's formula
    on ‖(|Â|ᵀ)^k·1‖∞); 0 for a nilpotent Â."""
    return _power_growth(graph, backend, iterations)[0]


def edge_attention(graph, q: Tensor, k: Tensor, v: Tensor, scale: float = 1.0, *, use_edge_values: bool = True,
                   backend: Optional[str] = None) -> Tensor:
    """GAT-style attention restricted to the graph's edges (functions.md §5.9, §5.11), no N×N tensor.

    For target v: logits s_{u→v} = scale·Â[u, v]·<q_v, k_u> over its incoming edges (Â[u, v] = 1
    with ``use_edge_values=False``), edges whose logit is exactly 0 masked (tinyBIG's [E ≠ 0]
    mask), softmax over the rest, out_v = Σ_u α_{u→v}·v_u; a node with no unmasked edge gets 0.
    q: (N, d), k: (N, d), v: (N, F) -> (N, F).
    """
    with autocast_policy("promote", q, k, v) as (q, k, v):
        _check_graph(graph, q, "q")
        _check_like(k, "k", q)
        _check_like(v, "v", q)
        if k.shape != q.shape:
            raise ValueError(f"k must have q's shape {tuple(q.shape)}, got {tuple(k.shape)}")
        if v.dim() != 2 or v.shape[0] != graph.num_nodes:
            raise ValueError(f"v must have shape (N={graph.num_nodes}, F), got {tuple(v.shape)}")
        chosen = select_backend("edge_attention", q.device, q.dtype, backend)
        refuse_forward_ad("rpn2kernels.edge_attention", chosen, q, k, v, graph.value)
        rowptr, col, value, t_rowptr, t_col, _ = _graph_arrays(graph, q.dtype)
        t_perm = graph.t_perm
        if not use_edge_values:
            value = None
        if chosen == "reference":
            return _propagation_reference.edge_attention(rowptr, col, value, q, k, v, scale)[0]
        out, _ = _propagation_ops.graph_attention(rowptr, col, value, t_rowptr, t_col, t_perm, q, k, v, float(scale),
                                                  chosen)
        return out


def chain_propagate(x: Tensor, variant: str = "plain", hops: int = 1, *, bidirectional: bool = False,
                    self_dependence: bool = True, self_scaling: float = 1.0, accumulative: bool = False,
                    backend: Optional[str] = None) -> Tensor:
    """Chain interdependence z_t = Σ_u A[u, t]·x_u on the (b, L, m) layout (functions.md §5.4).

    variant: ``"plain"`` (S + s·I), ``"multihop"`` ((S + I)^h, or Σ_j (S + I)^j with
    ``accumulative``; tinyBIG forces s = 1 here), ``"inverse_approx"`` ((I − S)^{-1}: a prefix sum;
    bi-directional: column-normalised Σ_k S_sym^k by DST-I) or ``"exponential_approx"`` (expm(S)).
    Filters, stencils and scans only — never an L×L matrix. x: (b, L, m) or (L, m).
    """
    with autocast_policy("promote", x) as (x,):
        _check_tensor(x, "x")
        if x.dim() not in (2, 3):
            raise ValueError(f"x must have shape (b, L, m) or (L, m), got {tuple(x.shape)}")
        if not isinstance(hops, int) or hops < 1:
            raise ValueError(f"hops must be an int >= 1, got {hops!r}")
        x3 = x.unsqueeze(0) if x.dim() == 2 else x
        chosen = select_backend("chain", x3.device, x3.dtype, backend)
        z = through_linear(lambda t: _chain.apply_chain(t, variant, hops, bidirectional, self_dependence,
                                                        float(self_scaling), accumulative, chosen), x3, chosen)
        return z.reshape(x.shape)


__all__ += ["propagate", "pagerank", "pagerank_steps", "spectral_radius", "edge_attention", "chain_propagate"]
