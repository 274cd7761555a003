"""``base_topology`` of the tinyBIG namespace (tinyBIG: ``tinybig/koala/topology/base_topology.py``).

Same constructor keywords, attributes and methods as tinyBIG 0.2.1. Nodes are indexed in the order
of the node list (``nodes`` maps node id -> row index); each link (u, v) is the entry A[u, v] = 1 of
the adjacency (duplicates collapse to 1); an undirected topology is symmetrised to max(A, Aᵀ).

Differences (docs/tinybig-differences.md):

* ``to_graph(...)`` (new) returns the adjacency, with self-loops and degree normalisation applied,
  as a :class:`rpn2kernels.graph.Graph`: CSR arrays, O(nnz) normalisation, never a dense N×N
  matrix. ``to_matrix(...)`` returns the same values as tinyBIG (a sparse COO tensor) and is built
  from it, so tinyBIG's dense N×N detour during normalisation is gone.
* A topology without links (a chain of length 1, an edgeless graph) gives an empty adjacency
  (plus self-loops when requested) instead of tinyBIG's IndexError (defect 7.1 #12).
* ``normalization_mode`` also accepts ``'symmetric'`` (D_r^{-1/2}·A·D_c^{-1/2}, the GCN
  normalisation), next to tinyBIG's ``'row'``, ``'column'`` and ``'row_column'``.
* ``add_node`` gives a new node the next free index (tinyBIG stores the index 1 for every added
  node), ``delete_node`` re-indexes the remaining nodes in order and removes the node's links
  from both neighbour dicts, and ``get_neighbors`` returns the neighbours (tinyBIG returns None).
"""
from __future__ import annotations

import pickle
import os
import warnings
from typing import Any, Dict, Hashable, List, Optional, Tuple

import torch

__all__ = ["base_topology", "graph_normalization"]

#: tinyBIG's ``normalization_mode`` values, plus rpn2kernels' ``'symmetric'``.
NORMALIZATION_MODES = ("row", "column", "row_column", "symmetric")


def graph_normalization(normalization: bool, normalization_mode: Optional[str]) -> Optional[str]:
    """tinyBIG's (``normalization``, ``normalization_mode``) pair -> rpn2kernels Graph normalisation."""
    if not normalization:
        return None
    if normalization_mode not in NORMALIZATION_MODES:
        raise ValueError(f"Invalid normalization option {normalization_mode!r}. Choose one of {NORMALIZATION_MODES}.")
    return normalization_mode


