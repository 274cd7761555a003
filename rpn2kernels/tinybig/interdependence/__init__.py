"""Interdependence functions ξ of the tinyBIG namespace (mirrors ``tinybig.interdependence``).

Same class names, constructor keywords, defaults and methods as tinyBIG 0.2.1 for the chain,
graph, parameterised bilinear and hybrid families; ``forward`` applies the operator with the
rpn2kernels kernels (chain filters, graph SpMM, PageRank series, edge attention) instead of
building A. Differences from tinyBIG are listed in docs/tinybig-differences.md.
"""
from ..module.base_interdependence import interdependence

from .topological_interdependence import (
    chain_interdependence,
    multihop_chain_interdependence,
    inverse_approx_multihop_chain_interdependence,
    exponential_approx_multihop_chain_interdependence,
    graph_interdependence,
    multihop_graph_interdependence,
    pagerank_multihop_graph_interdependence,
)
from .parameterized_bilinear_interdependence import (
    parameterized_bilinear_interdependence,
    lowrank_parameterized_bilinear_interdependence,
    hm_parameterized_bilinear_interdependence,
    lphm_parameterized_bilinear_interdependence,
    dual_lphm_parameterized_bilinear_interdependence,
    random_matrix_adaption_parameterized_bilinear_interdependence,
)
from .hybrid_interdependence import hybrid_interdependence

__all__ = [
    "interdependence",
    "chain_interdependence", "multihop_chain_interdependence", "inverse_approx_multihop_chain_interdependence",
    "exponential_approx_multihop_chain_interdependence",
    "graph_interdependence", "multihop_graph_interdependence", "pagerank_multihop_graph_interdependence",
    "parameterized_bilinear_interdependence", "lowrank_parameterized_bilinear_interdependence",
    "hm_parameterized_bilinear_interdependence", "lphm_parameterized_bilinear_interdependence",
    "dual_lphm_parameterized_bilinear_interdependence",
    "random_matrix_adaption_parameterized_bilinear_interdependence",
    "hybrid_interdependence",
]
