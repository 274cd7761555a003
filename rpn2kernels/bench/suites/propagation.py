"""Propagation family: G1–G5 and C1 of bench.md (graph and chain interdependence, functions.md §5.4,
§5.5, §5.11).

Graphs are deterministic seeded random graphs generated here (no downloads): each node's chance to be
an endpoint falls like (rank)^-1/2 (a Chung–Lu style degree skew, Cora-like: mean degree ≈ 4, max ≈ 100
at N = 2708), node labels randomly permuted so hubs carry no index locality. Link counts follow the
real data sets after symmetrisation: Cora 5,278 links → 10,556 directed entries, N = 10,000 with 20,000
links → 40,000 entries, Pubmed 44,324 links → 88,648 entries. G4 is a uniform random directed graph
(every gather of a 256-byte row misses the last-level cache, so the bytes model below is what moves).

Implementations, run side by side by the runner (``rpn2kernels.bench.runner``):

- ``ours``: :mod:`rpn2kernels.functional` (``propagate``, ``pagerank``, ``edge_attention``,
  ``chain_propagate``) with the compiled ``cpu`` backend (on CUDA the device default), on a
  :class:`rpn2kernels.graph.Graph` built once in setup (the steady state; G3 also measures the build).
- ``reference``: the same functions with ``backend='reference'`` (pure PyTorch gathers and
  index_add). In G4 the pure-PyTorch reference would take seconds per pass at 10 M edges, so the
  correctness oracle there is the peer (``torch.sparse.mm``, an independent implementation).
- ``tinybig``: tinyBIG 0.2.1's algorithm transcribed (functions.md §5.1, §5.4, §5.5, §5.11): links →
  scipy COO → torch sparse COO (``base_topology.to_matrix``), normalisation by densifying
  (``degree_based_normalize_matrix``), A^h by repeated sparse products with fill-in
  (``matrix_power`` / ``accumulative_matrix_power``), PageRank as ``c·inverse(I − (1−c)·Â)``, GAT as
  dense N×N tensors (``hybrid_interdependence``: Â densified, X·W·Xᵀ, ``prod_fusion`` via stack, masked
  column softmax, back to sparse COO), chains as dense L×L (uni-directional inverse) or sparse COO
  powers / ``matrix_exp(...).to_sparse_coo()``. A is data-independent, so tinyBIG caches it after the
  first call: the timed rows apply the cached A exactly as ``interdependence.forward`` does
  (``torch.sparse.mm(A.t(), X)`` for sparse A, ``torch.matmul(A.t(), X)`` for dense A; chains through
  the chain head's (b, L·m) → (L, b·m) permute and back). Its build time and fill-in are in the row's
  meta; G3's build + first call is measured separately (below).
- ``peer``: PyG (``torch_geometric``, a bench-only extra) ``GCNConv`` (G1), ``APPNP`` (G3), ``GATConv``
  (G5), fed the same normalised edge weights (``normalize=False``: the steady state of its
  ``cached=True`` mode) so that its output is value-checked where the function is the same; repeated
  ``torch.sparse.mm`` (G2 SGConv-style, G4). If PyG cannot be imported the row is absent and the case
  meta says why.
- ``floor``: G1 the dense GEMMs alone (``F.linear(x, W)``: x·Wᵀ, G·W, Gᵀ·x); G4 and C1 the STREAM
  triad moving the bytes of the case's bytes model (``torch.add(b, c, alpha=s, out=a)`` passes,
  forward and backward bytes separately): the roofline time measured side by side, so "ours within
  2× of it" is "≥ 50 % of STREAM" (the runner also reports achieved GB/s against its measured limit).

Rows too slow for the runner's repetitions (≥ 3 warm-up + 10 runs × 3 modes, and again in every
peak-memory child) are measured once per run instead: the runner calls :func:`suite_info` once, in the
main process (never in its peak-memory children), after the timed cases; case setups register what
they need there (``_ONE_SHOT``), and it runs in one fresh subprocess (``python -m
rpn2kernels.bench.suites.propagation --one-shot ...``), each item with its own peak memory (VmHWM
after clear_refs, as the runner's peak method). Their targets are evaluated there, printed before the
runner's table and written to the JSON's ``suite_info["one_shot"]`` / ``["one_shot_targets"]`` (not
to ``summary.targets_*``, which only counts runner rows):

- G3 build + first forward+backward of ours (Graph.from_edge_index + pagerank) and of tinyBIG (link
  list → topology → to_matrix with densified normalisation → dense ``inverse`` → first fwd+bwd): one
  tinyBIG build is ~25–55 s at N = 10,000 and minutes at Pubmed size on 2 cores. Ours' first call is
  also timed in two further fresh processes and the speedup uses the median of the three samples
  (``G3_FIRST_CALL_PROCESSES``; a single cold-process sample of ~0.1 s is at the mercy of the VM). Then the steady
  state, ours against tinyBIG's real cached A_pr (5 alternating fwd+bwd runs): at Pubmed size this is
  the only steady-state measurement (the runner case covers N = 10,000 in full mode: at Pubmed size
  its reference and APPNP rows alone took ~8 minutes of repetitions). Both code paths are
  first started on a 40-node graph (the first custom-op call of a fresh process imports torch._dynamo and
  sympy, ~1.5–2 s; reported as ``process_start_up``, kept out of the per-graph numbers).
- G3 agreement with the float64 dense solution: c·(I − (1−c)Â)^{-1} applied to x (output) and to G
  (gradient), obtained from tinyBIG's float32 dense inverse by float64 iterative refinement (float64
  residuals on the sparse system until ≤ 1e-13 relative); up to DENSE_ROW_MAX_N also against a literal
  float64 ``torch.inverse``.
- G5 above DENSE_ROW_MAX_N: tinyBIG's dense GAT (10–30 s and ~8 GB per fwd+bwd at N = 10,000) against
  ours, 3 alternating fwd+bwd runs with the runner case's own implementations, value-checked against
  the reference. Below it tinyBIG is a normal runner row. Either way, "ours forms no N×N tensor" is
  checked by recording the largest tensor any op produces during one fwd+bwd of ours
  (TorchDispatchMode), next to the peak memory.
- C1: the bi-directional inverse approximation at L = 4096 gives no NaN forward or backward, and
  matches an independent float64 computation (scaled Horner, no L×L matrix) on a small slice.

The G3 steady-state tinyBIG row applies tinyBIG's cached dense N×N A_pr with ``torch.matmul(A.t(),
X)``. Above DENSE_ROW_MAX_N building the real A_pr in every peak-memory child would cost a dense
inverse each, so there the timed matrix is a same-shape stand-in (a GEMM's time and memory do not
depend on its values) and the values are checked in the one-shot measurement instead.

The runner's saved-bytes hook reads ``untyped_storage()``, which sparse tensors lack; tensors saved by
``torch.sparse.mm`` (the cached sparse A itself) are therefore kept out of it (:func:`sparse_mm`).
"""
from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
import time
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..runner import RTOL, Case, Impl, Prepared, Target

Tensor = torch.Tensor

QUICK_NOTE = ("--quick shapes: G1/G2 as full (Cora-sized); G3 and G5 on an N=1,000 / 4,000-entry graph (full: "
              "N=10,000 / 40,000 and, G3 only, Pubmed-sized 19,717 / 88,648: tinyBIG's dense inverse at N=10,000 "
              "alone takes 25-55 s on 2 cores, its dense GAT 10-30 s per fwd+bwd); G4 N=100k, E=1M (full: 1M, "
              "10M); C1 L=120, b=16 (full: L=512, b=64; below L=128 tinyBIG's bi-directional inverse is still finite "
              "and value-checked), m=128; the L=4,096 no-NaN check as full (b=4, m=16); "
              "1 warm-up round and 5 runs (full: 3 and 10)")

C = 0.15          # PageRank restart probability (tinyBIG's default)
HOPS = 3
SKEW = 0.5        # endpoint probability ∝ rank^-SKEW

#: name: (N, links, undirected, seed). Link counts are before symmetrisation.
GRAPHS = {
    "cora": (2708, 5278, True, 101),
    "n10k": (10000, 20000, True, 102),
    "pubmed": (19717, 44324, True, 103),
    "n2k": (2000, 4000, True, 104),
    "n1k": (1000, 2000, True, 107),
    "tiny": (60, 150, True, 105),
    "tiny2": (40, 90, True, 106),
}

SIZES = {
    # G3: (graphs of the runner's steady-state case, graphs of the one-shot measurement, F)
    "full": {"G1": ("cora", 1433, (16, 64)), "G2": ("cora", 64), "G3": (("n10k",), ("n10k", "pubmed"), 64),
             "G4": (1_000_000, 10_000_000, 64), "G5": ("n10k", 64), "C1": (512, 64, 128),
             "C1_check": (4096, 4, 16)},
    "quick": {"G1": ("cora", 1433, (16, 64)), "G2": ("cora", 64), "G3": (("n1k",), ("n1k",), 64),
              "G4": (100_000, 1_000_000, 64), "G5": ("n1k", 64), "C1": (120, 16, 128),
              "C1_check": (4096, 4, 16)},
    "tiny": {"G1": ("tiny", 24, (4,)), "G2": ("tiny", 8), "G3": (("tiny2",), ("tiny2",), 8),
             "G4": (500, 3000, 8), "G5": ("tiny", 8), "C1": (24, 3, 5), "C1_check": (64, 3, 5)},
}

CHAIN_VARIANTS = ("multihop", "inverse_approx", "exponential_approx")

#: Up to this N tinyBIG's dense N×N rows (G3's cached A_pr, G5's GAT) are timed by the runner with the
#: real matrices; above it one build (a dense inverse) or one dense GAT fwd+bwd takes tens of seconds
#: on 2 cores, so G3's timed row applies a same-shape stand-in and G5's tinyBIG runs in suite_info.one_shot.
DENSE_ROW_MAX_N = 4000


# ------------------------------------------------------------------------------------------------
# ours: the backend actually timed


def resolve_ours_backends(device: torch.device) -> Dict[str, str]:
    """Backend of each op family "ours" runs on: ``cpu`` on CPU, the device default on CUDA. Refuses
    to time the reference as ours."""
    try:
        import rpn2kernels  # noqa: F401
        from rpn2kernels import backends
    except Exception as error:
        raise RuntimeError(f"the propagation benchmark needs rpn2kernels importable: {error}") from error
    wanted = "cpu" if device.type == "cpu" else None
    chosen = {}
    for family in ("spmm", "edge_attention", "chain"):
        try:
            chosen[family] = backends.select_backend(family, device, torch.float32, wanted)
        except backends.BackendUnavailable as error:
            raise RuntimeError(
                f"the propagation benchmark measures the compiled kernels, which cannot run here: {error}. "
                "Build the extension (`pip install --no-build-isolation -e .`).") from error
        if chosen[family] == "reference":
            raise RuntimeError(f"the {device.type} default backend of {family} resolved to 'reference' "
                               "(RPN2K_BACKEND set, or no compiled kernels); the benchmark refuses to time it as ours")
    return chosen


