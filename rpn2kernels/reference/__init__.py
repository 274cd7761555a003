"""Pure-PyTorch references of every op: the oracle of every test and the `reference` backend."""
from . import expansion, linear, propagation

__all__ = ["expansion", "linear", "propagation"]
