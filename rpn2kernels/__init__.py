"""rpn2kernels: fused CPU, Triton and CUDA kernels for RPN 2 (Reconciled Polynomial Network 2.0).

Layers: kernels (csrc/, rpn2kernels/triton) -> ops (rpn2kernels.ops, torch.ops.rpn2kernels.*) ->
functional -> nn modules -> tinyBIG-compatible namespace (rpn2kernels.tinybig) -> models.
"""
from . import _extension  # noqa: F401  (loads the compiled kernels first)
from . import ops  # noqa: F401  (fake kernels and autograd of every op)
from . import backends, basis, functional, memory, nn
from .backends import BackendUnavailable
from .graph import Graph

__version__ = "0.1.0"

__all__ = ["backends", "basis", "functional", "memory", "nn", "BackendUnavailable", "Graph", "__version__"]
