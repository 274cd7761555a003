"""tinyBIG-compatible namespace: ``import rpn2kernels.tinybig as tb`` in place of ``import tinybig``.

Mirrors tinyBIG 0.2.1's module tree, class names, constructor keywords and methods on top of the
rpn2kernels kernels. Submodules are added here as they are implemented.
"""
from . import module, expansion, interdependence, koala

__version__ = "0.2.1"  # the tinyBIG release whose API this namespace follows

__all__ = ["module", "expansion", "interdependence", "koala"]
