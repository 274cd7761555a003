"""Base modules of the tinyBIG namespace (mirrors ``tinybig.module``)."""
from .base_function import function
from .base_interdependence import interdependence
from .base_transformation import transformation

__all__ = ["function", "interdependence", "transformation"]
