"""The compiled CPU kernels' cache of freed output blocks (``csrc/cpu/allocation.h``).

A large CPU tensor from the process allocator is a fresh mapping whose pages fault one by one on
first write: filling a new 256 MiB output cost 110–118 ms on the 2-core development VM, more than
the 1M-node SpMM pass that wrote it, and a 16 MB chain output faulted in some training steps and not
in others. The CPU kernels therefore take outputs of 1 MiB or more from a cache of the blocks their
earlier outputs freed, as PyTorch's CUDA caching allocator does on the GPU. Free blocks are held up
to ``RPN2K_OUTPUT_CACHE_MB`` (default 1024; ``0`` turns the cache off, read at every allocation),
the oldest returned to the system beyond it. Values never depend on it.
"""
from __future__ import annotations

from typing import NamedTuple

from . import _extension


#: Free MiB kept when RPN2K_OUTPUT_CACHE_MB is unset (kDefaultOutputCacheMiB in allocation.h).
DEFAULT_OUTPUT_CACHE_MIB = 1024


class OutputCacheInfo(NamedTuple):
    free_blocks: int  #: blocks held for reuse
    free_bytes: int   #: their bytes
    hits: int         #: outputs served by a held block since the process started
    misses: int       #: outputs that needed a new block


def output_cache_info() -> OutputCacheInfo:
    """The cache's held blocks and its hit and miss counts (all zero without the extension)."""
    if not _extension.extension_loaded():
        return OutputCacheInfo(0, 0, 0, 0)
    return OutputCacheInfo(*_extension._C.output_cache_info())


def empty_output_cache() -> None:
    """Returns every held block to the system (tensors still in use keep their memory)."""
    if _extension.extension_loaded():
        _extension._C.empty_output_cache()


__all__ = ["DEFAULT_OUTPUT_CACHE_MIB", "OutputCacheInfo", "output_cache_info", "empty_output_cache"]
