"""Op registration (fake kernels, autograd, Triton ops) and dispatch on a chosen backend."""
from . import expansion, linear, propagation

__all__ = ["expansion", "linear", "propagation"]
