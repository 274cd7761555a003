"""Chain and graph interdependences of the tinyBIG namespace
(tinyBIG: ``tinybig/interdependence/topological_interdependence.py``; functions.md §5.4, §5.5).

Same class names, constructor keywords, defaults and methods as tinyBIG 0.2.1, including the flags
tinyBIG ignores (kept behaviour 7.2 #10): multi-hop chains use self-scaling 1, the inverse and
exponential approximations and PageRank build their adjacency without self-loops.

``forward`` never forms A, A^h or any L×L / N×N matrix:

* unnormalised chains (and every uni-directional inverse / exponential chain, whose normalised
  adjacency is S itself) run on :func:`rpn2kernels.functional.chain_propagate` — causal filters,
  stencils, a prefix sum, and the DST-I form of the bi-directional inverse approximation, which is
  finite for every L (tinyBIG: NaN for L ≥ 133 in float32, defect 7.1 #11);
* normalised chains and graphs run on a :class:`rpn2kernels.graph.Graph` built once per device and
  dtype from the topology: :func:`~rpn2kernels.functional.propagate` (h SpMMs, Horner for the
  accumulative sums, column sums by the same recurrence on a ones vector), a truncated Taylor
  series for expm, and :func:`~rpn2kernels.functional.pagerank` (power series).

``calculate_A`` returns tinyBIG's matrix (sparse COO where tinyBIG returns one) and may be dense.
A non-empty post-processing list acts on A itself, so forward then uses the dense A as tinyBIG does.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor

from ... import functional as _F
from ...chain import EXP_STENCIL_ORDER, EXP_STENCIL_ORDER_DEFAULT
from ..koala.topology import base_topology, chain as chain_structure, graph as graph_structure
from ..koala.topology.base_topology import graph_to_sparse
from ..module.base_interdependence import interdependence

__all__ = [
    "chain_interdependence", "multihop_chain_interdependence", "inverse_approx_multihop_chain_interdependence",
    "exponential_approx_multihop_chain_interdependence",
    "graph_interdependence", "multihop_graph_interdependence", "pagerank_multihop_graph_interdependence",
]

_LOW_PRECISION = (torch.float32, torch.float16, torch.bfloat16)


def as_topology(structure: Any, cls=base_topology):
    """Our topology object for ``structure``: returned as is if it is one; a foreign object with
    tinyBIG's attributes (``nodes`` dict, ``out_neighbors``, ``directed``) is copied."""
    if structure is None or isinstance(structure, base_topology):
        return structure
    if not (hasattr(structure, 'nodes') and hasattr(structure, 'out_neighbors') and hasattr(structure, 'directed')):
        raise TypeError(f"expected a koala topology (chain / graph), got {type(structure).__name__}")
    if cls is chain_structure and type(structure).__name__ == 'chain':
        copy = chain_structure.__new__(chain_structure)
    else:
        copy = graph_structure.__new__(graph_structure)
    base_topology.__init__(copy, name=getattr(structure, 'name', 'graph'), directed=structure.directed)
    copy.nodes = dict(structure.nodes)
    copy.out_neighbors = {k: dict(v) for k, v in structure.out_neighbors.items()}
    copy.in_neighbors = {k: dict(v) for k, v in getattr(structure, 'in_neighbors', {}).items()}
    return copy


