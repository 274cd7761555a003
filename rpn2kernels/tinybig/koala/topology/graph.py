"""``graph`` of the tinyBIG namespace (tinyBIG: ``tinybig/koala/topology/graph.py``)."""
from __future__ import annotations

from .base_topology import base_topology

__all__ = ["graph"]


class graph(base_topology):
    """A graph: ``graph(nodes=[...], links=[(u, v), ...], directed=True)`` (tinyBIG ``graph``).

    ``to_graph(...)`` gives the rpn2kernels :class:`~rpn2kernels.graph.Graph` of its adjacency (see
    :class:`base_topology`). ``bfs``, ``dfs``, ``radius`` and ``shortest_path`` are empty stubs in
    tinyBIG 0.2.1 (they return None); here they raise NotImplementedError.
    """

    def __init__(self, name: str = 'graph', *args, **kwargs):
        super().__init__(name=name, *args, **kwargs)

    def bfs(self, start=None, goal=None):
        raise NotImplementedError("graph.bfs is not implemented (an empty stub in tinyBIG 0.2.1)")

    def dfs(self, start=None, goal=None):
        raise NotImplementedError("graph.dfs is not implemented (an empty stub in tinyBIG 0.2.1)")

    def radius(self):
        raise NotImplementedError("graph.radius is not implemented (an empty stub in tinyBIG 0.2.1)")

    def shortest_path(self, start=None, goal=None):
        raise NotImplementedError("graph.shortest_path is not implemented (an empty stub in tinyBIG 0.2.1)")
