"""Backend choice for every op: which implementation runs, and why another one was refused.

Order (design README): the ``backend=`` argument, then the ``RPN2K_BACKEND`` environment variable,
then the default for the tensor's device — CPU: ``cpu`` (the compiled C++ kernels); CUDA: the
per-op choice in :data:`CUDA_DEFAULTS`; any other device: ``reference``. A backend that was asked
for and cannot run raises :class:`BackendUnavailable` saying why; a CUDA tensor never falls back to
the reference silently.
"""
from __future__ import annotations

import functools
import os
from typing import Dict, List, Optional, Tuple

import torch

from . import _extension

BACKENDS = ("cpu", "cuda", "triton", "reference")
ENV_VAR = "RPN2K_BACKEND"

#: Default backend on CUDA tensors, per op family (the faster of the two where both exist), measured
#: on an H100 (bench/results/h100-*): for fp32 expand_linear the CUDA kernels ran the fwd+bwd 1.3× (B=32768,
#: m=n=512) to 2.2× (B=4096, m=n=256) faster than the Triton ones, whose fp32 dots run on FMA units.
CUDA_DEFAULTS: Dict[str, str] = {"expand": "cuda", "expand_linear": "cuda", "spmm": "cuda",
                                  "edge_attention": "cuda", "chain": "cuda", "narrow_linear": "cuda"}
#: Half-precision exceptions: Triton's dots use the tensor cores, the CUDA kernels do not
#: (bf16 expand_linear B=32768, m=n=512: Triton fwd 0.38 ms vs CUDA 3.0 ms on the H100).
CUDA_HALF_DEFAULTS: Dict[str, str] = {"expand_linear": "triton"}
HALF_DTYPES = (torch.float16, torch.bfloat16)

#: The backends of families that do not have all four. narrow_linear has no Triton kernel: on CUDA
#: its cuda backend calls cuBLAS, which needs no help with narrow shapes.
FAMILY_BACKENDS: Dict[str, Tuple[str, ...]] = {"narrow_linear": ("cpu", "cuda", "reference")}

#: Dtypes each backend computes in.
DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
    "triton": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
    "reference": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
}


class BackendUnavailable(RuntimeError):
    """A requested backend cannot run these inputs; the message says why."""


def triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_status() -> Tuple[bool, str]:
    """(importable, reason if not)."""
    if torch.compiler.is_compiling():  # Dynamo warns about lru_cache wrappers; traced into a constant
        return _triton_status_uncached()
    return _triton_status_cached()


@functools.lru_cache(maxsize=None)
def _triton_status_cached() -> Tuple[bool, str]:
    return _triton_status_uncached()


def _triton_status_uncached() -> Tuple[bool, str]:
    try:
        import triton  # noqa: F401
    except Exception as error:  # pragma: no cover - depends on the install
        return False, f"triton is not importable ({error})"
    return True, ""


def refusal(backend: str, device: torch.device, dtype: torch.dtype) -> Optional[str]:
    """Why ``backend`` cannot run tensors of this device and dtype, or None if it can."""
    if backend not in BACKENDS:
        return f"unknown backend {backend!r}; expected one of {BACKENDS}"
    if dtype not in DTYPES[backend]:
        names = ", ".join(str(d).replace("torch.", "") for d in DTYPES[backend])
        return f"the {backend} backend supports dtypes ({names}), got {str(dtype).replace('torch.', '')}"
    if backend == "reference":
        return None
    if backend == "cpu":
        if not _extension.extension_loaded():
            return f"the compiled extension is not loaded ({_extension.LOAD_ERROR})"
        if device.type != "cpu":
            return f"the cpu backend needs CPU tensors, got device {device}"
        return None
    if backend == "cuda":
        if device.type != "cuda":
            return f"the cuda backend needs CUDA tensors, got device {device}"
        if not _extension.cuda_compiled():
            return ("the extension was built without CUDA kernels (rebuild with FORCE_CUDA=1 and a CUDA "
                    "build of torch)" if _extension.extension_loaded()
                    else f"the compiled extension is not loaded ({_extension.LOAD_ERROR})")
        return None
    ok, why = triton_status()
    if not ok:
        return why
    if device.type == "cuda":
        return None
    if device.type == "cpu" and triton_interpreting():
        return None
    return (f"the triton backend needs CUDA tensors (or CPU tensors with TRITON_INTERPRET=1), "
            f"got device {device}")


def default_backend(family: str, device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    if device.type == "cpu":
        return "cpu" if _extension.extension_loaded() else "reference"
    if device.type == "cuda":
        if dtype in HALF_DTYPES and family in CUDA_HALF_DEFAULTS:
            return CUDA_HALF_DEFAULTS[family]
        return CUDA_DEFAULTS.get(family, "cuda")
    return "reference"


def requested_backend(family: str, backend: Optional[str] = None) -> Tuple[Optional[str], Optional[str]]:
    """(backend, source) asked for by the argument or RPN2K_BACKEND, or (None, None) when ``family``
    is left to its device default. RPN2K_BACKEND naming a backend this family lacks (triton for
    narrow_linear) leaves it on its default; an unknown name is returned, to be refused."""
    if backend is not None:
        return backend, "backend argument"
    env = os.environ.get(ENV_VAR)
    if env and (env in FAMILY_BACKENDS.get(family, BACKENDS) or env not in BACKENDS):
        return env, f"{ENV_VAR} environment variable"
    return None, None


def select_backend(family: str, device: torch.device, dtype: torch.dtype, backend: Optional[str] = None) -> str:
    """The backend that runs ``family`` on these tensors; raises BackendUnavailable if the one asked
    for (argument, environment, or the device default) cannot run them."""
    family_backends = FAMILY_BACKENDS.get(family, BACKENDS)
    if backend in BACKENDS and backend not in family_backends:
        raise BackendUnavailable(f"rpn2kernels.{family}: backend {backend!r} (backend argument) refused: "
                                 f"{family} has no {backend} kernel (its backends: {family_backends})")
    backend, source = requested_backend(family, backend)
    if backend is None:
        backend, source = default_backend(family, device, dtype), f"default for {device.type} {dtype} tensors"
        if device.type == "cuda":
            fallback = "cuda" if backend == "triton" else "triton"
            if (fallback in family_backends and refusal(backend, device, dtype) is not None
                    and refusal(fallback, device, dtype) is None):
                backend = fallback
    why = refusal(backend, device, dtype)
    if why is not None:
        hint = " (pass backend='reference' to run the pure-PyTorch version explicitly)" if device.type == "cuda" else ""
        raise BackendUnavailable(f"rpn2kernels.{family}: backend {backend!r} ({source}) refused: {why}{hint}")
    return backend


def available_backends(device: torch.device, dtype: torch.dtype = torch.float32) -> List[str]:
    return [b for b in BACKENDS if refusal(b, device, dtype) is None]
