"""Math library of the tinyBIG namespace (mirrors ``tinybig.koala``).

Only the parts the implemented classes need are here: ``koala.topology`` (chains and graphs).
"""
from . import topology

__all__ = ["topology"]
