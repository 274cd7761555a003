"""Loads the compiled extension (rpn2kernels._C), which registers the C++ CPU and CUDA kernels.

If it cannot be loaded the package still imports in reference-only mode with one warning, unless
RPN2K_REQUIRE_EXT=1 (set in CI), where the import fails so a broken build can never go unnoticed.
"""
from __future__ import annotations

import os
import warnings
from typing import Optional

import torch

LOAD_ERROR: Optional[str] = None

try:
    from . import _C  # noqa: F401  (importing runs the TORCH_LIBRARY registrations)
except ImportError as error:  # pragma: no cover - exercised only on a broken install
    if os.environ.get("RPN2K_REQUIRE_EXT", "0") == "1":
        raise ImportError(
            f"rpn2kernels: the compiled extension rpn2kernels._C failed to load ({error}) and "
            "RPN2K_REQUIRE_EXT=1 forbids reference-only mode; rebuild with "
            "`pip install --no-build-isolation -e .`") from error
    LOAD_ERROR = str(error)
    warnings.warn(
        f"rpn2kernels: compiled extension not loaded ({error}); running in reference-only mode "
        "(pure PyTorch, slow). Rebuild with `pip install --no-build-isolation -e .`.",
        RuntimeWarning, stacklevel=2)


def extension_loaded() -> bool:
    return LOAD_ERROR is None


def has_kernel(op: str, dispatch_key: str) -> bool:
    """Whether the compiled library registered a kernel for rpn2kernels::<op> under dispatch_key."""
    if not extension_loaded():
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"rpn2kernels::{op}", dispatch_key)


# Read once: the registrations are fixed after the load, and torch.compile cannot trace the
# dispatcher query that answers it (backend choice runs inside compiled forwards).
_CUDA_COMPILED = has_kernel("expand_linear", "CUDA")


def cuda_compiled() -> bool:
    """True when the extension was built with its CUDA kernels (FORCE_CUDA=1 or a CUDA torch)."""
    return _CUDA_COMPILED


def cpu_isa() -> Optional[str]:
    """The instruction set the compiled CPU kernels' hand-vectorised loops use now ("avx2" or
    "generic"; RPN2K_CPU_ISA=generic forces the baseline), or None without the extension."""
    return _C.cpu_isa() if extension_loaded() else None


def set_cpu_isa(name: str) -> str:
    """Selects the copy of those loops ("generic", "avx2" or "auto"); returns the one now active.
    Raises ValueError for a name this CPU cannot run. For tests and measurements."""
    if not extension_loaded():
        raise RuntimeError(f"rpn2kernels: the compiled extension is not loaded ({LOAD_ERROR})")
    return _C.cpu_isa(name)


# Read once, like _CUDA_COMPILED: default backend choices depend on it inside compiled forwards.
_CPU_ISA_AT_IMPORT = cpu_isa()
_REQUESTED_ISA = os.environ.get("RPN2K_CPU_ISA")
if _CPU_ISA_AT_IMPORT is not None and _REQUESTED_ISA not in (None, "", "auto", _CPU_ISA_AT_IMPORT):
    warnings.warn(f"rpn2kernels: RPN2K_CPU_ISA={_REQUESTED_ISA!r} cannot be used (expected 'auto', 'generic', or "
                  f"'avx2' on a CPU with AVX2 and FMA); the CPU kernels use {_CPU_ISA_AT_IMPORT!r}",
                  RuntimeWarning, stacklevel=2)


def cpu_vector_kernels() -> bool:
    """True when the hand-vectorised AVX2+FMA loops were active at import (the defaults that
    depend on them, e.g. narrow_linear's on the CPU, are fixed then)."""
    return _CPU_ISA_AT_IMPORT == "avx2"
