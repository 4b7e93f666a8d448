"""Connected components over duplicate edges, in memory proportional to the edges, not the rows.

Only rows that have at least one edge take part, so the memory is bounded by the edge count: the edge list
(2 x int64 per edge), the sorted distinct endpoints (at most 2 per edge) and scipy's CSR graph over them,
about 60 bytes per edge in all. Duplicate edges are far fewer than rows (a row with no near-duplicate has
none), which is what lets one process hold them while no process holds all signatures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def components(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nodes, label): every distinct endpoint once, sorted, with its component's smallest node as label.

    The label depends only on the set of edges, never on their order, so reruns agree.
    """
    nodes, index = np.unique(np.concatenate([left, right]), return_inverse=True)
    if not len(nodes):
        return nodes, nodes.copy()
    rows, cols = index[: len(left)], index[len(left) :]
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(len(nodes), len(nodes)))
    _, component = connected_components(graph, directed=False)
    # Smallest node per component: nodes are sorted, so the first occurrence of each component is its min.
    first = np.full(component.max() + 1, len(nodes), dtype=np.int64)
    np.minimum.at(first, component, np.arange(len(nodes)))
    return nodes, nodes[first[component]]


@dataclass
class EdgeList:
    """Verified duplicate edges on the driver: endpoints as row keys (a < b) and the space that found them."""

    a: np.ndarray
    b: np.ndarray
    space: np.ndarray

    @classmethod
    def distinct(cls, a: np.ndarray, b: np.ndarray, space: np.ndarray) -> "EdgeList":
        """Each (a, b, space) once, in a fixed order: bands and partitions report the same pair repeatedly."""
        if not len(a):
            return cls(a, b, space)
        # Sorted by (a, b, space), as np.unique(axis=0) would give them, ~3x faster than it.
        order = np.lexsort((space, b, a))
        a, b, space = a[order], b[order], space[order]
        first = np.ones(len(a), dtype=bool)
        first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1]) | (space[1:] != space[:-1])
        return cls(a[first], b[first], space[first])

    def within(self, spaces: list[int]) -> "EdgeList":
        keep = np.isin(self.space, spaces)
        return EdgeList(self.a[keep], self.b[keep], self.space[keep])

    def without_nodes(self, nodes: np.ndarray) -> "EdgeList":
        keep = ~(np.isin(self.a, nodes) | np.isin(self.b, nodes))
        return EdgeList(self.a[keep], self.b[keep], self.space[keep])

    def counts(self) -> dict[int, int]:
        spaces, counts = np.unique(self.space, return_counts=True)
        return {int(s): int(n) for s, n in zip(spaces, counts)}
