"""``chain`` of the tinyBIG namespace (tinyBIG: ``tinybig/koala/topology/chain.py``)."""
from __future__ import annotations

from .base_topology import base_topology

__all__ = ["chain"]


class chain(base_topology):
    """The path 0 → 1 → … → L−1 (nodes ``range(length)``, links (t, t+1)); ``bi_directional=True``
    makes it undirected (tinyBIG ``chain``).

    As in tinyBIG, ``length()`` returns the number of stored links, L − 1 (``size()``); the number
    of positions is ``get_node_num()``. A chain of length 1 has no links and works (tinyBIG's
    ``to_matrix`` fails on it, defect 7.1 #12).
    """

    def __init__(self, length: int, name: str = 'chain', bi_directional: bool = False, *args, **kwargs):
        if length is None or length < 1:
            raise ValueError('A positive length needs to be specified')
        nodes = list(range(length))
        links = [(i, i + 1) for i in range(length - 1)]
        super().__init__(name=name, nodes=nodes, links=links, directed=not bi_directional, *args, **kwargs)

    def length(self):
        return self.size()

    def is_path(self) -> bool:
        """True while the structure is still the unmodified path 0 → … → L−1 (the chain kernels
        apply only then; otherwise the interdependences fall back to the general graph path)."""
        L = len(self.nodes)
        if any(self.nodes.get(i) != i for i in range(L)):
            return False
        if len(self.out_neighbors) != max(L - 1, 0):
            return False
        return all(self.out_neighbors.get(i) == {i + 1: 1} for i in range(L - 1))
