"""Test helpers shared by tests/ and bench/: parametrisation over every backend and device, and
dtype tolerances.

Without a GPU the Triton kernels run on CPU tensors in the interpreter (TRITON_INTERPRET=1, set by
tests/conftest.py before anything imports Triton). The compiled CPU backend and the Triton backend
are always parametrised: if either cannot run, its tests fail (they are never skipped). Only the
CUDA-device parameters skip, and only when no GPU is present.
"""
from __future__ import annotations

import os
from typing import List, Tuple

import torch

TOLERANCES = {
    torch.float64: dict(rtol=1e-10, atol=1e-10),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=2e-3, atol=2e-3),
    torch.bfloat16: dict(rtol=2e-2, atol=2e-2),
}


def backend_device_params() -> List:
    """pytest params of (backend, device) for every backend on every device."""
    import pytest

    no_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
    params = [
        pytest.param(("cpu", "cpu"), id="cpu-cpu"),
        pytest.param(("reference", "cpu"), id="reference-cpu"),
    ]
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        params.append(pytest.param(("triton", "cpu"), id="triton-interpreter"))
    params += [
        pytest.param(("cuda", "cuda"), id="cuda-cuda", marks=no_gpu),
        pytest.param(("triton", "cuda"), id="triton-cuda", marks=no_gpu),
        pytest.param(("reference", "cuda"), id="reference-cuda", marks=no_gpu),
    ]
    return params


def compiled_backend_params() -> List:
    """(backend, device) of the kernel backends only (no reference): what opcheck and gradcheck cover."""
    return [p for p in backend_device_params() if p.values[0][0] != "reference"]


def scaled_tolerance(dtype: torch.dtype, reference: torch.Tensor) -> dict:
    """Tolerance relative to the magnitude of the reference (sums of many features)."""
    tol = dict(TOLERANCES[dtype])
    scale = reference.abs().max().item() if reference.numel() else 1.0
    tol["atol"] = tol["atol"] * max(1.0, scale)
    return tol


def split_backend_device(param: Tuple[str, str]) -> Tuple[str, torch.device]:
    backend, device = param
    return backend, torch.device(device)
