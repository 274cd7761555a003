"""Guards against a test run that silently skips what CI must exercise."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

import rpn2kernels
from rpn2kernels import _extension, backends

IN_CI = os.environ.get("CI", "").lower() == "true"


def test_compiled_extension_is_loaded_with_cpu_kernels():
    assert _extension.extension_loaded(), _extension.LOAD_ERROR
    for op in ("expand", "expand_backward", "expand_linear", "expand_linear_backward", "spmm", "sddmm",
               "edge_attention", "edge_attention_backward", "chain_filter", "chain_scan", "narrow_linear"):
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


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []


def test_avx2_loops_are_built_where_the_cpu_has_avx2():
    """A build that lost the AVX2+FMA copies would pass every test on the baseline loops (the AVX2
    parameters then skip); on an x86-64 CPU with AVX2 and FMA they must be the active ones."""
    flags = _cpu_flags()
    if not ("avx2" in flags and "fma" in flags):
        pytest.skip("this CPU has no AVX2+FMA")
    if os.environ.get("RPN2K_CPU_ISA") not in (None, "", "auto"):
        pytest.skip(f"RPN2K_CPU_ISA={os.environ['RPN2K_CPU_ISA']} forces another copy")
    assert _extension.cpu_isa() == "avx2" and _extension.cpu_vector_kernels()


def test_info_reports_backends():
    from rpn2kernels.info import report

    text = report()
    assert "cpu kernels     compiled" in text and "expand_linear" in text
    assert f"cpu vector isa  {_extension.cpu_isa()}" in text and "narrow_linear" in text


@pytest.mark.parametrize("request_isa, warns", [("generic", False), ("auto", False), ("sse9", True)])
def test_cpu_isa_environment_flag(request_isa, warns):
    """RPN2K_CPU_ISA selects the copy of the hand-vectorised CPU loops at import; a name that cannot
    be used keeps the best one and says so."""
    code = ("import warnings; warnings.simplefilter('always'); import rpn2kernels._extension as e; "
            "print(e.cpu_isa(), e.cpu_vector_kernels())")
    env = dict(os.environ, RPN2K_CPU_ISA=request_isa)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    isa, vector = done.stdout.split()
    if request_isa == "generic":
        assert (isa, vector) == ("generic", "False")
    else:
        assert isa == _extension.set_cpu_isa("auto")
    assert ("RPN2K_CPU_ISA='sse9' cannot be used" in done.stderr) == warns
