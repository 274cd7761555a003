"""Sparse graph operators for the propagation family (functions.md §5.5).

A :class:`Graph` is tinyBIG's normalised adjacency Â over N nodes — Â[u, v] is the weight of the
link u → v — stored for application as z = Âᵀ·x (node v receives from the sources of its incoming
links), never densified:

* ``rowptr, col, value``: the CSR of P = Âᵀ (row v lists its sources u in increasing order);
* ``t_rowptr, t_col, t_perm``: the CSR of Pᵀ = Â, cached for backward (transpose SpMM without
  atomics); ``t_perm[j]`` is the position in P's edge arrays of the j-th edge of Pᵀ;
* ``t_value = value[t_perm]``: Pᵀ's values, derived (not saved in the state dict) so that no
  backward pass gathers nnz values again (≈27% of a backward SpMM at 10 M edges).

The edge values are fixed once built: build a new Graph to change them.

Indices are validated once, here. Normalisation is O(nnz) segment sums. A Graph is an
``nn.Module`` holding its arrays as buffers, so a module that holds one moves it with ``.to()``
and saves it in its ``state_dict``.
"""
from __future__ import annotations

from typing import Hashable, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

NORMALIZATIONS = (None, "column", "row", "row_column", "symmetric")


def _check_edge_index(edge_index: Tensor, num_nodes: Optional[int]) -> Tuple[Tensor, int]:
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"edge_index must be a torch.Tensor of shape (2, E), got {type(edge_index).__name__}")
    if edge_index.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"edge_index must have dtype int64 or int32, got {edge_index.dtype}")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
    edge_index = edge_index.long()
    if edge_index.numel():
        low = int(edge_index.min())
        if low < 0:
            raise ValueError(f"edge_index must hold node indices >= 0, got {low}")
        high = int(edge_index.max())
    else:
        high = -1
    if num_nodes is None:
        num_nodes = high + 1
    elif not isinstance(num_nodes, int) or num_nodes < 0:
        raise ValueError(f"num_nodes must be a non-negative int, got {num_nodes!r}")
    elif high >= num_nodes:
        raise ValueError(f"edge_index holds node index {high}, out of range for num_nodes={num_nodes}")
    return edge_index, num_nodes


def _coalesce(src: Tensor, dst: Tensor, weight: Tensor, num_nodes: int, reduce: str) -> Tuple[Tensor, Tensor, Tensor]:
    """Sorts edges by (src, dst) and merges duplicates with ``reduce`` ('sum' or 'max')."""
    if src.numel() == 0:
        return src, dst, weight
    key = src * num_nodes + dst
    key, order = torch.sort(key, stable=True)
    weight = weight[order]
    unique, counts = torch.unique_consecutive(key, return_counts=True)
    if unique.numel() != key.numel():
        # segment_reduce runs segments in a fixed order on every device (deterministic).
        weight = torch.segment_reduce(weight, reduce, lengths=counts)
    return unique // num_nodes, unique % num_nodes, weight


def _segment_sums(index: Tensor, weight: Tensor, num_nodes: int) -> Tensor:
    """Σ weight over equal ``index`` (index need not be sorted); float64 accumulation, fixed order."""
    order = torch.argsort(index, stable=True)
    counts = torch.bincount(index, minlength=num_nodes)
    sums = torch.segment_reduce(weight[order].double(), "sum", lengths=counts)
    return sums.to(weight.dtype)


def _nonzero_or_one(sums: Tensor) -> Tensor:
    return torch.where(sums == 0, torch.ones_like(sums), sums)


def normalize(src: Tensor, dst: Tensor, weight: Tensor, num_nodes: int, mode: Optional[str]) -> Tensor:
    """Edge weights of Â for A given as (src, dst, weight) triples without duplicates (§5.5 table)."""
    if mode not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {mode!r}")
    if mode is None or weight.numel() == 0:
        return weight
    if torch.isnan(weight).any():
        raise ValueError("edge weights hold NaN; normalisation would spread it over the graph")
    if mode == "row":
        return weight / _nonzero_or_one(_segment_sums(src, weight, num_nodes))[src]
    if mode == "column":
        return weight / _nonzero_or_one(_segment_sums(dst, weight, num_nodes))[dst]
    row_sums = _nonzero_or_one(_segment_sums(src, weight, num_nodes))
    if mode == "symmetric":
        col_sums = _nonzero_or_one(_segment_sums(dst, weight, num_nodes))
        return weight / (row_sums.sqrt()[src] * col_sums.sqrt()[dst])
    scaled = weight / row_sums.sqrt()[src]  # row_column: column sums taken after the row scaling
    return scaled / _nonzero_or_one(_segment_sums(dst, scaled, num_nodes)).sqrt()[dst]