class _topological_interdependence(interdependence):
    """Shared machinery: the Graph cache, the structured application on both layouts, calculate_A."""

    #: does tinyBIG's calculate_A return a sparse COO matrix for this class
    _sparse_A = True

    def _topology(self) -> base_topology:
        raise NotImplementedError

    def _adjacency_options(self) -> Dict[str, Any]:
        """The keywords tinyBIG passes to ``to_matrix`` for this class."""
        raise NotImplementedError

    def _set_mappings(self):
        mappings = self._topology().get_mappings()
        self.node_id_index_map = mappings['node_id_index_map']
        self.node_index_id_map = mappings['node_index_id_map']

    def _graph(self, device, dtype):
        """The rpn2kernels Graph of Â, built once per (device, dtype) and kept out of the state dict
        (it is derived from the stored topology)."""
        key = (torch.device(device), dtype)
        cache = self.__dict__.setdefault('_graph_cache', {})
        if key not in cache:
            cache[key] = self._topology().to_graph(device=device, dtype=dtype, **self._adjacency_options())
            self._set_mappings()
        return cache[key]

    def _num_nodes(self) -> int:
        return self._topology().get_node_num()

    # --- structured operators (z = Aᵀ·y) -------------------------------------------------------
    def _chain_op(self, y3: Tensor):
        """Aᵀ over axis 1 of (B, L, F) with the chain kernels, or NotImplemented."""
        return NotImplemented

    def _graph_op(self, y: Tensor):
        """Aᵀ·y for y of shape (N, F) with the graph kernels (one SpMM for the plain variants), or
        NotImplemented."""
        return _F.propagate(self._graph(y.device, y.dtype), y)

    def _check_size(self, size: int, what: str):
        n = self._num_nodes()
        if size != n:
            raise ValueError(f"{type(self).__name__}: the topology has {n} nodes but the data has {size} {what}")

    def _apply_instance(self, x, w, data, device):
        if len(self.postprocess_functions):
            return NotImplemented
        self._check_size(data.size(-2), "instances (rows)")
        y3 = data if data.ndim == 3 else data.unsqueeze(0)
        z = self._chain_op(y3)
        if z is not NotImplemented:
            return z if data.ndim == 3 else z.squeeze(0)
        if data.ndim == 2:
            return self._graph_op(data)
        batch, n, f = data.shape
        z = self._graph_op(data.permute(1, 0, 2).reshape(n, batch * f))
        return z if z is NotImplemented else z.reshape(n, batch, f).permute(1, 0, 2)

    def _apply_attribute(self, x, w, data, device):
        if len(self.postprocess_functions):
            return NotImplemented
        self._check_size(data.size(-1), "attributes (columns)")
        n = data.size(-1)
        z = self._chain_op(data.reshape(-1, n, 1))
        if z is not NotImplemented:
            return z.reshape(data.shape)
        z = self._graph_op(data.reshape(-1, n).t().contiguous())
        return z if z is NotImplemented else z.t().reshape(data.shape)

    # --- calculate_A ---------------------------------------------------------------------------
    def _dense_formula(self, adj: Tensor) -> Tensor:
        """tinyBIG's construction of A from the dense adjacency (used only where no operator applies)."""
        raise NotImplementedError

    def _build_A(self, device) -> Tensor:
        if getattr(self, '_variant', None) == 'plain':  # A is the adjacency itself
            return graph_to_sparse(self._graph(device, torch.float32))
        n = self._num_nodes()
        eye = torch.eye(n, device=device)
        z = self._chain_op(eye.unsqueeze(0))
        z = z.squeeze(0) if z is not NotImplemented else self._graph_op(eye)
        if z is NotImplemented:
            adj = self._graph(device, torch.float32).dense()
            return self._dense_formula(adj)
        A = z.t().contiguous()
        return A.to_sparse_coo().coalesce() if self._sparse_A else A

    def calculate_A(self, x: torch.Tensor = None, w: torch.nn.Parameter = None, device: str = 'cpu', *args, **kwargs):
        cached = self._cached_A()
        if cached is not None:
            return cached
        self._set_mappings()
        A = self.post_process(x=self._build_A(device), device=device)
        if self.is_attribute_interdependence():
            assert A.shape == (self.m, self.calculate_m_prime())
        else:
            assert A.shape == (self.b, self.calculate_b_prime())
        return self._cache_A(A)

    def _apply(self, fn, *args, **kwargs):
        # Graphs are derived buffers: drop them when the module moves or changes dtype.
        self.__dict__.pop('_graph_cache', None)
        return super()._apply(fn, *args, **kwargs)


def _column_normalised(z: Tensor, c: Tensor) -> Tensor:
    return z / torch.where(c == 0, torch.ones_like(c), c)


def _taylor_expm(G, y: Tensor) -> Tensor:
    """expm(Âᵀ)·y = Σ_k (Âᵀ)^k·y/k! by Horner (order as for the chain stencil, ‖Â‖ ≤ 2)."""
    order = EXP_STENCIL_ORDER.get(y.dtype, EXP_STENCIL_ORDER_DEFAULT)
    z = y
    for j in range(order - 1, -1, -1):
        z = y + _F.propagate(G, z) / (j + 1)
    return z


# =============================================================================================
# Chains

class _multihop:
    """h and ``accumulative`` of the multi-hop classes (tinyBIG: matrix_power(A, 0) = I,
    accumulative_matrix_power(A, 0) = A)."""

    def _set_hops(self, h: int, accumulative: bool) -> None:
        if h < 0:
            raise ValueError(f"h must be >= 0, got {h}")
        self.h = h
        self.accumulative = accumulative

    def _hops(self) -> int:
        return max(self.h, 1) if self.accumulative else self.h

    def _build_A(self, device):
        if self._hops() == 0:
            return torch.eye(self._num_nodes(), device=device)
        return super()._build_A(device)


