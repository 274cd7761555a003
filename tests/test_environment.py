"""Guards against a test run that silently skips what CI must exercise."""
import os
import shutil

import pytest
import torch

import rpn2kernels
from rpn2kernels import _extension, backends

IN_CI = os.environ.get("CI", "").lower() == "true"


def test_compiled_extension_is_loaded_with_cpu_kernels():
    assert _extension.extension_loaded(), _extension.LOAD_ERROR
    for op in ("expand", "expand_backward", "expand_linear", "expand_linear_backward", "spmm", "sddmm",
               "edge_attention", "edge_attention_backward", "chain_filter", "chain_scan"):
        assert _extension.has_kernel(op, "CPU"), f"rpn2kernels::{op} has no CPU kernel"
    assert backends.default_backend("expand_linear", torch.device("cpu")) == "cpu"


def test_triton_kernels_run_here():
    ok, why = backends.triton_status()
    assert ok, why
    if not torch.cuda.is_available():
        assert backends.triton_interpreting(), "without a GPU the tests must run Triton under TRITON_INTERPRET=1"
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert backends.refusal("triton", device, torch.float32) is None


def test_nvcc_is_present_in_ci():
    if IN_CI:
        assert shutil.which("nvcc") or os.path.exists("/usr/local/cuda/bin/nvcc"), "CI must compile every .cu file"


def test_backend_selection_order_and_refusals(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    assert backends.select_backend("expand_linear", cpu, torch.float32) == "cpu"
    monkeypatch.setenv(backends.ENV_VAR, "reference")
    assert backends.select_backend("expand_linear", cpu, torch.float32) == "reference"
    assert backends.select_backend("expand_linear", cpu, torch.float32, backend="cpu") == "cpu"
    with pytest.raises(rpn2kernels.BackendUnavailable,
                       match=r"backend 'cpu' \(backend argument\) refused: the cpu backend supports dtypes "
                             r"\(float32, float64\), got bfloat16"):
        backends.select_backend("expand_linear", cpu, torch.bfloat16, backend="cpu")
    monkeypatch.setenv(backends.ENV_VAR, "cuda")
    with pytest.raises(rpn2kernels.BackendUnavailable,
                       match=r"RPN2K_BACKEND environment variable\) refused: the cuda backend needs CUDA tensors"):
        backends.select_backend("expand_linear", cpu, torch.float32)
    with pytest.raises(rpn2kernels.BackendUnavailable, match=r"unknown backend 'fast'"):
        backends.select_backend("expand_linear", cpu, torch.float32, backend="fast")
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(rpn2kernels.BackendUnavailable, match=r"triton backend needs CUDA tensors \(or CPU tensors with "
                                                             r"TRITON_INTERPRET=1\)"):
        backends.select_backend("expand_linear", cpu, torch.float32, backend="triton")
    monkeypatch.delenv(backends.ENV_VAR)
    assert backends.select_backend("expand_linear", torch.device("meta"), torch.float32) == "reference"


def test_info_reports_backends():
    from rpn2kernels.info import report

    text = report()
    assert "cpu kernels     compiled" in text and "expand_linear" in text
