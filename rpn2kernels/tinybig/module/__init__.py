"""Base modules of the tinyBIG namespace (mirrors ``tinybig.module``)."""
from .base_function import function
from .base_transformation import transformation

__all__ = ["function", "transformation"]
