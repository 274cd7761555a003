"""Drop-in torch.nn modules built on rpn2kernels.functional."""
from .expansion import Expansion, ExpansionLinear

__all__ = ["Expansion", "ExpansionLinear"]