class chain_interdependence(_topological_interdependence):
    """Chain interdependence A = S + s·I over L positions (tinyBIG ``chain_interdependence``).

    z_t = s·K_t + K_{t−1} (uni-directional; + K_{t+1} when ``bi_directional``). Without
    normalisation forward is a 2-/3-tap filter; with it, one SpMM with the normalised adjacency.
    """

    _variant = 'plain'
    _sparse_A = True

    def __init__(
        self,
        b: int, m: int,
        interdependence_type: str = 'instance',
        name: str = 'chain_interdependence',
        chain: chain_structure = None,
        chain_length: int = None, bi_directional: bool = False,
        normalization: bool = False, normalization_mode: str = 'row',
        self_dependence: bool = True, self_scaling: float = 1.0,
        require_data: bool = False, require_parameters: bool = False,
        device: str = 'cpu', *args, **kwargs
    ):
        super().__init__(b=b, m=m, name=name, interdependence_type=interdependence_type, require_data=require_data,
                         require_parameters=require_parameters, device=device, *args, **kwargs)
        if chain is not None:
            self.chain = as_topology(chain, chain_structure)
        elif chain_length is not None:
            self.chain = chain_structure(length=chain_length, bi_directional=bi_directional)
        else:
            raise ValueError('Either chain structure of chain length must be provided...')
        self.node_id_index_map = None
        self.node_index_id_map = None
        self.normalization = normalization
        self.normalization_mode = normalization_mode
        self.self_dependence = self_dependence
        self.self_scaling = self_scaling

    _config_keys = ('normalization', 'normalization_mode', 'self_dependence', 'self_scaling')

    def is_bi_directional(self):
        return not self.chain.is_directed()

    def to_config(self):
        config = super().to_config()
        config["function_parameters"].update(chain_length=self.chain.get_node_num(),
                                             bi_directional=self.is_bi_directional())
        return config

    def _topology(self):
        return self.chain

    def _adjacency_options(self):
        return dict(self_dependence=self.self_dependence, self_scaling=self.self_scaling,
                    normalization=self.normalization, normalization_mode=self.normalization_mode)

    def _is_path(self) -> bool:
        return isinstance(self.chain, chain_structure) and self.chain.is_path()

    def _chain_kernel_applies(self) -> bool:
        return self._is_path() and not self.normalization

    def _chain_kwargs(self) -> Tuple[str, int, Dict[str, Any]]:
        return 'plain', 1, dict(self_dependence=self.self_dependence, self_scaling=self.self_scaling)

    def _chain_op(self, y3):
        if not self._chain_kernel_applies():
            return NotImplemented
        variant, hops, kwargs = self._chain_kwargs()
        if hops == 0:
            return y3
        return _F.chain_propagate(y3, variant, hops, bidirectional=self.is_bi_directional(), **kwargs)


class multihop_chain_interdependence(_multihop, chain_interdependence):
    """A = (S + I)^h, or Σ_{j=1}^{h} (S + I)^j with ``accumulative`` (column-normalised when
    bi-directional) (tinyBIG ``multihop_chain_interdependence``). As in tinyBIG, ``self_scaling`` is
    not used (s = 1). Forward: an (h+1)-tap causal filter, h stencils, or h SpMMs — never A^h."""

    _variant = 'multihop'

    def __init__(self, h: int = 1, accumulative: bool = False, name: str = 'multihop_chain_interdependence',
                 *args, **kwargs):
        super().__init__(name=name, *args, **kwargs)
        self._set_hops(h, accumulative)

    _config_keys = chain_interdependence._config_keys + ('h', 'accumulative')

    def _adjacency_options(self):
        return dict(self_dependence=self.self_dependence, self_scaling=1.0,
                    normalization=self.normalization, normalization_mode=self.normalization_mode)

    def _chain_kwargs(self):
        return 'multihop', self._hops(), dict(self_dependence=self.self_dependence, accumulative=self.accumulative)

    def _graph_op(self, y):
        hops = self._hops()
        if hops == 0:
            return y
        G = self._graph(y.device, y.dtype)
        z = _F.propagate(G, y, hops, accumulate=self.accumulative)
        if self.accumulative and self.is_bi_directional():
            c = _F.propagate(G, torch.ones((y.shape[0], 1), dtype=y.dtype, device=y.device), hops, accumulate=True)
            z = _column_normalised(z, c)
        return z


