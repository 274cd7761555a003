"""Drop-in torch.nn modules of the propagation family (graph and chain interdependence).

A module that holds a :class:`rpn2kernels.Graph` holds it as a sub-module: ``.to(device)`` moves
its CSR arrays and ``state_dict`` saves them.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from .. import functional as F
from ..chain import VARIANTS
from ..graph import Graph

PROPAGATIONS = ("powers", "pagerank")


def _check_graph_argument(graph) -> Graph:
    if not isinstance(graph, Graph):
        raise TypeError(f"graph must be a rpn2kernels.Graph, got {type(graph).__name__}")
    return graph


def _check_size(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return value


class GraphPropagation(nn.Module):
    """z = (Âᵀ)^h·x, Σ_{k≤h} (Âᵀ)^k·x (``accumulate``) or PageRank c·(I − (1−c)Âᵀ)^{-1}·x
    (``propagation="pagerank"``) over a fixed graph: (N, F) -> (N, F). No parameters."""

    def __init__(self, graph: Graph, hops: int = 1, accumulate: bool = False, *, propagation: str = "powers",
                 c: float = 0.15, tol: float = 1e-6, max_iter: Optional[int] = None,
                 backend: Optional[str] = None) -> None:
        super().__init__()
        if propagation not in PROPAGATIONS:
            raise ValueError(f"propagation must be one of {PROPAGATIONS}, got {propagation!r}")
        if not isinstance(hops, int) or hops < 1:
            raise ValueError(f"hops must be an int >= 1, got {hops!r}")
        self.graph = _check_graph_argument(graph)
        self.hops, self.accumulate, self.propagation = hops, accumulate, propagation
        self.c, self.backend = c, backend
        # The PageRank step count depends on the graph only: fixed once here (torch.compile then
        # sees a constant loop, no spectral-radius estimate in forward).
        self.steps = F.pagerank_steps(graph, c, tol, max_iter) if propagation == "pagerank" else None

    def forward(self, x: Tensor) -> Tensor:
        if self.propagation == "pagerank":
            return F.pagerank(self.graph, x, self.c, steps=self.steps, backend=self.backend)
        return F.propagate(self.graph, x, self.hops, self.accumulate, backend=self.backend)

    def extra_repr(self) -> str:
        if self.propagation == "pagerank":
            return f"propagation='pagerank', c={self.c}, steps={self.steps}"
        return f"hops={self.hops}, accumulate={self.accumulate}"


class GraphConv(nn.Module):
    """A GCN-style layer y = P(x)·Wᵀ + b with P the graph propagation of :class:`GraphPropagation`.

    P is linear, so P(x)·Wᵀ = P(x·Wᵀ); the layer aggregates the narrower of the two
    (transform-before-aggregate when out_features < in_features), which also makes backward save
    N×min(m, n) instead of N×m. Results differ from the other order only by rounding. The dense
    transform is :func:`rpn2kernels.functional.narrow_linear`.
    """

    def __init__(self, in_features: int, out_features: int, graph: Graph, hops: int = 1, accumulate: bool = False,
                 *, bias: bool = True, propagation: str = "powers", c: float = 0.15, tol: float = 1e-6,
                 backend: Optional[str] = None, device=None, dtype=None) -> None:
        super().__init__()
        self.in_features = _check_size(in_features, "in_features")
        self.out_features = _check_size(out_features, "out_features")
        self.propagate = GraphPropagation(graph, hops, accumulate, propagation=propagation, c=c, tol=tol,
                                          backend=backend)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **factory))
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear's initialisation
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        # The dense transform takes narrow_linear's own default (the compiled CPU kernel where it
        # beats the BLAS on these narrow shapes, torch's GEMM elsewhere; cuBLAS on CUDA) unless
        # backend="reference": the module's backend names the propagation's kernels, which
        # narrow_linear may not have (triton).
        linear_backend = "reference" if self.propagate.backend == "reference" else None
        if self.out_features < self.in_features:
            y = self.propagate(F.narrow_linear(x, self.weight, backend=linear_backend))
            return y if self.bias is None else y + self.bias
        return F.narrow_linear(self.propagate(x), self.weight, self.bias, backend=linear_backend)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class EdgeAttention(nn.Module):
    """GAT-style attention on the graph's edges (tinyBIG's hybrid interdependence, §5.11):

        s_{u→v} = scale·Â[u, v]·x_uᵀ·W·x_v,   α = masked softmax over v's incoming edges,
        z_v = Σ_u α_{u→v}·x_u

    with W full (in_features²) or low-rank U·V (``rank=r``: 2·in_features·r parameters; the
    logits are then <Uᵀx_u, V x_v>, never forming W). (N, in_features) -> (N, in_features);
    no N×N tensor is formed in forward or backward.
    """

    def __init__(self, in_features: int, graph: Graph, *, rank: Optional[int] = None, scale: float = 1.0,
                 use_edge_values: bool = True, backend: Optional[str] = None, device=None, dtype=None) -> None:
        super().__init__()
        self.in_features = _check_size(in_features, "in_features")
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
            raise ValueError(f"rank must be None or an int >= 1, got {rank!r}")
        self.graph = _check_graph_argument(graph)
        self.rank, self.scale, self.use_edge_values, self.backend = rank, scale, use_edge_values, backend
        factory = {"device": device, "dtype": dtype}
        if rank is None:
            self.weight = nn.Parameter(torch.empty(in_features, in_features, **factory))
        else:
            self.u = nn.Parameter(torch.empty(in_features, rank, **factory))
            self.v = nn.Parameter(torch.empty(rank, in_features, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in self.parameters():
            bound = 1.0 / math.sqrt(max(1, p.shape[0]))
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        # the projections are narrow_linear's (its own default backend; see GraphConv)
        linear_backend = "reference" if self.backend == "reference" else None
        if self.rank is None:  # x_uᵀ·W·x_v = <x_u, W·x_v>
            keys, queries = x, F.narrow_linear(x, self.weight, backend=linear_backend)
        else:  # rank-r projections: the narrow side is r
            keys = F.narrow_linear(x, self.u.t(), backend=linear_backend)
            queries = F.narrow_linear(x, self.v, backend=linear_backend)
        return F.edge_attention(self.graph, queries, keys, x, self.scale, use_edge_values=self.use_edge_values,
                                backend=self.backend)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, rank={self.rank}, scale={self.scale}"


class ChainPropagation(nn.Module):
    """Chain interdependence over the L positions of (b, L, m) inputs (functions.md §5.4):
    filters, stencils and scans, never an L×L matrix. See :func:`rpn2kernels.functional.chain_propagate`."""

    def __init__(self, variant: str = "plain", hops: int = 1, *, bidirectional: bool = False,
                 self_dependence: bool = True, self_scaling: float = 1.0, accumulative: bool = False,
                 backend: Optional[str] = None) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if not isinstance(hops, int) or hops < 1:
            raise ValueError(f"hops must be an int >= 1, got {hops!r}")
        self.variant, self.hops, self.bidirectional = variant, hops, bidirectional
        self.self_dependence, self.self_scaling, self.accumulative = self_dependence, self_scaling, accumulative
        self.backend = backend

    def forward(self, x: Tensor) -> Tensor:
        return F.chain_propagate(x, self.variant, self.hops, bidirectional=self.bidirectional,
                                 self_dependence=self.self_dependence, self_scaling=self.self_scaling,
                                 accumulative=self.accumulative, backend=self.backend)

    def extra_repr(self) -> str:
        return (f"variant={self.variant!r}, hops={self.hops}, bidirectional={self.bidirectional}, "
                f"self_dependence={self.self_dependence}, accumulative={self.accumulative}")