# ------------------------------------------------------------------------------------------------
# Deterministic random graphs


def _skewed_index(count: int, n: int, skew: float, g: torch.Generator) -> Tensor:
    u = torch.rand(count, generator=g, dtype=torch.float64)
    return (u.pow(1.0 / (1.0 - skew)) * n).long().clamp_(max=n - 1)


@functools.lru_cache(maxsize=8)
def graph_links(name: str) -> Tensor:
    """(2, links) int64 edge list of the named graph: exactly ``links`` distinct links without
    self-loops (u < v for undirected graphs), deterministic."""
    N, count, undirected, seed = GRAPHS[name]
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(N, generator=g)
    keys = torch.empty(0, dtype=torch.long)
    while keys.numel() < count:
        draw = 2 * (count - keys.numel()) + 1024
        u = perm[_skewed_index(draw, N, SKEW, g)]
        v = perm[_skewed_index(draw, N, SKEW, g)]
        keep = u != v
        u, v = u[keep], v[keep]
        if undirected:
            u, v = torch.minimum(u, v), torch.maximum(u, v)
        keys = torch.unique(torch.cat([keys, u * N + v]))
    keys = keys[torch.randperm(keys.numel(), generator=g)[:count]].sort().values
    return torch.stack([keys // N, keys % N])


@functools.lru_cache(maxsize=2)
def uniform_edges(N: int, E: int, seed: int = 107) -> Tensor:
    """(2, ≤E) uniform random directed edges without self-loops (duplicates collapse in the Graph)."""
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, N, (2, E), generator=g)
    return ei[:, ei[0] != ei[1]].contiguous()


@functools.lru_cache(maxsize=8)
def _graph(name: str, self_loops: bool, normalization: Optional[str], device: str):
    from rpn2kernels.graph import Graph

    N, _, undirected, _ = GRAPHS[name]
    return Graph.from_edge_index(graph_links(name).to(device), N, directed=not undirected, self_loops=self_loops,
                                 normalization=normalization)


@functools.lru_cache(maxsize=1)
def _big_graph(N: int, E: int, device: str):
    from rpn2kernels.graph import Graph

    return Graph.from_edge_index(uniform_edges(N, E).to(device), N, normalization="column")


def _edge_list(graph) -> Tuple[Tensor, Tensor]:
    """PyG-style (edge_index [source; target], weight) of the Graph's Â (P = Âᵀ rows are targets)."""
    counts = graph.rowptr[1:] - graph.rowptr[:-1]
    targets = torch.repeat_interleave(torch.arange(graph.num_nodes, device=graph.device), counts)
    return torch.stack([graph.col, targets]), graph.edge_values()


def _csr_of(graph) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(graph.rowptr, graph.col, graph.edge_values(),
                                       (graph.num_nodes, graph.num_nodes))


class _CsrMM(torch.autograd.Function):
    """torch.sparse.mm(P, h) with a transposed CSR built once for backward: plain autograd through a
    CSR sparse.mm re-transposes P on every backward (≈4× slower at 1 M entries)."""

    @staticmethod
    def forward(ctx, h, P, Pt):
        ctx.Pt = Pt
        return torch.sparse.mm(P, h)

    @staticmethod
    def backward(ctx, grad):
        return torch.sparse.mm(ctx.Pt, grad), None, None


def _csr_pair(graph) -> Tuple[Tensor, Tensor]:
    P = _csr_of(graph)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return P, P.t().to_sparse_csr()


PEER_SPMM_LABEL = ("torch.sparse.mm on a CSR of Âᵀ, backward through a transposed CSR built once (plain autograd "
                   "of a CSR sparse.mm re-transposes P every backward and is ≈4× slower)")


# ------------------------------------------------------------------------------------------------
# tinyBIG 0.2.1, transcribed


def _tb_topology(N: int, links: Sequence[Tuple[int, int]]):
    """base_topology.__init__: node dict and out-neighbour dicts (links_to_neighbors)."""
    nodes = {node: index for index, node in enumerate(range(N))}
    out_neighbors: Dict[int, Dict[int, int]] = {}
    for (n1, n2) in links:
        if n1 in nodes:
            if n1 not in out_neighbors:
                out_neighbors[n1] = {}
            out_neighbors[n1][n2] = 1
    return nodes, out_neighbors


def _tb_get_links(out_neighbors, directed: bool):
    """base_topology.get_links."""
    links = [(n1, n2) for n1, n2_dict in out_neighbors.items() for n2 in n2_dict]
    if not directed:
        reverse_links = [(pair[1], pair[0]) for pair in links]
        links = list(set(links + reverse_links))
    return links


def _tb_degree_normalize(mx: Tensor, mode: str) -> Tensor:
    """koala/linear_algebra/matrix.py degree_based_normalize_matrix (densifies a sparse input)."""
    sparse_tag = False
    if mx.is_sparse:
        mx = mx.to_dense()
        sparse_tag = True
    if mode == "row":
        row_sums = mx.sum(dim=1)
        row_sums[row_sums == 0] = 1
        normalized_mx = mx / row_sums.unsqueeze(1)
    elif mode == "column":
        col_sums = mx.sum(dim=0)
        col_sums[col_sums == 0] = 1
        normalized_mx = mx / col_sums.unsqueeze(0)
    elif mode == "row_column":
        row_sums = mx.sum(dim=1)
        row_sums[row_sums == 0] = 1
        mx = mx / torch.sqrt(row_sums.unsqueeze(1))
        col_sums = mx.sum(dim=0)
        col_sums[col_sums == 0] = 1
        normalized_mx = mx / torch.sqrt(col_sums.unsqueeze(0))
    else:
        raise ValueError(mode)
    if sparse_tag:
        normalized_mx = normalized_mx.to_sparse_coo()
    return normalized_mx


def _tb_to_matrix(nodes, out_neighbors, directed: bool, self_dependence: bool = False, self_scaling: float = 1.0,
                  normalization: bool = False, normalization_mode: str = "row_column", device="cpu") -> Tensor:
    """base_topology.to_matrix (non-mps branch): scipy COO, symmetrise, + s·I, torch sparse COO,
    optional densified normalisation."""
    import numpy as np
    import scipy.sparse as sp

    links = _tb_get_links(out_neighbors, directed)
    links = np.array(list(map(lambda pair: (nodes[pair[0]], nodes[pair[1]]), links)), dtype=np.int32)
    mx = sp.coo_matrix((np.ones(links.shape[0]), (links[:, 0], links[:, 1])), shape=(len(nodes), len(nodes)),
                       dtype=np.float32)
    if not directed:
        mx = mx + mx.T.multiply(mx.T > mx) - mx.multiply(mx.T > mx)
    if self_dependence:
        mx += self_scaling * sp.eye(mx.shape[0])
    # sparse_mx_to_torch_sparse_tensor
    mx = mx.tocoo().astype(np.float32)
    indices = torch.from_numpy(np.vstack((mx.row, mx.col)).astype(np.int64))
    values = torch.from_numpy(mx.data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mx = torch.sparse_coo_tensor(indices, values, torch.Size(mx.shape)).to(device)
    if normalization:
        mx = _tb_degree_normalize(mx, normalization_mode)
    return mx


def _tb_matrix_power(mx: Tensor, n: int) -> Tensor:
    """koala/linear_algebra/matrix.py matrix_power (recursive; sparse @ sparse keeps fill-in)."""
    if n == 0:
        return torch.eye(mx.shape[0], dtype=mx.dtype, device=mx.device)
    if n == 1:
        return mx
    with warnings.catch_warnings():  # sparse @ sparse warns that it goes through beta CSR support
        warnings.simplefilter("ignore")
        if n % 2 == 0:
            half_power = _tb_matrix_power(mx, n // 2)
            return half_power @ half_power
        return mx @ _tb_matrix_power(mx, n - 1)


def _tb_accumulative_matrix_power(mx: Tensor, n: int) -> Tensor:
    """koala/linear_algebra/matrix.py accumulative_matrix_power."""
    ac_mx_power = mx.clone()
    adj_powers = mx.clone()
    with warnings.catch_warnings():  # sparse @ sparse warns that it goes through beta CSR support
        warnings.simplefilter("ignore")
        for _ in range(2, n + 1):
            adj_powers = mx @ adj_powers
            ac_mx_power += adj_powers
    return ac_mx_power


def _identity(t: Tensor) -> Tensor:
    return t


def sparse_mm(S: Tensor, D: Tensor) -> Tensor:
    """torch.sparse.mm, with what it saves for backward kept out of the runner's saved-bytes hook:
    that hook reads ``untyped_storage()``, which sparse tensors do not have (NotImplementedError).
    The tensors saved here are the sparse matrix itself (cached, alive anyway) and, when it requires
    grad, the dense operand (saved elsewhere in the same graph in every case of this suite)."""
    with torch.autograd.graph.saved_tensors_hooks(_identity, _identity):
        return torch.sparse.mm(S, D)


def _tb_apply(A: Tensor, data_x: Tensor) -> Tensor:
    """interdependence.forward, instance type: Aᵀ·X (sparse.mm for a sparse A)."""
    if data_x.is_sparse or A.is_sparse:
        return sparse_mm(A.t(), data_x)
    return torch.matmul(A.t(), data_x)


@functools.lru_cache(maxsize=4)
def _tb_graph_A(name: str, self_dependence: bool, device) -> Tensor:
    """The graph head's cached A: undirected topology, column normalisation (graph heads' default).
    Cached per process like tinyBIG caches it (setups in a peak-memory child run twice)."""
    N, _, undirected, _ = GRAPHS[name]
    nodes, out_neighbors = _tb_topology(N, graph_links(name).t().tolist())
    return _tb_to_matrix(nodes, out_neighbors, directed=not undirected, self_dependence=self_dependence,
                         normalization=True, normalization_mode="column", device=device)


def _nnz(A: Tensor) -> int:
    return int(A._nnz()) if A.is_sparse else int(A.numel())


def _tb_pagerank_build(N: int, links: List[Tuple[int, int]], undirected: bool, device, c: float = C) -> Tensor:
    """pagerank_multihop_graph_interdependence.calculate_A from the head's link list: topology,
    to_matrix (normalised, no self-loops: the flag is not forwarded), dense c·inverse(I − (1−c)Â)."""
    nodes, out_neighbors = _tb_topology(N, links)  # graph(nodes, links, directed=False)
    adj = _tb_to_matrix(nodes, out_neighbors, directed=not undirected, normalization=True,
                        normalization_mode="column", device=device)
    return c * torch.inverse((torch.eye(adj.shape[0], device=device) - (1.0 - c) * adj))


def _tb_pagerank_first(N: int, links: List[Tuple[int, int]], undirected: bool, x: Tensor, g: Tensor,
                       c: float = C):
    """tinyBIG's first call of the PageRank graph head: build (above), Aᵀ·X, backward."""
    A = _tb_pagerank_build(N, links, undirected, x.device, c)
    y = _tb_apply(A, x)
    y.backward(g)
    return A, y


@functools.lru_cache(maxsize=2)
def _tb_pagerank_A(name: str, device: str) -> Tensor:
    N, _, undirected, _ = GRAPHS[name]
    return _tb_pagerank_build(N, [tuple(pair) for pair in graph_links(name).t().tolist()], undirected, device)


# ------------------------------------------------------------------------------------------------
# PyG (bench-only extra)


@functools.lru_cache(maxsize=None)
def pyg_status() -> Tuple[Optional[str], Optional[str]]:
    """(version, None) when torch_geometric imports, else (None, why)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torch_geometric
            from torch_geometric.nn import APPNP, GATConv, GCNConv  # noqa: F401
        return torch_geometric.__version__, None
    except Exception as error:  # any failure of the optional extra: the row says so
        return None, f"torch_geometric not importable: {type(error).__name__}: {error}"


def _peer_note(what: str) -> Dict[str, str]:
    version, why = pyg_status()
    if version is None:
        return {"peer": f"{what}: row absent ({why}); install the bench extra: pip install torch-geometric"}
    return {"peer": what, "torch_geometric_version": version}


# ------------------------------------------------------------------------------------------------
# floors


def _triads(arrays: Tuple[Tensor, Tensor, Tensor], nbytes: float) -> None:
    a, b, c = arrays
    per = 12 * a.numel()
    full = int(nbytes // per)
    for _ in range(full):
        torch.add(b, c, alpha=3.0, out=a)
    rest = int((nbytes - full * per) // 12)
    if rest:
        torch.add(b[:rest], c[:rest], alpha=3.0, out=a[:rest])


class _StreamTraffic(torch.autograd.Function):
    @staticmethod
    def forward(ctx, token, arrays, fwd_bytes, bwd_bytes, shape):
        _triads(arrays, fwd_bytes)
        ctx.arrays, ctx.bwd_bytes = arrays, bwd_bytes
        return token.new_empty(shape)

    @staticmethod
    def backward(ctx, grad):
        _triads(ctx.arrays, ctx.bwd_bytes)
        return torch.zeros(1, device=grad.device), None, None, None, None


def _stream_floor(fwd_bytes: float, bwd_bytes: float) -> Impl:
    def setup(inp):
        n = int(min(max(max(fwd_bytes, bwd_bytes) / 12, 1 << 18), 1 << 24))
        device = inp["grad_out"].device
        arrays = (torch.empty(n, device=device), torch.rand(n, device=device), torch.rand(n, device=device))
        torch.add(arrays[1], arrays[2], alpha=3.0, out=arrays[0])  # first touch
        token = torch.zeros(1, device=device, requires_grad=True)
        shape = tuple(inp["grad_out"].shape)
        return Prepared(lambda: _StreamTraffic.apply(token, arrays, fwd_bytes, bwd_bytes, shape), {"token": token})

    return Impl("floor", f"STREAM triad moving the bytes model's traffic (fwd {fwd_bytes / 1e6:.1f} MB, bwd "
                         f"{bwd_bytes / 1e6:.1f} MB): torch.add(b, c, alpha=s, out=a) passes over ≤64 MiB arrays — the "
                         "roofline time, measured side by side",
                setup, role="floor", check=False, check_note="moves bytes only; computes nothing")


def spmm_pass_bytes(N: int, nnz: int, F: int, base: bool = False, values: bool = True) -> int:
    """Bytes of one SpMM pass P·Y (+ base) over a CSR with nnz entries, no reuse of gathered rows:
    rowptr 8(N+1), col 8·nnz (int64), values 4·nnz, gathered rows 4F·nnz, output 4F·N, base 4F·N."""
    return 8 * (N + 1) + (12 if values else 8) * nnz + 4 * F * nnz + 4 * F * N + (4 * F * N if base else 0)


SPMM_MODEL_NOTE = ("bytes model: per SpMM pass over a CSR with nnz entries 8(N+1) + 12·nnz (int64 col, fp32 "
                   "value) + 4F·nnz (every gathered row counted: no reuse) + 4F·N (output) [+ 4F·N fused base]; "
                   "backward = the same passes over the cached transpose. Gathers hit cache on graphs whose "
                   "features fit in it (G1–G3, G5), so fractions of STREAM above 1 mean reuse, not an error")


# ------------------------------------------------------------------------------------------------
# Generic input makers


def _dense_inputs(shapes: Dict[str, Tuple[int, ...]], grad_shape: Tuple[int, ...], seed: int,
                  scales: Optional[Dict[str, float]] = None, no_grad: Sequence[str] = ()):
    scales = scales or {}

    def make(device: torch.device) -> Dict[str, Tensor]:
        g = torch.Generator().manual_seed(seed)
        out = {}
        for name, shape in shapes.items():
            t = torch.randn(*shape, generator=g) * scales.get(name, 1.0)
            out[name] = t.to(device).requires_grad_(name not in no_grad)
        out["grad_out"] = torch.randn(*grad_shape, generator=g).to(device)
        return out

    return make


# ------------------------------------------------------------------------------------------------
# G1: GCN layer


def _g1_case(graph_name: str, m: int, n: int, backends: Dict[str, str], device, seed: int, tiny: bool) -> Case:
    from rpn2kernels import functional

    N = GRAPHS[graph_name][0]
    dev = str(device)

    def graph():
        return _graph(graph_name, True, "column", dev)

    def ours_setup(inp):
        G, x, w, b = graph(), inp["x"], inp["weight"], inp["bias"]
        return Prepared(lambda: functional.propagate(G, functional.narrow_linear(x, w), backend=backends["spmm"]) + b,
                        {"x": x, "weight": w, "bias": b}, params=("weight", "bias"))

    def ref_setup(inp):
        G, x, w, b = graph(), inp["x"], inp["weight"], inp["bias"]
        return Prepared(lambda: functional.propagate(G, F.linear(x, w), backend="reference") + b,
                        {"x": x, "weight": w, "bias": b}, params=("weight", "bias"))

    narrow_kernel = functional.narrow_kernel_preferred(torch.empty(1, m, device=device).expand(N, m),
                                                       torch.empty(n, m, device=device))
    meta: Dict[str, object] = {"graph": graph_name, "N": N, "m": m, "n": n, "dtype": "float32",
                               "narrow_linear": "compiled kernel" if narrow_kernel else "torch GEMM",
                               "normalization": "column (tinyBIG graph heads' default), self-loops, symmetrised",
                               "backend": backends["spmm"]}

    def tb_setup(inp):
        t0 = time.perf_counter()
        A = _tb_graph_A(graph_name, True, device)
        meta["tinybig_build_s"] = time.perf_counter() - t0   # ≈ 0 when an earlier case built the same A
        meta["tinybig_A_nnz"] = _nnz(A)
        x, b = inp["x"], inp["bias"]
        w = inp["weight"].detach().reshape(1, -1).requires_grad_()  # the head's flat (1, n·m) parameter

        def forward():
            kappa_x = x                                   # identity_expansion
            xi_x = _tb_apply(A, kappa_x)                  # instance interdependence: sparse.mm(A.t(), X)
            phi_w = w[0:1, :].view(n, m).to(device)       # identity_reconciliation
            return F.linear(xi_x, phi_w, bias=b)          # calculate_inner_product

        def grads():
            out = {"x": x.grad, "bias": b.grad}
            if w.grad is not None:
                out["weight"] = w.grad.view(n, m)
            return {k: v for k, v in out.items() if v is not None}

        return Prepared(forward, {"x": x, "w": w, "bias": b}, params=("w", "bias"), canonical_grads=grads)

    def peer_setup(inp):
        from torch_geometric.nn import GCNConv

        G, x = graph(), inp["x"]
        edge_index, edge_weight = _edge_list(G)
        conv = GCNConv(m, n, normalize=False, bias=True).to(device)
        with torch.no_grad():
            conv.lin.weight = torch.nn.Parameter(inp["weight"].detach())   # shares the storage
            conv.bias = torch.nn.Parameter(inp["bias"].detach())

        def grads():
            out = {"x": x.grad, "weight": conv.lin.weight.grad, "bias": conv.bias.grad}
            return {k: v for k, v in out.items() if v is not None}

        return Prepared(lambda: conv(x, edge_index, edge_weight), {"x": x, "weight": conv.lin.weight, "bias": conv.bias},
                        params=("weight", "bias"), canonical_grads=grads)

    def floor_setup(inp):
        x, w = inp["x"], inp["weight"]
        return Prepared(lambda: F.linear(x, w), {"x": x, "weight": w}, params=("weight",))

    impls = [Impl("ours", f"functional.propagate(Graph, functional.narrow_linear(x, W), backend={backends['spmm']!r}) "
                          "+ b (transform first, one SpMM over Âᵀ; narrow_linear's default: "
                          f"{'the compiled kernel' if narrow_kernel else 'torch GEMM'} at this shape, as in GraphConv)",
                  ours_setup, role="ours"),
             Impl("reference", "functional.propagate(..., backend='reference') (gather + index_add) + b", ref_setup,
                  role="reference"),
             Impl("tinybig", "tinyBIG 0.2.1 graph head: cached COO Â (column-normalised, self-loops), "
                             "torch.sparse.mm(A.t(), X) on the m-wide input, then F.linear with W = w.view(n, m)",
                  tb_setup)]
    meta.update(_peer_note("torch_geometric.nn.GCNConv(normalize=False, bias=True) on edge_index + Â's edge "
                           "weights (= its cached=True steady state)"))
    if pyg_status()[0] is not None:
        impls.append(Impl("peer", f"PyG {pyg_status()[0]} GCNConv (lin then message passing over edge_index)",
                          peer_setup))
    impls.append(Impl("floor", "F.linear(x, W) alone: x·Wᵀ, G·W, Gᵀ·x (the dense GEMMs of the layer)", floor_setup,
                      role="floor", check=False, check_note="the GEMMs without aggregation or bias"))
    targets = [Target("G1.floor", "within 1.5× of the dense GEMMs alone", "floor", "floor", 1.5),
               Target("G1.peer_speedup", "≥ 1.5× PyG GCNConv", "speedup", "peer", 1.5)]
    if n == 16 or tiny:
        targets.append(Target("G1.tinybig_speedup", "≥ 5× tinyBIG-equivalent (n=16)", "speedup", "tinybig", 5.0))
    return Case(
        name=f"G1-gcn-n{n}", id="G1",
        description=f"GCN layer propagate(Â, x·Wᵀ) + b on the Cora-sized graph (N={N}), m={m}, n={n}, fwd+bwd",
        make_inputs=_dense_inputs({"x": (N, m), "weight": (n, m), "bias": (n,)}, (N, n), seed,
                                  {"weight": 1 / math.sqrt(m), "bias": 0.1}),
        impls=impls, bound="compute", work=3 * 2.0 * N * m * n,
        work_note="FLOP of the three dense GEMMs (x·Wᵀ, G·W, Gᵀ·x), 3·2·N·m·n; the SpMMs are not counted",
        targets=targets, meta=meta)


# ------------------------------------------------------------------------------------------------
# G2: 3-hop accumulative propagation


def _g2_case(graph_name: str, F_: int, backends, device, seed: int) -> Case:
    from rpn2kernels import functional

    N = GRAPHS[graph_name][0]
    dev = str(device)

    def graph():
        return _graph(graph_name, True, "column", dev)

    meta: Dict[str, object] = {"graph": graph_name, "N": N, "F": F_, "hops": HOPS, "accumulative": True,
                               "normalization": "column, self-loops, symmetrised", "backend": backends["spmm"]}

    def ours_setup(inp):
        G, x = graph(), inp["x"]
        meta["nnz"] = G.num_edges
        return Prepared(lambda: functional.propagate(G, x, HOPS, True, backend=backends["spmm"]), {"x": x})

    def ref_setup(inp):
        G, x = graph(), inp["x"]
        return Prepared(lambda: functional.propagate(G, x, HOPS, True, backend="reference"), {"x": x})

    def tb_setup(inp):
        t0 = time.perf_counter()
        adj = _tb_graph_A.__wrapped__(graph_name, True, device)   # uncached: the build time is recorded
        A = _tb_accumulative_matrix_power(adj, HOPS)     # multihop_graph_interdependence(accumulative=True)
        meta["tinybig_build_s"] = time.perf_counter() - t0
        meta["tinybig_A_nnz"] = _nnz(A)
        meta["tinybig_fill_in"] = _nnz(A) / max(1, _nnz(adj))
        x = inp["x"]
        return Prepared(lambda: _tb_apply(A, x), {"x": x})

    def peer_setup(inp):
        (P, Pt), x = _csr_pair(graph()), inp["x"]

        def forward():  # SGConv-style: repeated propagation, accumulated
            h, acc = x, None
            for _ in range(HOPS):
                h = _CsrMM.apply(h, P, Pt)
                acc = h if acc is None else acc + h
            return acc

        return Prepared(forward, {"x": x})

    nnz = 2 * GRAPHS[graph_name][1] + N   # distinct links, symmetrised, plus self-loops
    fwd = HOPS * spmm_pass_bytes(N, nnz, F_) + (HOPS - 1) * 4 * F_ * N
    work = 2 * fwd
    return Case(
        name="G2-multihop3-acc", id="G2",
        description=f"Σ_{{k=1}}^{HOPS} (Âᵀ)^k·x on the Cora-sized graph (N={N}, nnz={nnz}), F={F_}, fwd+bwd",
        make_inputs=_dense_inputs({"x": (N, F_)}, (N, F_), seed),
        impls=[Impl("ours", f"functional.propagate(Graph, x, {HOPS}, accumulate=True, backend={backends['spmm']!r}) "
                            "(Horner: 3 fused SpMM passes)", ours_setup, role="ours"),
               Impl("reference", "functional.propagate(..., backend='reference')", ref_setup, role="reference"),
               Impl("tinybig", "tinyBIG 0.2.1 multihop_graph_interdependence(h=3, accumulative=True): cached "
                               "Σ Â^k from sparse @ sparse products (fill-in), torch.sparse.mm(A.t(), X)", tb_setup),
               Impl("peer", "SGConv-style repeated propagation h ← P·h, accumulated: " + PEER_SPMM_LABEL, peer_setup)],
        bound="bandwidth", work=work, work_note=SPMM_MODEL_NOTE + "; 3 passes (2 with a fused base) forward, 3 backward",
        targets=[Target("G2.tinybig_speedup", "≥ 20× tinyBIG-equivalent (A^h fill-in)", "speedup", "tinybig", 20.0)],
        meta=meta)


# ------------------------------------------------------------------------------------------------
# G3: PageRank (steady state; the build + first call and the float64 agreement are one-shot)

_ONE_SHOT: Dict[str, Dict[str, object]] = {}   # pending one-shot measurements, filled by setups in this process


def _pagerank_iterations(c: float = C, tol: float = 1e-6) -> int:
    from rpn2kernels.ops.propagation import pagerank_iterations

    return pagerank_iterations(c, tol)


def _g3_case(graph_name: str, F_: int, backends, device, seed: int, one_shot_graphs: Sequence[str] = ()) -> Case:
    from rpn2kernels import functional

    N = GRAPHS[graph_name][0]
    dev = str(device)
    T = _pagerank_iterations()

    def graph():
        return _graph(graph_name, False, "column", dev)

    meta: Dict[str, object] = {"graph": graph_name, "N": N, "F": F_, "c": C, "tol": 1e-6, "iterations": T,
                               "normalization": "column, no self-loops (tinyBIG does not forward the flag), "
                                                "symmetrised", "backend": backends["spmm"],
                               "dense_A_bytes": 4 * N * N}

    def ours_setup(inp):
        G, x = graph(), inp["x"]
        meta["nnz"] = G.num_edges
        for name in one_shot_graphs:
            _ONE_SHOT[f"G3-{name}"] = {"kind": "G3", "graph": name, "F": F_, "device": dev,
                                       "dense_f64_check": GRAPHS[name][0] <= DENSE_ROW_MAX_N}
        return Prepared(lambda: functional.pagerank(G, x, C, backend=backends["spmm"]), {"x": x})

    def ref_setup(inp):
        G, x = graph(), inp["x"]
        return Prepared(lambda: functional.pagerank(G, x, C, backend="reference"), {"x": x})

    real_A = N <= DENSE_ROW_MAX_N

    def tb_setup(inp):
        if real_A:  # the cached A_pr itself, built by tinyBIG's path (a dense inverse) once per process
            A = _tb_pagerank_A(graph_name, dev)
        else:       # a same-shape stand-in for the cached A_pr (see the module docstring)
            g = torch.Generator().manual_seed(seed + 1000)
            A = (torch.rand(N, N, generator=g) * (2.0 / N)).to(device)
        x = inp["x"]
        return Prepared(lambda: _tb_apply(A, x), {"x": x})

    def peer_setup(inp):
        from torch_geometric.nn import APPNP

        G, x = graph(), inp["x"]
        edge_index, edge_weight = _edge_list(G)
        prop = APPNP(K=T + 1, alpha=C, add_self_loops=False, normalize=False)
        return Prepared(lambda: prop(x, edge_index, edge_weight), {"x": x})

    impls = [Impl("ours", f"functional.pagerank(Graph, x, c={C}, tol=1e-6, backend={backends['spmm']!r}): {T} fused "
                          "SpMM steps forward, the same on the transpose backward", ours_setup, role="ours"),
             Impl("reference", "functional.pagerank(..., backend='reference')", ref_setup, role="reference"),
             Impl("tinybig", "tinyBIG 0.2.1 steady state: cached dense N×N A_pr = c·inverse(I − (1−c)Â), "
                             "torch.matmul(A.t(), X)" + ("" if real_A else " (a same-shape stand-in matrix above "
                                                                         f"N={DENSE_ROW_MAX_N}; values checked in "
                                                                         "the one-shot measurement)"), tb_setup,
                  check=real_A, check_note="" if real_A else (
                      "same-shape stand-in for A_pr (building the real one is a dense inverse per process); "
                      "tinyBIG's real A_pr is checked in suite_info.one_shot"))]
    meta.update(_peer_note(f"torch_geometric.nn.APPNP(K={T + 1}, alpha={C}, add_self_loops=False, normalize=False) "
                           "with Â's edge weights (differs from the truncated series by (1-c)^K ≈ 1e-6)"))
    if pyg_status()[0] is not None:
        impls.append(Impl("peer", f"PyG {pyg_status()[0]} APPNP(K={T + 1}) power iteration (message passing)", peer_setup))
    nnz_est = 2 * GRAPHS[graph_name][1]
    per_direction = T * (spmm_pass_bytes(N, nnz_est, F_) + 4 * F_ * N) + 8 * F_ * N
    return Case(
        name=f"G3-pagerank-{graph_name}", id="G3",
        description=f"PageRank c={C} steady state on N={N} (E≈{nnz_est}), F={F_}, fwd+bwd (build + first call, "
                    f"float64 agreement and the Pubmed-sized graph: suite_info.one_shot)",
        make_inputs=_dense_inputs({"x": (N, F_)}, (N, F_), seed),
        impls=impls, bound="bandwidth", work=2 * per_direction,
        work_note=SPMM_MODEL_NOTE + f"; {T} passes with a fused base each way",
        targets=[Target("G3.steady_vs_dense", "steady-state fwd+bwd ≥ 1× tinyBIG's cached dense product",
                        "speedup", "tinybig", 1.0)],
        meta=meta)


# ------------------------------------------------------------------------------------------------
# G4: 3 hops at N=1M, E=10M


def _g4_case(N: int, E: int, F_: int, backends, device, seed: int) -> Case:
    from rpn2kernels import functional

    dev = str(device)
    meta: Dict[str, object] = {"N": N, "E_sampled": E, "F": F_, "hops": HOPS, "accumulative": False,
                               "graph": "uniform random directed, column-normalised, no self-loops",
                               "backend": backends["spmm"]}

    def graph():
        G = _big_graph(N, E, dev)
        meta["nnz"] = G.num_edges
        return G

    def ours_setup(inp):
        G, x = graph(), inp["x"]
        return Prepared(lambda: functional.propagate(G, x, HOPS, backend=backends["spmm"]), {"x": x})

    def peer_setup(inp):
        (P, Pt), x = _csr_pair(graph()), inp["x"]

        def forward():
            h = x
            for _ in range(HOPS):
                h = _CsrMM.apply(h, P, Pt)
            return h

        return Prepared(forward, {"x": x})

    nnz = E  # duplicates of a uniform sample are rare (E/N² ≪ 1); the exact nnz is in the meta
    per_pass = spmm_pass_bytes(N, nnz, F_)
    fwd = HOPS * per_pass
    compulsory = HOPS * (8 * (N + 1) + 12 * nnz + 8 * F_ * N)
    meta["bytes_model"] = {"per_pass_bytes": per_pass, "fwd_bytes": fwd, "bwd_bytes": fwd,
                           "formula": "per pass 8(N+1) + 12·nnz + 4F·nnz + 4F·N (gathered rows counted each time)",
                           "compulsory_fwd_bytes": compulsory,
                           "compulsory_formula": "per pass 8(N+1) + 12·nnz + 8F·N (each array once)"}
    return Case(
        name=f"G4-propagate3-N{N}", id="G4",
        description=f"(Âᵀ)^{HOPS}·x, N={N}, E={E}, F={F_}, fwd+bwd (bandwidth roofline)",
        make_inputs=_dense_inputs({"x": (N, F_)}, (N, F_), seed),
        impls=[Impl("ours", f"functional.propagate(Graph, x, {HOPS}, backend={backends['spmm']!r})", ours_setup,
                    role="ours"),
               Impl("peer", f"h ← P·h ×{HOPS}: {PEER_SPMM_LABEL} — the peer, and this case's correctness oracle "
                            "(the pure-PyTorch reference backend needs seconds per pass at this size; it is the "
                            "oracle of G2 on the same code path)", peer_setup, role="reference"),
               _stream_floor(fwd, fwd)],
        bound="bandwidth", work=2 * fwd, work_note=SPMM_MODEL_NOTE + "; uniform random graph: every gathered row is "
                                                                     "a cache miss, so the model is the traffic",
        targets=[Target("G4.stream", "≥ 50% of the measured STREAM roofline for the bytes moved (ours ≤ 2× the "
                                     "STREAM-triad time for the same bytes, side by side)", "floor", "floor", 2.0)],
        meta=meta)


# ------------------------------------------------------------------------------------------------
# G5: GAT-style edge attention


class _LargestTensor:
    """Largest number of elements of any tensor an op produces inside the block (TorchDispatchMode)."""

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_leaves

        outer = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                for t in tree_leaves(out):
                    if isinstance(t, torch.Tensor):
                        outer.largest = max(outer.largest, t.numel())
                return out

        self.largest = 0
        self.mode = Mode()


def _g5_case(graph_name: str, m: int, backends, device, seed: int, tinybig_row: Optional[bool] = None) -> Case:
    from rpn2kernels import functional

    N = GRAPHS[graph_name][0]
    dev = str(device)

    def graph():
        return _graph(graph_name, True, "column", dev)

    if tinybig_row is None:
        tinybig_row = N <= DENSE_ROW_MAX_N
    meta: Dict[str, object] = {"graph": graph_name, "N": N, "m": m, "n_by_n_bytes": 4 * N * N,
                               "attention": "logit(u→v) = Â[u,v]·x_u·W·x_vᵀ, masked column softmax, z_v = Σ_u α·x_u",
                               "backend": backends["edge_attention"]}
    if not tinybig_row:
        meta["tinybig"] = (f"one dense fwd+bwd at N={N} takes 10-30 s on 2 cores and ~8 GB: timed against ours in "
                           f"suite_info.one_shot['G5-{graph_name}'] (3 alternating runs, peak memory, value check)")

    def ours_setup(inp):
        G, x, w = graph(), inp["x"], inp["weight"]
        meta["nnz"] = G.num_edges
        if not tinybig_row:
            _ONE_SHOT[f"G5-{graph_name}"] = {"kind": "G5", "graph": graph_name, "m": m, "seed": seed, "device": dev}

        def forward():
            return functional.edge_attention(G, x, x @ w, x, 1.0, backend=backends["edge_attention"])

        probe = _LargestTensor()  # one untimed fwd+bwd: no op of ours may produce an N×N tensor
        with probe.mode:
            forward().backward(inp["grad_out"])
        x.grad = w.grad = None
        meta["ours_largest_tensor_elements"] = probe.largest
        meta["ours_forms_no_NxN_tensor"] = probe.largest < N * N
        if tinybig_row:
            _ONE_SHOT[f"G5-{graph_name}-no-NxN"] = {"kind": "G5probe", "N": N, "largest": probe.largest}
        return Prepared(forward, {"x": x, "weight": w}, params=("weight",))

    def ref_setup(inp):
        G, x, w = graph(), inp["x"], inp["weight"]
        return Prepared(lambda: functional.edge_attention(G, x, x @ w, x, 1.0, backend="reference"),
                        {"x": x, "weight": w}, params=("weight",))

    def tb_setup(inp):
        A_graph = _tb_graph_A(graph_name, True, device)   # graph_interdependence, cached (sparse COO)
        x = inp["x"]
        w = inp["weight"].detach().reshape(1, -1).requires_grad_()   # w_instance_interdependence (1, m²)

        def forward():
            xt = x.transpose(0, 1)                        # instance type: calculate_A(x.transpose(0, 1))
            w_segments = torch.split(w, [0, m * m, 0], dim=-1)
            A1 = A_graph.to_dense()                       # hybrid_interdependence densifies sparse parts
            W = w_segments[1].reshape(m, m).to(device)    # parameterized_bilinear_interdependence
            A2 = torch.matmul(xt.t(), torch.matmul(W, xt))
            stacked = torch.stack([A1, A2], dim=0)        # metric_fusion (prod_fusion)
            permuted = stacked.permute(*range(1, stacked.ndim), 0)
            fused = torch.prod(permuted.view(-1, stacked.shape[0]), dim=1).view(stacked.shape[1:])
            mx = fused * 1.0                              # operator_based_normalize_matrix(mask_zeros=True,
            mask = (mx != 0).float()                      #   softmax, mode='column')
            masked = mx.clone()
            masked[mx == 0] = -1e9
            A = F.softmax(masked, dim=0) * mask
            A = A.to_sparse_coo()                         # sparse_tag: back to COO
            return _tb_apply(A, x)                        # torch.sparse.mm(A.t(), X)

        def grads():
            out = {"x": x.grad}
            if w.grad is not None:
                out["weight"] = w.grad.view(m, m)
            return {k: v for k, v in out.items() if v is not None}

        return Prepared(forward, {"x": x, "w": w}, params=("w",), canonical_grads=grads)

    def peer_setup(inp):
        from torch_geometric.nn import GATConv

        G, x = graph(), inp["x"]
        edge_index, _ = _edge_list(G)
        conv = GATConv(m, m, heads=1, add_self_loops=False, bias=False).to(device)
        leaves = {"x": x, **{name: p for name, p in conv.named_parameters()}}
        return Prepared(lambda: conv(x, edge_index), leaves, params=tuple(n for n in leaves if n != "x"))

    impls = [Impl("ours", f"functional.edge_attention(Graph, q=x, k=x·W, v=x, backend={backends['edge_attention']!r}) "
                          "(SDDMM + edge softmax + SpMM, no N×N tensor)", ours_setup, role="ours"),
             Impl("reference", "functional.edge_attention(..., backend='reference')", ref_setup, role="reference")]
    if tinybig_row:
        impls.append(Impl("tinybig", "tinyBIG 0.2.1 GAT hybrid interdependence: dense Â, X·W·Xᵀ, stack+prod, masked "
                                     "column softmax, to_sparse_coo, torch.sparse.mm(A.t(), X) — N×N tensors every "
                                     "forward", tb_setup))
    meta.update(_peer_note("torch_geometric.nn.GATConv(heads=1, add_self_loops=False, bias=False) on the same edges"))
    if pyg_status()[0] is not None:
        impls.append(Impl("peer", f"PyG {pyg_status()[0]} GATConv (additive attention, LeakyReLU): same edges, same "
                                  "heads=1 width", peer_setup, check=False,
                          check_note="a different attention function (additive a·[Wx_i‖Wx_j], LeakyReLU); same "
                                     "sparsity and width"))
    nnz_est = 2 * GRAPHS[graph_name][1] + N
    flop_fwd = 2.0 * N * m * m + 2.0 * nnz_est * m * 2
    return Case(
        name=f"G5-gat-{graph_name}", id="G5",
        description=f"GAT-style edge attention on N={N} (nnz≈{nnz_est}), m={m}, fwd+bwd",
        make_inputs=_dense_inputs({"x": (N, m), "weight": (m, m)}, (N, m), seed, {"weight": 1 / m}),
        impls=impls, bound="compute", work=3 * flop_fwd,
        work_note="≈ 3× the forward FLOP: X·W (2Nm²) + SDDMM (2·nnz·m) + SpMM (2·nnz·m)",
        targets=[Target("G5.tinybig_speedup", "≥ 10× tinyBIG-equivalent", "speedup", "tinybig", 10.0)]
        if tinybig_row else [],
        meta=meta)


# ------------------------------------------------------------------------------------------------
# C1: chains


@functools.lru_cache(maxsize=8)
def _tb_chain_A(variant: str, L: int, bi: bool, hops: int, device) -> Tensor:
    """The cached A of tinyBIG's chain interdependence classes (topological_interdependence.py);
    cached per process (the bi-directional inverse takes L−2 sparse products with fill-in)."""
    nodes, out_neighbors = _tb_topology(L, [(i, i + 1) for i in range(L - 1)])   # koala.topology.chain
    directed = not bi
    if variant == "multihop":   # self_dependence=True (class default), self_scaling not forwarded
        adj = _tb_to_matrix(nodes, out_neighbors, directed, self_dependence=True, device=device)
        return _tb_matrix_power(adj, hops)
    adj = _tb_to_matrix(nodes, out_neighbors, directed, device=device)   # no self-loops: flags not forwarded
    if variant == "inverse_approx":
        if bi:
            A = _tb_accumulative_matrix_power(adj, n=adj.shape[0] - 1)
            return _tb_degree_normalize(A, "column")
        return torch.inverse(torch.eye(adj.shape[0], device=device) - adj)
    if variant == "exponential_approx":
        return torch.matrix_exp(adj.to_dense()).to_sparse_coo()
    raise ValueError(variant)


def _c1_case(variant: str, bi: bool, L: int, b: int, m: int, backends, device, seed: int,
             check: Tuple[int, int, int]) -> Case:
    from rpn2kernels import functional

    direction = "bi" if bi else "uni"
    meta: Dict[str, object] = {"variant": variant, "bidirectional": bi, "L": L, "b": b, "m": m,
                               "hops": HOPS if variant == "multihop" else None, "backend": backends["chain"],
                               "layout": "(b, L, m) token-major, as tinyBIG's (b, L·m)"}
    kwargs = {"bidirectional": bi}
    hops = HOPS if variant == "multihop" else 1

    def ours_setup(inp):
        x = inp["x"]
        if variant == "inverse_approx" and bi:
            _ONE_SHOT["C1-check"] = {"kind": "C1", "L": check[0], "b": check[1], "m": check[2], "device": str(device)}
        return Prepared(lambda: functional.chain_propagate(x, variant, hops, backend=backends["chain"], **kwargs),
                        {"x": x})

    def ref_setup(inp):
        x = inp["x"]
        return Prepared(lambda: functional.chain_propagate(x, variant, hops, backend="reference", **kwargs), {"x": x})

    def tb_setup(inp):
        t0 = time.perf_counter()
        A = _tb_chain_A(variant, L, bi, HOPS, device)
        meta["tinybig_build_s"] = time.perf_counter() - t0
        meta["tinybig_A"] = {"sparse": A.is_sparse, "nnz": _nnz(A), "finite": bool(torch.isfinite(
            A.coalesce().values() if A.is_sparse else A).all())}
        x = inp["x"]

        def forward():  # chain head: (b, L·m) → (L, b·m), Aᵀ·K, → (b, L, m)
            kappa_x = x.reshape(b, L * m)
            kx = kappa_x.view(b, L, -1).permute(1, 0, 2).reshape(L, -1)
            xi_x = _tb_apply(A, kx)
            return xi_x.view(L, b, -1).permute(1, 0, 2)

        return Prepared(forward, {"x": x})

    tb_broken = variant == "inverse_approx" and bi and L >= 128   # measured: exact to 5e-7 up to L=127
    tb_label = {"multihop": f"sparse COO (S+I)^{HOPS} by matrix_power", "inverse_approx":
                ("Σ_{k<L} S_sym^k by accumulative_matrix_power (L−2 sparse products), column-normalised" if bi
                 else "dense torch.inverse(I − S)"),
                "exponential_approx": "torch.matrix_exp(S.to_dense()).to_sparse_coo()"}[variant]
    nbytes = 4 * b * L * m
    return Case(
        name=f"C1-{variant}-{direction}", id="C1",
        description=f"chain {variant} ({direction}-directional{', h=%d' % HOPS if variant == 'multihop' else ''}), "
                    f"L={L}, b={b}, m={m}, fwd+bwd",
        make_inputs=_dense_inputs({"x": (b, L, m)}, (b, L, m), seed),
        impls=[Impl("ours", f"functional.chain_propagate(x, {variant!r}, {hops}, bidirectional={bi}, "
                            f"backend={backends['chain']!r})", ours_setup, role="ours"),
               Impl("reference", "functional.chain_propagate(..., backend='reference')", ref_setup, role="reference"),
               Impl("tinybig", f"tinyBIG 0.2.1 cached L×L A ({tb_label}) applied by the chain head "
                               "(permute to (L, b·m), A.t()·K, permute back)", tb_setup,
                    check=not tb_broken, check_note=(
                        "tinyBIG's fp32 walk counts overflow: column sums become inf (those columns 0) for L ≥ 128 "
                        "and A is NaN for L ≥ 133 (functions.md §5.4); timed for cost only")
                    if tb_broken else ""),
               _stream_floor(2 * nbytes, 2 * nbytes)],
        bound="bandwidth", work=4 * nbytes,
        work_note="compulsory bytes: read x and write z forward, read G and write dx backward (4·4·b·L·m)",
        targets=[Target("C1.tinybig_speedup", "≥ 10× tinyBIG-equivalent", "speedup", "tinybig", 10.0)],
        meta=meta)


# ------------------------------------------------------------------------------------------------
# Cases


def cases(quick: bool, device: Optional[torch.device] = None, tiny: bool = False,
          ids: Optional[Sequence[str]] = None) -> List[Case]:
    """G1–G5 and C1 (``ids`` keeps only those spec ids; ``tiny`` is for unit tests)."""
    device = torch.device(device or "cpu")
    backends = resolve_ours_backends(device)
    size = SIZES["tiny" if tiny else "quick" if quick else "full"]
    wanted = set(ids) if ids else {"G1", "G2", "G3", "G4", "G5", "C1"}
    out: List[Case] = []
    seed = 200
    if "G1" in wanted:
        graph_name, m, ns = size["G1"]
        for n in ns:
            out.append(_g1_case(graph_name, m, n, backends, device, seed + n, tiny))
    if "G2" in wanted:
        out.append(_g2_case(size["G2"][0], size["G2"][1], backends, device, seed + 1))
    if "G3" in wanted:
        names, one_shot_graphs, F_ = size["G3"]
        for k, name in enumerate(names):
            out.append(_g3_case(name, F_, backends, device, seed + 2 + k, one_shot_graphs if k == 0 else ()))
    if "G4" in wanted:
        N, E, F_ = size["G4"]
        out.append(_g4_case(N, E, F_, backends, device, seed + 5))
    if "G5" in wanted:
        out.append(_g5_case(size["G5"][0], size["G5"][1], backends, device, seed + 6))
    if "C1" in wanted:
        L, b, m = size["C1"]
        k = 0
        for variant in CHAIN_VARIANTS:
            for bi in (False, True):
                out.append(_c1_case(variant, bi, L, b, m, backends, device, seed + 10 + k, size["C1_check"]))
                k += 1
    return out


# ------------------------------------------------------------------------------------------------
# One-shot measurements (suite_info, main process only) and the subprocess that runs G3's


def _fresh_peak_start(dev: torch.device) -> Tuple[int, bool]:
    """Start of a peak-memory window: host RSS high-water mark on CPU, the caching allocator's
    device high-water mark on CUDA (host RSS says nothing about GPU tensors)."""
    from .._peak import _malloc_trim, _reset_hwm, _status_bytes, device_window_start

    if dev.type == "cuda":
        return device_window_start(dev), True
    _malloc_trim()
    resettable = _reset_hwm()
    return _status_bytes("VmRSS"), resettable


def _peak_since(base: int, resettable: bool, dev: torch.device) -> Optional[int]:
    from .._peak import _status_bytes, device_window_peak

    if dev.type == "cuda":
        return device_window_peak(dev, base)
    return max(0, _status_bytes("VmHWM") - base) if resettable else None


def _rel_error(got: Tensor, want: Tensor) -> Dict[str, object]:
    got64, want64 = got.double(), want.double()
    scale = want64.abs().max().item()
    err = (got64 - want64).abs()
    allowed = RTOL * want64.abs() + RTOL * scale
    return {"max_abs_err": err.max().item(), "max_rel_err": err.max().item() / scale if scale else 0.0,
            "finite": bool(torch.isfinite(got64).all()),
            "within_runner_tolerance": bool(torch.isfinite(got64).all() and (err <= allowed).all())}


def _refine(apply_inverse, apply_M, rhs: Tensor, iterations: int = 8, tol: float = 1e-13):
    """Solve M·z = rhs in float64 by iterative refinement with an approximate inverse (float32)."""
    z = apply_inverse(rhs)
    history = []
    for _ in range(iterations):
        r = rhs - apply_M(z)
        rel = (r.abs().max() / rhs.abs().max()).item()
        history.append(rel)
        if rel <= tol:
            break
        z = z + apply_inverse(r)
    return z, history


def _warm_up(F_: int, dev: torch.device) -> Dict[str, object]:
    """One-time process start-up of every code path, on a 40-node graph: imports done lazily by the first
    call (torch's custom-op machinery imports torch._dynamo and sympy on the first call of any custom op;
    scipy.sparse for tinyBIG), thread pools, LAPACK. Reported, and kept out of the per-graph numbers."""
    from rpn2kernels import functional
    from rpn2kernels.graph import Graph

    small = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]], device=dev)
    xs = torch.randn(40, F_, device=dev, requires_grad=True)
    ones = torch.ones(40, F_, device=dev)
    t0 = time.perf_counter()
    G = Graph.from_edge_index(small, 40, directed=False, self_loops=True, normalization="column")
    functional.pagerank(G, xs, C).backward(ones)
    functional.edge_attention(G, xs, xs, xs, 1.0).backward(ones)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    _tb_pagerank_first(40, [(0, 1), (1, 2), (2, 3), (3, 4)], True, xs.detach().clone().requires_grad_(), ones)
    return {"ours_first_calls_on_a_40_node_graph_s": ours,
            "tinybig_first_call_on_a_40_node_graph_s": time.perf_counter() - t0,
            "note": "one-time cost of the first calls in a fresh process (lazy imports: torch's custom-op machinery "
                    "imports torch._dynamo and sympy on the first custom-op call; scipy.sparse for tinyBIG), measured "
                    "before and kept out of the per-graph numbers"}


def _g3_inputs(graph_name: str, F_: int, seed: int) -> Tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    N = GRAPHS[graph_name][0]
    return torch.randn(N, F_, generator=g), torch.randn(N, F_, generator=g)


def _g3_ours_first_call(graph_name: str, x: Tensor, grad: Tensor, dev: torch.device):
    """Ours' Graph build + first pagerank fwd+bwd on x (a leaf on dev): (graph, output, timing record)."""
    from rpn2kernels import functional
    from rpn2kernels.graph import Graph

    N, _, undirected, _ = GRAPHS[graph_name]
    links = graph_links(graph_name)
    base, resettable = _fresh_peak_start(dev)
    t0 = time.perf_counter()
    G = Graph.from_edge_index(links.to(dev), N, directed=not undirected, normalization="column")
    y = functional.pagerank(G, x, C)
    y.backward(grad.to(dev))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    record = {"build_first_fwdbwd_s": time.perf_counter() - t0, "peak_bytes": _peak_since(base, resettable, dev),
              "label": "Graph.from_edge_index(directed=False, normalization='column') + functional.pagerank fwd + bwd"}
    return G, y, record


def g3_ours_first_call(graph_name: str, F_: int, dev: torch.device, seed: int = 900) -> Dict[str, object]:
    """Ours' build + first fwd+bwd alone, in a further fresh process (see G3_FIRST_CALL_PROCESSES)."""
    x0, grad = _g3_inputs(graph_name, F_, seed)
    return _g3_ours_first_call(graph_name, x0.to(dev).requires_grad_(), grad, dev)[2]


def g3_measurement(graph_name: str, F_: int, dev: torch.device, dense_f64_check: bool,
                   seed: int = 900) -> Dict[str, object]:
    """G3 one-shot: ours' build + first fwd+bwd, then tinyBIG's, each timed and peak-measured, and the
    agreement of both with the float64 solution of the dense system."""
    from rpn2kernels import functional

    N, _, undirected, _ = GRAPHS[graph_name]
    links = graph_links(graph_name)
    x0, grad = _g3_inputs(graph_name, F_, seed)
    out: Dict[str, object] = {"graph": graph_name, "N": N, "links": int(links.shape[1]), "F": F_, "c": C}

    # ours: Graph build + first forward + backward
    x = x0.clone().to(dev).requires_grad_()
    G, y, out["ours"] = _g3_ours_first_call(graph_name, x, grad, dev)
    y_ours, gx_ours = y.detach().cpu(), x.grad.detach().cpu()
    del y
    steady = []
    for _ in range(3):
        x.grad = None
        t0 = time.perf_counter()
        functional.pagerank(G, x, C).backward(grad.to(dev))
        steady.append(time.perf_counter() - t0)
    out["ours"]["steady_fwdbwd_s_min_of_3"] = min(steady)

    # tinyBIG: topology + to_matrix + normalisation + dense inverse + first forward + backward
    xt = x0.clone().to(dev).requires_grad_()
    link_list = [tuple(pair) for pair in links.t().tolist()]   # tinyBIG's input: a list of (u, v) links
    base, resettable = _fresh_peak_start(dev)
    t0 = time.perf_counter()
    A, y = _tb_pagerank_first(N, link_list, undirected, xt, grad.to(dev))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    out["tinybig"] = {"build_first_fwdbwd_s": time.perf_counter() - t0,
                      "peak_bytes": _peak_since(base, resettable, dev),
                      "label": "graph topology + to_matrix (scipy COO, densified column normalisation) + "
                               "c·torch.inverse(I − (1−c)Â) (dense N×N) + torch.matmul(A.t(), X) fwd + bwd"}
    y_tb, gx_tb = y.detach().cpu(), xt.grad.detach().cpu()
    del y
    out["first_call_speedup"] = out["tinybig"]["build_first_fwdbwd_s"] / out["ours"]["build_first_fwdbwd_s"]

    # steady state with tinyBIG's real cached A_pr: alternating fwd+bwd runs
    Ad = A.detach()
    runs = {"ours": [], "tinybig": []}
    fns = {"ours": lambda v: functional.pagerank(G, v, C), "tinybig": lambda v: _tb_apply(Ad, v)}
    gd = grad.to(dev)
    for r in range(STEADY_RUNS):
        for name in (("ours", "tinybig") if r % 2 == 0 else ("tinybig", "ours")):
            v = x0.clone().to(dev).requires_grad_()
            t0 = time.perf_counter()
            fns[name](v).backward(gd)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            runs[name].append(time.perf_counter() - t0)
    med = {name: sorted(ts)[len(ts) // 2] for name, ts in runs.items()}
    out["steady_state"] = {"fwdbwd_s": runs, "fwdbwd_median_s": med, "speedup": med["tinybig"] / med["ours"],
                           "label": "ours: functional.pagerank on the built Graph; tinyBIG: its cached dense A_pr, "
                                    "torch.matmul(A.t(), X); alternating fwd+bwd runs"}

    # float64 solution of the dense system by refinement with tinyBIG's float32 inverse
    A32 = A.detach().cpu()
    del A
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        P64 = torch.sparse_csr_tensor(G.rowptr.cpu(), G.col.cpu(), G.edge_values().cpu().double(), (N, N))
        Pt64 = P64.t().to_sparse_csr()

        def inv_T(r):   # ≈ M^{-T}·r = A32ᵀ·r / c  (M = I − (1−c)Â)
            return (A32.t() @ r.float()).double() / C

        def inv(r):     # ≈ M^{-1}·r = A32·r / c
            return (A32 @ r.float()).double() / C

        z64, hist_f = _refine(inv_T, lambda z: z - (1 - C) * torch.sparse.mm(P64, z), C * x0.double())
        gx64, hist_b = _refine(inv, lambda z: z - (1 - C) * torch.sparse.mm(Pt64, z), C * grad.double())
    out["float64_reference"] = {
        "method": "float64 solution of the dense systems (I − (1−c)Âᵀ)·z = c·x (output A_prᵀ·x) and "
                  "(I − (1−c)Â)·y = c·G (gradient A_pr·G) by iterative refinement: corrections through tinyBIG's "
                  "float32 dense inverse, residuals in float64",
        "relative_residuals_forward": hist_f, "relative_residuals_backward": hist_b}
    out["agreement"] = {
        "ours_output": _rel_error(y_ours, z64), "ours_grad_x": _rel_error(gx_ours, gx64),
        "tinybig_output": _rel_error(y_tb, z64), "tinybig_grad_x": _rel_error(gx_tb, gx64),
        "ours_vs_tinybig_output": _rel_error(y_ours, y_tb)}
    if dense_f64_check:
        t0 = time.perf_counter()
        Ahat = G.dense().cpu().double()
        A64 = C * torch.inverse(torch.eye(N, dtype=torch.float64) - (1 - C) * Ahat)
        out["float64_reference"]["literal_dense_inverse"] = {
            "seconds": time.perf_counter() - t0,
            "refined_vs_literal_output": _rel_error(z64, A64.t() @ x0.double()),
            "refined_vs_literal_grad_x": _rel_error(gx64, A64 @ grad.double()),
            "ours_output_vs_literal": _rel_error(y_ours, A64.t() @ x0.double())}
    return out


def g5_measurement(graph_name: str, m: int, seed: int, dev: torch.device, reps: int = 3) -> Dict[str, object]:
    """G5 above DENSE_ROW_MAX_N: the runner case's ours, reference and tinyBIG implementations (same code),
    ``reps`` alternating fwd+bwd runs of ours and tinyBIG, the first one peak-measured and value-checked
    against the reference (the runner's tolerance), saved bytes of each."""
    from ..runner import saved_bytes

    case = _g5_case(graph_name, m, resolve_ours_backends(dev), dev, seed, tinybig_row=True)
    impls = {i.name: i for i in case.impls}
    inputs = case.make_inputs(dev)
    grad_out = inputs["grad_out"]
    prepared = {name: impls[name].setup(inputs) for name in ("reference", "ours", "tinybig")}
    N = case.meta["N"]
    out: Dict[str, object] = {"graph": graph_name, "N": N, "m": m, "n_by_n_bytes": 4 * N * N,
                              "ours_largest_tensor_elements": case.meta.get("ours_largest_tensor_elements"),
                              "impls": {name: {"label": impls[name].label} for name in ("ours", "tinybig")}}
    p = prepared["reference"]
    p.reset()
    y = p.forward()
    y.backward(grad_out)
    want = {"output": y.detach().clone(), **{k: v.detach().clone() for k, v in p.grads().items()}}
    p.reset()
    del y
    for name in ("ours", "tinybig"):
        out["impls"][name].update(saved_bytes(prepared[name]))
        out["impls"][name]["fwdbwd_s"] = []
    for r in range(reps):
        for name in (("ours", "tinybig") if r % 2 == 0 else ("tinybig", "ours")):
            p = prepared[name]
            p.reset()
            if r == 0:
                base, resettable = _fresh_peak_start(dev)
            t0 = time.perf_counter()
            y = p.forward()
            y.backward(grad_out)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            out["impls"][name]["fwdbwd_s"].append(time.perf_counter() - t0)
            if r == 0:
                out["impls"][name]["peak_bytes"] = _peak_since(base, resettable, dev)
                got = {"output": y.detach(), **p.grads()}
                out["impls"][name]["check"] = {k: _rel_error(got[k], v) for k, v in want.items() if k in got}
            del y
            p.reset()
    for name in ("ours", "tinybig"):
        ts = sorted(out["impls"][name]["fwdbwd_s"])
        out["impls"][name]["fwdbwd_median_s"] = ts[len(ts) // 2]
    out["speedup"] = out["impls"]["tinybig"]["fwdbwd_median_s"] / out["impls"]["ours"]["fwdbwd_median_s"]
    return out


MARK = "@@RPN2K-ONE-SHOT "
STEADY_RUNS = 5
#: Fresh processes that time ours' G3 build + first call; the speedup uses their median. One cold-process
#: sample swung 0.10–0.27 s at N = 10,000 on this shared VM (the same code, minutes apart), while
#: tinyBIG's ~25 s first call (timed once, in the first process) varies by a few percent.
G3_FIRST_CALL_PROCESSES = 3


def one_shot_subprocess_main(requests: List[Dict[str, object]], threads: int) -> Dict[str, object]:
    """Runs in a fresh process: start-up once, then every G3 and G5 request."""
    torch.set_num_threads(threads)
    results: Dict[str, object] = {}
    if not requests:
        return results
    dev = torch.device(requests[0]["device"])
    results["process_start_up"] = _warm_up(int(requests[0].get("F", requests[0].get("m", 8))), dev)
    for request in requests:
        key = request["key"]
        t0 = time.perf_counter()
        try:
            if request["kind"] == "G3":
                results[key] = g3_measurement(request["graph"], int(request["F"]), dev, bool(request["dense_f64_check"]))
            elif request["kind"] == "G3first":
                results[key] = g3_ours_first_call(request["graph"], int(request["F"]), dev)
            else:
                results[key] = g5_measurement(request["graph"], int(request["m"]), int(request["seed"]), dev)
        except Exception as error:  # one failed measurement must not lose the others
            results[key] = {"error": f"{type(error).__name__}: {error}"}
        results[key]["threads"] = torch.get_num_threads()
        results[key]["wall_s"] = time.perf_counter() - t0
    return results


def _run_one_shot_subprocess(requests: List[Dict[str, object]], threads: int, timeout_s: float) -> Dict[str, object]:
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.run([sys.executable, "-m", "rpn2kernels.bench.suites.propagation", "--one-shot",
                               json.dumps({"requests": requests, "threads": threads})],
                              capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {r["key"]: {"error": f"one-shot subprocess timed out after {timeout_s:.0f} s"} for r in requests}
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    why = f"one-shot subprocess exited {proc.returncode}: {proc.stderr[-2000:]}"
    return {r["key"]: {"error": why} for r in requests}


def _g3_targets(result: Dict[str, object]) -> List[Dict[str, object]]:
    targets = []
    speedup = result.get("first_call_speedup")
    targets.append({"id": "G3.first_call", "text": "build + first fwd+bwd ≥ 100× tinyBIG-equivalent (dense inverse)",
                    "kind": "speedup", "threshold": 100.0, "value": speedup,
                    "met": None if speedup is None else speedup >= 100.0})
    agreement = result.get("agreement", {})
    worst = max((agreement[k]["max_rel_err"] for k in ("ours_output", "ours_grad_x") if k in agreement), default=None)
    ok = None if worst is None else bool(worst <= 1e-4 and all(agreement[k]["finite"] for k in
                                                              ("ours_output", "ours_grad_x")))
    targets.append({"id": "G3.agreement", "text": "agreement ≤ 1e-4 relative (max|diff|/max|ref|, output and grad) "
                                                  "with the float64 dense solution", "kind": "max_rel_err",
                    "threshold": 1e-4, "value": worst, "met": ok})
    steady = result.get("steady_state", {}).get("speedup")
    targets.append({"id": "G3.steady_vs_dense", "text": f"steady-state fwd+bwd ≥ 1× tinyBIG's cached dense product "
                                                        f"(real A_pr, median of {STEADY_RUNS} alternating runs)",
                    "kind": "speedup", "threshold": 1.0, "value": steady,
                    "met": None if steady is None else steady >= 1.0})
    return targets


def _g5_targets(result: Dict[str, object]) -> List[Dict[str, object]]:
    speedup = result.get("speedup")
    ours = result.get("impls", {}).get("ours", {})
    largest = result.get("ours_largest_tensor_elements")
    peak = ours.get("peak_bytes")
    n2 = result.get("N", 0) ** 2
    no_nn = None if largest is None else bool(largest < n2 and (peak is None or peak < 4 * n2))
    checks = [c for impl in result.get("impls", {}).values() for c in impl.get("check", {}).values()]
    return [{"id": "G5.tinybig_speedup", "text": "≥ 10× tinyBIG-equivalent (median of the alternating fwd+bwd runs)",
             "kind": "speedup", "threshold": 10.0, "value": speedup,
             "met": None if speedup is None else speedup >= 10.0},
            {"id": "G5.no_NxN", "text": "ours forms no N×N tensor (largest op output < N² elements; peak < 4·N² bytes)",
             "kind": "check", "threshold": n2, "value": largest, "met": no_nn},
            {"id": "G5.values", "text": "ours and tinyBIG match the reference (runner tolerance) at this N",
             "kind": "check", "threshold": RTOL, "value": max((c["max_rel_err"] for c in checks), default=None),
             "met": bool(checks) and all(c["within_runner_tolerance"] for c in checks)}]


def _chain_inverse_bi_float64(x: Tensor) -> Tensor:
    """Column-normalised (Σ_{k=1}^{L−1} S_sym^k)ᵀ·x in float64 without overflow and without the
    spectral method: Horner on Σ a_k (S/2)^k with a_k = 2^{k−(L−1)} (terms below 2^-1074 vanish)."""
    L = x.shape[1]
    n = L - 1
    x = x.double()

    def half_stencil(y):
        out = torch.zeros_like(y)
        out[:, 1:] += y[:, :-1]
        out[:, :-1] += y[:, 1:]
        return 0.5 * out

    def series(v):
        y = v * 2.0 ** 0  # a_n = 1
        for k in range(n - 1, 0, -1):
            y = v * (2.0 ** (k - n)) + half_stencil(y)
        return half_stencil(y)

    z = series(x)
    c = series(torch.ones((1, L, 1), dtype=torch.float64))
    return z / torch.where(c == 0, torch.ones_like(c), c)


def chain_check(L: int, b: int, m: int, device: str) -> Dict[str, object]:
    """C1: the bi-directional inverse approximation at L (no NaN forward or backward at (b, L, m);
    accuracy against an independent float64 computation on a small slice)."""
    from rpn2kernels import functional

    dev = torch.device(device)
    g = torch.Generator().manual_seed(901)
    x = torch.randn(b, L, m, generator=g).to(dev).requires_grad_()
    t0 = time.perf_counter()
    y = functional.chain_propagate(x, "inverse_approx", bidirectional=True)
    y.backward(torch.randn(b, L, m, generator=g).to(dev))
    seconds = time.perf_counter() - t0
    finite = bool(torch.isfinite(y).all() and torch.isfinite(x.grad).all())
    small = torch.randn(2, L, 4, generator=g, dtype=torch.float64)
    t1 = time.perf_counter()
    want = _chain_inverse_bi_float64(small)
    got = functional.chain_propagate(small.float().to(dev), "inverse_approx", bidirectional=True).cpu()
    return {"L": L, "b": b, "m": m, "fwd_bwd_s": seconds, "no_nan_fwd_bwd": finite,
            "float64_horner_s": time.perf_counter() - t1,
            "vs_float64_horner (b=2, m=4)": _rel_error(got, want),
            "tinybig": "NaN for L ≥ 133 in fp32 (its walk counts overflow; see the C1 bi-directional inverse row)"}


def _mb(v: Optional[float]) -> str:
    return "-" if v is None else f"{v / 2**20:.1f} MB"


def _print_one_shot(one_shot: Dict[str, object]) -> None:
    lines = ["== propagation one-shot measurements (too slow for the runner's repetitions; run once, in a fresh "
             "process for G3/G5)"]
    for key, r in one_shot.items():
        if key == "process_start_up":
            lines.append(f"  fresh-process start-up (not counted): ours {r['ours_first_calls_on_a_40_node_graph_s']:.2f} s, "
                         f"tinyBIG {r['tinybig_first_call_on_a_40_node_graph_s']:.2f} s")
            continue
        if "error" in r:
            lines.append(f"  {key}: ERROR {r['error']}")
            continue
        if key.startswith("G3"):
            o, t, a = r["ours"], r["tinybig"], r["agreement"]
            samples = o.get("build_first_fwdbwd_s_samples", [o["build_first_fwdbwd_s"]])
            median = o.get("build_first_fwdbwd_s_median", o["build_first_fwdbwd_s"])
            lines.append(f"  {key}: build + first fwd+bwd: ours median {median * 1e3:.1f} ms of "
                         f"{len(samples)} fresh processes ({', '.join(f'{v * 1e3:.1f}' for v in samples)}; peak "
                         f"{_mb(o['peak_bytes'])}), tinyBIG {t['build_first_fwdbwd_s']:.2f} s (peak "
                         f"{_mb(t['peak_bytes'])})")
            lines.append(f"      vs float64: ours out {a['ours_output']['max_rel_err']:.2e}, grad "
                         f"{a['ours_grad_x']['max_rel_err']:.2e}; tinyBIG out {a['tinybig_output']['max_rel_err']:.2e}")
            st = r["steady_state"]["fwdbwd_median_s"]
            lines.append(f"      steady fwd+bwd median: ours {st['ours'] * 1e3:.1f} ms, tinyBIG cached dense product "
                         f"{st['tinybig'] * 1e3:.1f} ms")
        elif key.endswith("no-NxN"):
            lines.append(f"  {key}: largest tensor produced by ours' fwd+bwd {r['ours_largest_tensor_elements']} "
                         f"elements (N² = {r['n_by_n_elements']})")
        elif key.startswith("G5"):
            o, t = r["impls"]["ours"], r["impls"]["tinybig"]
            lines.append(f"  {key}: fwd+bwd median ours {o['fwdbwd_median_s'] * 1e3:.1f} ms (peak {_mb(o.get('peak_bytes'))}, "
                         f"saved {_mb(o['saved_bytes'])}), tinyBIG {t['fwdbwd_median_s']:.2f} s (peak "
                         f"{_mb(t.get('peak_bytes'))}, saved {_mb(t['saved_bytes'])}); N×N = {_mb(r['n_by_n_bytes'])}")
        else:
            lines.append(f"  {key}: L={r['L']} no NaN fwd+bwd: {r['no_nan_fwd_bwd']}; vs float64 Horner "
                         f"{r['vs_float64_horner (b=2, m=4)']['max_rel_err']:.2e}")
        for t in r.get("targets", []):
            mark = {True: "MET", False: "NOT MET", None: "n/a"}[t["met"]]
            value = "-" if t["value"] is None else f"{t['value']:.3g}"
            lines.append(f"    target {t['id']:<22} {value:>8} vs {t['threshold']:.3g}  {mark:<8} {t['text']}")
    print("\n".join(lines), flush=True)


def _add_first_call_samples(results: Dict[str, object], g3_requests: List[Dict[str, object]], threads: int,
                            timeout_s: float) -> None:
    """Times ours' G3 first call in G3_FIRST_CALL_PROCESSES − 1 further fresh processes and bases each
    first_call_speedup on the median of all samples (every sample is kept in the result)."""
    measured = [r for r in g3_requests if "error" not in results.get(r["key"], {"error": None})]
    if not measured:
        return
    samples = {r["key"]: [results[r["key"]]["ours"]["build_first_fwdbwd_s"]] for r in measured}
    for _ in range(G3_FIRST_CALL_PROCESSES - 1):
        extra = _run_one_shot_subprocess([dict(r, kind="G3first") for r in measured], threads, timeout_s)
        for r in measured:
            if "error" not in extra.get(r["key"], {"error": None}):
                samples[r["key"]].append(extra[r["key"]]["build_first_fwdbwd_s"])
    for r in measured:
        result, times = results[r["key"]], samples[r["key"]]
        median = sorted(times)[len(times) // 2]
        result["ours"]["build_first_fwdbwd_s_samples"] = times
        result["ours"]["build_first_fwdbwd_s_median"] = median
        result["first_call_speedup"] = result["tinybig"]["build_first_fwdbwd_s"] / median
        result["first_call_note"] = (f"tinyBIG's first call (one process) ÷ the median of ours' first calls in "
                                     f"{len(times)} fresh processes (samples: build_first_fwdbwd_s_samples)")


def run_one_shot(threads: Optional[int] = None, timeout_s: float = 3600.0) -> Dict[str, object]:
    """The one-shot measurements registered by this process's case setups (G3 first call and float64
    agreement per graph, G5 tinyBIG above DENSE_ROW_MAX_N, C1 L=4096 check); clears the registry."""
    threads = threads or torch.get_num_threads()
    pending = dict(_ONE_SHOT)
    _ONE_SHOT.clear()
    requests = [dict(spec, key=key) for key, spec in pending.items() if spec["kind"] in ("G3", "G5")]
    results: Dict[str, object] = {}
    if requests:
        results.update(_run_one_shot_subprocess(requests, threads, timeout_s))
        _add_first_call_samples(results, [r for r in requests if r["kind"] == "G3"], threads, timeout_s)
        for request in requests:
            r = results.setdefault(request["key"], {"error": "no result"})
            if "error" not in r:
                r["targets"] = _g3_targets(r) if request["kind"] == "G3" else _g5_targets(r)
    for key, spec in pending.items():
        if spec["kind"] == "G5probe":
            n2 = spec["N"] ** 2
            results[key] = {"N": spec["N"], "ours_largest_tensor_elements": spec["largest"], "n_by_n_elements": n2,
                            "targets": [{"id": "G5.no_NxN", "text": "ours forms no N×N tensor (largest tensor any op "
                                                                    "produces in one fwd+bwd < N² elements; the row's "
                                                                    "peak memory shows the rest)",
                                         "kind": "check", "threshold": n2, "value": spec["largest"],
                                         "met": spec["largest"] < n2}]}
            continue
        if spec["kind"] != "C1":
            continue
        try:
            r = chain_check(spec["L"], spec["b"], spec["m"], spec["device"])
            ok = r["no_nan_fwd_bwd"] and r["vs_float64_horner (b=2, m=4)"]["max_rel_err"] <= 1e-4
            r["targets"] = [{"id": "C1.no_nan", "text": f"no NaN for L up to {spec['L']} (bi-directional inverse, "
                                                        "fwd+bwd; ≤ 1e-4 vs float64)", "kind": "check",
                             "threshold": 1e-4, "value": r["vs_float64_horner (b=2, m=4)"]["max_rel_err"],
                             "met": bool(ok)}]
        except Exception as error:  # a failed check is a result, not a crash of the run
            r = {"error": f"{type(error).__name__}: {error}", "targets": []}
        results[key] = r
    if results:
        _print_one_shot(results)
    return results


def suite_info(device: torch.device) -> Dict[str, object]:
    version, why = pyg_status()
    info: Dict[str, object] = {
        "ours_backends": resolve_ours_backends(torch.device(device)),
        "peers": {
            "torch_geometric": version if version else why,
            "torch.sparse.mm": f"torch {torch.__version__} (CSR)",
            "tinyBIG": "0.2.1 algorithm transcribed in rpn2kernels/bench/suites/propagation.py",
        },
        "graphs": {name: {"N": v[0], "links": v[1], "undirected": v[2], "seed": v[3]} for name, v in GRAPHS.items()},
        "graph_generator": f"endpoint probability ∝ rank^-{SKEW} (Chung-Lu style), labels permuted, distinct links",
        "pagerank_iterations": _pagerank_iterations(),
    }
    t0 = time.perf_counter()
    one_shot = run_one_shot()
    if one_shot:
        targets = [dict(t, case=key) for key, r in one_shot.items() for t in r.get("targets", [])]
        info["one_shot"] = one_shot
        info["one_shot_targets"] = {
            "total": len(targets), "met": sum(1 for t in targets if t["met"]),
            "not_met": [f"{t['case']}: {t['id']}" for t in targets if t["met"] is False],
            "note": "evaluated here, not in summary.targets_*: the runner times ≥10 repetitions, these run once",
            "elapsed_s": time.perf_counter() - t0}
    return info


__all__ = ["cases", "suite_info", "QUICK_NOTE", "GRAPHS", "SIZES", "DENSE_ROW_MAX_N", "graph_links",
           "resolve_ours_backends", "g3_measurement", "g5_measurement", "chain_check", "run_one_shot",
           "spmm_pass_bytes", "pyg_status"]


def _main(argv: Sequence[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m rpn2kernels.bench.suites.propagation",
                                 description="one-shot G3/G5 measurements in a fresh process (used by suite_info)")
    ap.add_argument("--one-shot", required=True, help='JSON: {"requests": [...], "threads": N}')
    args = ap.parse_args(argv)
    request = json.loads(args.one_shot)
    result = one_shot_subprocess_main(request["requests"], int(request["threads"]))
    print(MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