class inverse_approx_multihop_chain_interdependence(chain_interdependence):
    """A = (I − S)^{-1} (uni-directional: an inclusive prefix sum), or the column-normalised
    Σ_{k=1}^{L−1} S_sym^k (bi-directional) (tinyBIG ``inverse_approx_multihop_chain_interdependence``).
    Built without self-loops, as in tinyBIG. The bi-directional form runs through the DST-I
    diagonalisation of the path: finite for every L (tinyBIG: NaN for L ≥ 133 in float32)."""

    _variant = 'inverse_approx'

    def __init__(self, name: str = 'inverse_approx_multihop_chain_interdependence', normalization: bool = False,
                 normalization_mode: str = 'row', *args, **kwargs):
        super().__init__(name=name, normalization=normalization, normalization_mode=normalization_mode, *args,
                         **kwargs)

    def _adjacency_options(self):
        return dict(self_dependence=False, normalization=self.normalization,
                    normalization_mode=self.normalization_mode)

    @property
    def _sparse_A(self):
        return self.is_bi_directional()

    def _chain_kernel_applies(self):
        # Every normalisation of the uni-directional path adjacency S (no self-loops) is S itself.
        return self._is_path() and (not self.normalization or not self.is_bi_directional())

    def _chain_kwargs(self):
        return 'inverse_approx', 1, {}

    def _graph_op(self, y):
        if not self.is_bi_directional():
            return NotImplemented  # a non-path directed topology: tinyBIG's dense inverse
        G = self._graph(y.device, y.dtype)
        hops = max(y.shape[0] - 1, 1)
        z = _F.propagate(G, y, hops, accumulate=True)
        c = _F.propagate(G, torch.ones((y.shape[0], 1), dtype=y.dtype, device=y.device), hops, accumulate=True)
        return _column_normalised(z, c)

    def _dense_formula(self, adj):
        return torch.inverse(torch.eye(adj.shape[0], device=adj.device, dtype=adj.dtype) - adj)


class exponential_approx_multihop_chain_interdependence(chain_interdependence):
    """A = expm(S) (uni-directional: A[u, t] = 1/(t − u)!) or expm(S_sym)
    (tinyBIG ``exponential_approx_multihop_chain_interdependence``), built without self-loops as in
    tinyBIG. Forward: a causal 1/k! filter or a truncated Taylor series by Horner (stencils or
    SpMMs), never the dense exponential."""

    _variant = 'exponential_approx'

    def __init__(self, name: str = 'exponential_approx_multihop_chain_interdependence', normalization: bool = False,
                 normalization_mode: str = 'row', *args, **kwargs):
        super().__init__(name=name, normalization=normalization, normalization_mode=normalization_mode, *args,
                         **kwargs)

    def _adjacency_options(self):
        return dict(self_dependence=False, normalization=self.normalization,
                    normalization_mode=self.normalization_mode)

    def _chain_kernel_applies(self):
        return self._is_path() and (not self.normalization or not self.is_bi_directional())

    def _chain_kwargs(self):
        return 'exponential_approx', 1, {}

    def _graph_op(self, y):
        if not self.normalization:
            return NotImplemented  # an unnormalised non-path topology: tinyBIG's dense expm
        return _taylor_expm(self._graph(y.device, y.dtype), y)

    def _dense_formula(self, adj):
        return torch.matrix_exp(adj).to_sparse_coo().coalesce()


# =============================================================================================
# Graphs

class graph_interdependence(_topological_interdependence):
    """Graph interdependence A = Â (tinyBIG ``graph_interdependence``): z_v = Σ_u Â[u, v]·K_u, one
    SpMM with the CSR of Âᵀ. ``graph`` is a koala graph; or give ``nodes`` and ``links``."""

    _variant = 'plain'

    def __init__(
        self,
        b: int, m: int,
        interdependence_type: str = 'instance',
        name: str = 'graph_interdependence',
        graph: graph_structure = None,
        nodes: list = None, links: list = None, directed: bool = True,
        normalization: bool = False, normalization_mode: str = 'row',
        self_dependence: bool = False,
        require_data: bool = False, require_parameters: bool = False,
        device: str = 'cpu', *args, **kwargs
    ):
        super().__init__(b=b, m=m, name=name, interdependence_type=interdependence_type, require_data=require_data,
                         require_parameters=require_parameters, device=device, *args, **kwargs)
        if graph is not None:
            self.graph = as_topology(graph, graph_structure)
        elif nodes is not None and links is not None:
            self.graph = graph_structure(nodes=nodes, links=links, directed=directed)
        else:
            raise ValueError('Either nodes or links must be provided')
        self.node_id_index_map = None
        self.node_index_id_map = None
        self.normalization = normalization
        self.normalization_mode = normalization_mode
        self.self_dependence = self_dependence

    _config_keys = ('normalization', 'normalization_mode', 'self_dependence')

    def to_config(self):
        config = super().to_config()
        nodes = sorted(self.graph.nodes, key=self.graph.nodes.__getitem__)
        config["function_parameters"].update(nodes=nodes, links=self.graph._directed_links(),
                                             directed=self.graph.is_directed())
        return config

    def get_node_index_id_map(self):
        if self.node_index_id_map is None:
            warnings.warn("The mapping has not been assigned yet, please call the calculate_A method first...")
        return self.node_index_id_map

    def get_node_id_index_map(self):
        if self.node_id_index_map is None:
            warnings.warn("The mapping has not been assigned yet, please call the calculate_A method first...")
        return self.node_id_index_map

    def _topology(self):
        return self.graph

    def _adjacency_options(self):
        return dict(self_dependence=self.self_dependence, normalization=self.normalization,
                    normalization_mode=self.normalization_mode)

    def get_graph(self, device='cpu', dtype=torch.float32):
        """The rpn2kernels Graph of Â this interdependence applies (cached per device and dtype)."""
        return self._graph(device, dtype)