def _csr(rows: Tensor, cols: Tensor, num_rows: int) -> Tuple[Tensor, Tensor, Tensor]:
    """(rowptr, col, order) of the CSR of the (rows, cols) pattern; order maps CSR position -> input edge."""
    key = rows * max(num_rows, 1) + cols
    order = torch.argsort(key, stable=True)
    counts = torch.bincount(rows, minlength=num_rows)
    rowptr = torch.zeros(num_rows + 1, dtype=torch.long, device=rows.device)
    torch.cumsum(counts, 0, out=rowptr[1:])
    return rowptr, cols[order], order


class Graph(nn.Module):
    """Normalised adjacency Â of N nodes, applied as z = Âᵀ·x (see the module docstring).

    Build with :meth:`from_edge_index` or :meth:`from_links`; the constructor takes the stored CSR
    arrays (as written by :meth:`state_dict`) and trusts them.
    """

    def __init__(self, num_nodes: int, rowptr: Tensor, col: Tensor, value: Optional[Tensor], t_rowptr: Tensor,
                 t_col: Tensor, t_perm: Tensor, normalization: Optional[str] = None):
        super().__init__()
        self.num_nodes = int(num_nodes)
        self.normalization = normalization
        self.register_buffer("rowptr", rowptr)
        self.register_buffer("col", col)
        self.register_buffer("value", value)
        self.register_buffer("t_rowptr", t_rowptr)
        self.register_buffer("t_col", t_col)
        self.register_buffer("t_perm", t_perm)
        self.register_buffer("t_value", self._derive_transposed_values(), persistent=False)

    def _derive_transposed_values(self) -> Optional[Tensor]:
        return None if self.value is None else self.value.detach()[self.t_perm]

    # -----------------------------------------------------------------------------------------
    @classmethod
    def from_edge_index(cls, edge_index: Tensor, num_nodes: Optional[int] = None, *,
                        edge_weight: Optional[Tensor] = None, directed: bool = True, self_loops: bool = False,
                        self_scaling: float = 1.0, normalization: Optional[str] = None,
                        dtype: Optional[torch.dtype] = None) -> "Graph":
        """Graph of the links edge_index[:, e] = (u, v) (source, target).

        Duplicate links collapse to weight 1 as in tinyBIG (weighted duplicates are summed);
        ``directed=False`` adds the reverse links and symmetrises to max(A, Aᵀ); ``self_loops``
        adds ``self_scaling``·I (a self-loop already present then weighs 1 + s); ``normalization``
        is one of ``None, 'column', 'row', 'row_column', 'symmetric'`` (§5.5).
        """
        edge_index, num_nodes = _check_edge_index(edge_index, num_nodes)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        device = edge_index.device
        if edge_weight is not None:
            if not isinstance(edge_weight, Tensor) or not edge_weight.is_floating_point():
                raise TypeError("edge_weight must be a floating-point tensor, got "
                                f"{getattr(edge_weight, 'dtype', type(edge_weight).__name__)}")
            if edge_weight.shape != (edge_index.shape[1],):
                raise ValueError(f"edge_weight must have shape (E={edge_index.shape[1]},), got "
                                 f"{tuple(edge_weight.shape)}")
            if edge_weight.device != device:
                raise ValueError(f"edge_weight must be on edge_index's device {device}, got {edge_weight.device}")
            dtype = dtype or edge_weight.dtype
        dtype = dtype or torch.get_default_dtype()
        src, dst = edge_index[0], edge_index[1]
        weight = (edge_weight.to(dtype) if edge_weight is not None
                  else torch.ones(src.numel(), dtype=dtype, device=device))
        src, dst, weight = _coalesce(src, dst, weight, num_nodes, "sum" if edge_weight is not None else "max")
        if not directed:
            src, dst, weight = _coalesce(torch.cat([src, dst]), torch.cat([dst, src]), torch.cat([weight, weight]),
                                         num_nodes, "max")
        if self_loops:
            nodes = torch.arange(num_nodes, device=device)
            loops = torch.full((num_nodes,), float(self_scaling), dtype=dtype, device=device)
            src, dst, weight = _coalesce(torch.cat([src, nodes]), torch.cat([dst, nodes]), torch.cat([weight, loops]),
                                         num_nodes, "sum")
        weight = normalize(src, dst, weight, num_nodes, normalization)
        if normalization is None and edge_weight is None and bool((weight == 1).all()):
            weight = None  # a 0/1 adjacency: the kernels skip the value stream
        return cls.from_adjacency_triples(src, dst, weight, num_nodes, normalization)

    @classmethod
    def from_adjacency_triples(cls, src: Tensor, dst: Tensor, weight: Optional[Tensor], num_nodes: int,
                               normalization: Optional[str] = None) -> "Graph":
        """Graph of Â given as its entries Â[src[e], dst[e]] = weight[e] (duplicates kept as separate
        entries; None weights mean 1)."""
        rowptr, col, order = _csr(dst, src, num_nodes)  # P = Âᵀ: rows are targets
        value = weight[order] if weight is not None else None
        t_rowptr, t_col, t_order = _csr(src, dst, num_nodes)  # Pᵀ = Â: rows are sources
        position_in_p = torch.empty_like(order)
        position_in_p[order] = torch.arange(order.numel(), device=order.device)
        return cls(num_nodes, rowptr, col, value, t_rowptr, t_col, position_in_p[t_order], normalization)

    @classmethod
    def from_links(cls, nodes: Sequence[Hashable], links: Sequence[Tuple[Hashable, Hashable]], *,
                   directed: bool = True, self_loops: bool = False, self_scaling: float = 1.0,
                   normalization: Optional[str] = None, device: Optional[torch.device] = None,
                   dtype: Optional[torch.dtype] = None) -> "Graph":
        """tinyBIG-style construction: nodes are indexed in list order; each link (u, v) is an edge
        u → v. A link naming an unknown node raises ValueError."""
        index = {node: i for i, node in enumerate(nodes)}
        pairs = []
        for link in links:
            try:
                pairs.append((index[link[0]], index[link[1]]))
            except KeyError as error:
                raise ValueError(f"link {tuple(link)!r} names node {error.args[0]!r}, which is not in nodes") from None
        edge_index = torch.tensor(pairs, dtype=torch.long, device=device).reshape(-1, 2).t()
        return cls.from_edge_index(edge_index, len(index), directed=directed, self_loops=self_loops,
                                   self_scaling=self_scaling, normalization=normalization, dtype=dtype)

    # -----------------------------------------------------------------------------------------
    @property
    def num_edges(self) -> int:
        return int(self.col.numel())

    @property
    def device(self) -> torch.device:
        return self.rowptr.device

    def edge_values(self) -> Tensor:
        """Â's entries in P's edge order (ones for an unweighted graph)."""
        if self.value is not None:
            return self.value
        return torch.ones(self.num_edges, device=self.device)

    def transposed_values(self) -> Optional[Tensor]:
        """Â's entries in the edge order of the cached transpose (None for an unweighted graph)."""
        return self.t_value

    def dense(self) -> Tensor:
        """Â as a dense N×N matrix — for tests and small graphs only."""
        rows = torch.repeat_interleave(torch.arange(self.num_nodes, device=self.device),
                                       self.rowptr[1:] - self.rowptr[:-1])
        out = torch.zeros(self.num_nodes, self.num_nodes, dtype=self.edge_values().dtype, device=self.device)
        return out.index_put_((self.col, rows), self.edge_values(), accumulate=True)

    def extra_repr(self) -> str:
        return f"num_nodes={self.num_nodes}, num_edges={self.num_edges}, normalization={self.normalization!r}"

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The stored arrays define the graph: adopt their sizes (a checkpoint of another graph of
        # the same kind loads) and re-derive num_nodes.
        for name in ("rowptr", "col", "value", "t_rowptr", "t_col", "t_perm"):
            key = prefix + name
            if key in state_dict and getattr(self, name) is not None:
                setattr(self, name, torch.empty_like(state_dict[key]))
        if prefix + "rowptr" in state_dict:
            self.num_nodes = state_dict[prefix + "rowptr"].numel() - 1
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.t_value = self._derive_transposed_values()


__all__ = ["Graph", "NORMALIZATIONS", "normalize"]
