"""Drop-in torch.nn modules built on rpn2kernels.functional."""
from .expansion import Expansion, ExpansionLinear
from .propagation import ChainPropagation, EdgeAttention, GraphConv, GraphPropagation

__all__ = ["Expansion", "ExpansionLinear", "GraphPropagation", "GraphConv", "EdgeAttention", "ChainPropagation"]