class multihop_graph_interdependence(_multihop, graph_interdependence):
    """A = Â^h, or Σ_{k=1}^{h} Â^k with ``accumulative`` (tinyBIG ``multihop_graph_interdependence``).
    Forward: h SpMMs (Horner for the sum) — never Â^h, which fills in."""

    _variant = 'multihop'

    def __init__(self, h: int = 1, accumulative: bool = False, name: str = 'multihop_graph_interdependence',
                 *args, **kwargs):
        super().__init__(name=name, *args, **kwargs)
        self._set_hops(h, accumulative)

    _config_keys = graph_interdependence._config_keys + ('h', 'accumulative')

    def _graph_op(self, y):
        hops = self._hops()
        if hops == 0:
            return y
        return _F.propagate(self._graph(y.device, y.dtype), y, hops, accumulate=self.accumulative)


class pagerank_multihop_graph_interdependence(graph_interdependence):
    """A = c·(I − (1−c)·Â)^{-1} with Â built without self-loops, as in tinyBIG
    (``pagerank_multihop_graph_interdependence``). Forward runs the power series
    c·Σ_k (1−c)^k (Âᵀ)^k·K to float precision (2^-24 / 2^-53) with
    :func:`rpn2kernels.functional.pagerank`; if the series diverges ((1−c)·ρ(Â) ≥ 1, possible only
    without normalisation) it warns and solves the dense system instead."""

    _variant = 'pagerank'
    _sparse_A = False

    def __init__(self, c: float = 0.15, name: str = 'pagerank_multihop_graph_interdependence', *args, **kwargs):
        super().__init__(name=name, *args, **kwargs)
        self.c = c

    _config_keys = graph_interdependence._config_keys + ('c',)

    def _adjacency_options(self):
        return dict(self_dependence=False, normalization=self.normalization,
                    normalization_mode=self.normalization_mode)

    def _steps(self, G, dtype) -> Optional[int]:
        """Series length for float precision, or None when the series diverges (cached per graph)."""
        cache = self.__dict__.setdefault('_steps_cache', {})
        key = (id(G), dtype)
        if key not in cache:
            tol = 2.0 ** -24 if dtype in _LOW_PRECISION else 2.0 ** -53
            c = float(self.c)
            if c >= 1.0:
                steps = 0
            elif G.normalization in ('column', 'row', 'symmetric'):
                steps = _F.pagerank_steps(G, c, tol)
            else:
                radius = _F.spectral_radius(G)
                if radius == 0.0:
                    # nilpotent Â (a DAG): the series ends after at most N − 1 terms
                    # (pagerank_steps would return 0 here)
                    steps = max(G.num_nodes - 1, 0)
                elif (1.0 - c) * radius >= 1.0:
                    steps = None
                else:
                    steps = math.ceil(math.log(tol) / math.log((1.0 - c) * radius))
            cache[key] = steps
        return cache[key]

    def _graph_op(self, y):
        G = self._graph(y.device, y.dtype)
        steps = self._steps(G, y.dtype)
        if steps is None:
            warnings.warn(f"{type(self).__name__}: the PageRank series diverges on this unnormalised graph "
                          "((1-c)·ρ(Â) >= 1); solving the dense N×N system instead")
            n = G.num_nodes
            system = torch.eye(n, dtype=y.dtype, device=y.device) - (1.0 - self.c) * G.dense().to(y.dtype).t()
            return torch.linalg.solve(system, self.c * y)
        return _F.pagerank(G, y, float(self.c), steps=steps)

    def _apply(self, fn, *args, **kwargs):
        self.__dict__.pop('_steps_cache', None)
        return super()._apply(fn, *args, **kwargs)
