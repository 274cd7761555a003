"""Test session set-up. Runs before any rpn2kernels or Triton import.

- Without a GPU, Triton kernels run in the interpreter on CPU tensors (TRITON_INTERPRET=1 must be
  set before triton is imported).
- In CI (CI=true) the compiled extension is required: a failed build fails the import instead of
  dropping to reference-only mode.
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
if os.environ.get("CI", "").lower() == "true":
    os.environ.setdefault("RPN2K_REQUIRE_EXT", "1")

torch.manual_seed(0)


def _avx2_param():
    from rpn2kernels import _extension

    try:
        supported = _extension.set_cpu_isa("avx2") == "avx2"
    except (ValueError, RuntimeError):
        supported = False
    finally:
        if _extension.extension_loaded():
            _extension.set_cpu_isa("auto")
    return pytest.param("avx2", marks=pytest.mark.skipif(not supported, reason="this CPU has no AVX2+FMA"))


def pytest_generate_tests(metafunc):
    """``isa``: each copy of the hand-vectorised CPU loops (csrc/cpu/*.inc), selected for the test."""
    if "isa" in metafunc.fixturenames:
        metafunc.parametrize("isa", ["generic", _avx2_param()], indirect=True)


@pytest.fixture
def isa(request):
    from rpn2kernels import _extension

    assert _extension.set_cpu_isa(request.param) == request.param
    yield request.param
    _extension.set_cpu_isa("auto")
