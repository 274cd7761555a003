"""Op registration (fake kernels, autograd, Triton ops) and dispatch on a chosen backend."""
from . import expansion

__all__ = ["expansion"]
