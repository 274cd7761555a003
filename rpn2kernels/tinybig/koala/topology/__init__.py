"""Topological structures of the tinyBIG namespace (mirrors ``tinybig.koala.topology``).

``base_topology``, ``graph`` and ``chain`` keep tinyBIG's constructor keywords, attributes
(``nodes`` as an id -> index dict, ``out_neighbors``, ``in_neighbors``, ``directed``) and methods,
including ``to_matrix``; ``to_graph`` returns the adjacency as a :class:`rpn2kernels.graph.Graph`
(CSR, never densified), which is what the interdependence classes apply. tinyBIG's ``grid`` lives
with the geometric interdependences and is not part of this package.
"""
from .base_topology import base_topology
from .graph import graph
from .chain import chain

__all__ = ["base_topology", "graph", "chain"]