class base_topology:
    """A node set with directed or undirected links (tinyBIG ``base_topology``)."""

    def __init__(
        self,
        name: str = 'base_topological_structure',
        nodes: list = None,
        links: list = None,
        directed: bool = True,
        node_attributes: dict = None,
        node_labels: dict = None,
        link_attributes: dict = None,
        link_labels: dict = None,
        device: str = 'cpu',
        *args, **kwargs
    ):
        self.name = name
        self.directed = directed
        if nodes is None:
            self.nodes = {}
        elif isinstance(nodes, list):
            self.nodes = {node: index for index, node in enumerate(nodes)}
        else:
            raise TypeError('nodes must be a list...')
        self.out_neighbors, self.in_neighbors = self.links_to_neighbors(links, self.nodes)
        self.node_attributes = node_attributes
        self.node_labels = node_labels
        self.link_attributes = link_attributes
        self.link_labels = link_labels
        self.device = device

    # ------------------------------------------------------------------------------------------
    # persistence (same pickle layout as tinyBIG)
    _STATE_KEYS = ('name', 'directed', 'nodes', 'out_neighbors', 'in_neighbors', 'node_attributes', 'node_labels',
                   'link_attributes', 'link_labels', 'device')

    def save(self, complete_path: str = None, cache_dir='./data', output_file='data_screenshot', *args, **kwargs):
        path = complete_path if complete_path is not None else f'{cache_dir}/{output_file}'
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with open(path, 'wb') as f:
            pickle.dump({key: getattr(self, key) for key in self._STATE_KEYS}, f)
        return path

    @staticmethod
    def load(complete_path: str = None, cache_dir: str = './data', output_file: str = 'graph_screenshot_data',
             *args, **kwargs):
        path = complete_path if complete_path is not None else f'{cache_dir}/{output_file}'
        with open(path, 'rb') as f:
            data = pickle.load(f)
        topology_structure = base_topology()
        for key in base_topology._STATE_KEYS:
            setattr(topology_structure, key, data[key])
        return topology_structure

    # ------------------------------------------------------------------------------------------
    @staticmethod
    def links_to_neighbors(links: list, node_dict: dict):
        """(out_neighbors, in_neighbors) dicts of dicts; a link is recorded as an out-link only if
        its source is a node, and as an in-link only if its target is one (as in tinyBIG)."""
        if links is None or node_dict is None:
            return {}, {}
        out_neighbors: Dict[Hashable, Dict[Hashable, int]] = {}
        in_neighbors: Dict[Hashable, Dict[Hashable, int]] = {}
        for (n1, n2) in links:
            if n1 in node_dict:
                out_neighbors.setdefault(n1, {})[n2] = 1
            if n2 in node_dict:
                in_neighbors.setdefault(n2, {})[n1] = 1
        return out_neighbors, in_neighbors

    def is_directed(self):
        return self.directed

    def get_name(self) -> str:
        return self.name

    def get_node_num(self):
        return self.order()

    def get_link_num(self):
        return self.size()

    def order(self):
        return len(self.nodes)

    def size(self):
        """Number of stored (out-)links; an undirected link counts once, as given."""
        return sum(len(self.out_neighbors[n]) for n in self.out_neighbors)

    def get_nodes(self):
        return self.nodes

    def _directed_links(self) -> List[Tuple[Hashable, Hashable]]:
        return [(n1, n2) for n1, n2_dict in self.out_neighbors.items() for n2 in n2_dict]

    def get_links(self):
        links = self._directed_links()
        if not self.directed:
            links = list(set(links + [(n2, n1) for n1, n2 in links]))
        return links

    def get_out_neighbors(self, node):
        return self.out_neighbors[node].keys() if node in self.out_neighbors else []

    def get_in_neighbors(self, node):
        return self.in_neighbors[node].keys() if node in self.in_neighbors else []

    def get_neighbors(self, node):
        return list(set(self.get_out_neighbors(node)) | set(self.get_in_neighbors(node)))

    def add_node(self, node):
        if node not in self.nodes:
            self.nodes[node] = len(self.nodes)

    def add_nodes(self, node_list: dict | list | tuple):
        for node in node_list:
            self.add_node(node)

    def add_link(self, link: tuple):
        n1, n2 = link
        self.out_neighbors.setdefault(n1, {})[n2] = 1
        self.in_neighbors.setdefault(n2, {})[n1] = 1
        self.add_nodes([n1, n2])

    def add_links(self, link_list):
        for link in link_list:
            self.add_link(link)

    def delete_node(self, node):
        if node in self.nodes:
            del self.nodes[node]
            # keep indices contiguous, in the original order
            for index, n in enumerate(sorted(self.nodes, key=self.nodes.__getitem__)):
                self.nodes[n] = index
        for n in list(self.out_neighbors.pop(node, {})):
            self.in_neighbors.get(n, {}).pop(node, None)
            if n in self.in_neighbors and not self.in_neighbors[n]:
                del self.in_neighbors[n]
        for n in list(self.in_neighbors.pop(node, {})):
            self.out_neighbors.get(n, {}).pop(node, None)
            if n in self.out_neighbors and not self.out_neighbors[n]:
                del self.out_neighbors[n]

    def delete_nodes(self, node_list):
        for node in node_list:
            self.delete_node(node)

    def delete_link(self, link):
        n1, n2 = link
        if n1 in self.out_neighbors and n2 in self.out_neighbors[n1]:
            del self.out_neighbors[n1][n2]
        if n2 in self.in_neighbors and n1 in self.in_neighbors[n2]:
            del self.in_neighbors[n2][n1]

    def delete_links(self, link_list):
        for link in link_list:
            self.delete_link(link)

    def get_node_attribute(self, node):
        if node in self.nodes and self.node_attributes is not None and node in self.node_attributes:
            return self.node_attributes[node]
        warnings.warn("The node doesn't exist in the node list or node attribute dictionary...")
        return None

    def get_node_label(self, node):
        if node in self.nodes and self.node_labels is not None and node in self.node_labels:
            return self.node_labels[node]
        warnings.warn("The node doesn't exist in the node list or node label dictionary...")
        return None

    def get_link_attribute(self, link):
        n1, n2 = link
        if n1 in self.out_neighbors and n2 in self.out_neighbors[n1] and self.link_attributes is not None \
                and (n1, n2) in self.link_attributes:
            return self.link_attributes[(n1, n2)]
        warnings.warn("The link doesn't exist in the link list or link attribute dictionary...")
        return None

    def get_link_label(self, link):
        n1, n2 = link
        if n1 in self.out_neighbors and n2 in self.out_neighbors[n1] and self.link_labels is not None \
                and (n1, n2) in self.link_labels:
            return self.link_labels[(n1, n2)]
        warnings.warn("The link doesn't exist in the link list or link label dictionary...")
        return None

    # ------------------------------------------------------------------------------------------
    def edge_index(self, device: Any = 'cpu') -> torch.Tensor:
        """(2, E) int64 tensor of the stored links as (source index, target index), reverse links of
        an undirected topology not included (:meth:`to_graph` adds them)."""
        pairs = []
        for n1, n2 in self._directed_links():
            if n1 not in self.nodes or n2 not in self.nodes:
                missing = n1 if n1 not in self.nodes else n2
                raise ValueError(f"link {(n1, n2)!r} names node {missing!r}, which is not in nodes")
            pairs.append((self.nodes[n1], self.nodes[n2]))
        return torch.tensor(pairs, dtype=torch.long, device=device).reshape(-1, 2).t()

    def to_graph(self, self_dependence: bool = False, self_scaling: float = 1.0, normalization: bool = False,
                 normalization_mode: str = 'row_column', device: Any = 'cpu', dtype: Optional[torch.dtype] = None,
                 *args, **kwargs):
        """The adjacency Â of :meth:`to_matrix` (same keywords) as a :class:`rpn2kernels.graph.Graph`,
        applied as z = Âᵀ·x (node v receives from the sources of its in-links). O(nnz)."""
        from ....graph import Graph

        device = 'cpu' if device == 'mps' and not torch.backends.mps.is_available() else device
        return Graph.from_edge_index(
            self.edge_index(device=device), len(self.nodes), directed=self.directed, self_loops=self_dependence,
            self_scaling=self_scaling, normalization=graph_normalization(normalization, normalization_mode),
            dtype=dtype)

    def get_mappings(self):
        node_index_id_map = {index: node for node, index in self.nodes.items()}
        return {'node_id_index_map': self.nodes, 'node_index_id_map': node_index_id_map}

    def to_matrix(self, self_dependence: bool = False, self_scaling: float = 1.0, normalization: bool = False,
                  normalization_mode: str = 'row_column', device: str = 'cpu', *args, **kwargs):
        """(A, mappings) as in tinyBIG: A is an N×N sparse COO float32 tensor (``dtype=`` to change),
        mappings = {'node_id_index_map': ..., 'node_index_id_map': ...}."""
        g = self.to_graph(self_dependence=self_dependence, self_scaling=self_scaling, normalization=normalization,
                          normalization_mode=normalization_mode, device=device,
                          dtype=kwargs.get('dtype', torch.float32))
        mx = graph_to_sparse(g)
        return mx, self.get_mappings()


def graph_to_sparse(g) -> torch.Tensor:
    """Â of a rpn2kernels Graph as a coalesced sparse COO tensor (O(nnz))."""
    targets = torch.repeat_interleave(torch.arange(g.num_nodes, device=g.device), g.rowptr[1:] - g.rowptr[:-1])
    indices = torch.stack([g.col, targets])  # P = Âᵀ stores (target row, source col)
    values = g.value if g.value is not None else torch.ones(g.num_edges, device=g.device)
    return torch.sparse_coo_tensor(indices, values, (g.num_nodes, g.num_nodes)).coalesce()
