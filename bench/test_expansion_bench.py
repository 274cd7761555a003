"""pytest-benchmark suite of the expansion cases (E1, E2, E3 of spec/bench.md), for regression
tracking: ``pytest bench/ --benchmark-only [--benchmark-json=out.json] [--benchmark-compare]``.

The cases and implementations are exactly those of ``python -m rpn2kernels.bench --suite
expansion`` (rpn2kernels/bench/suites/expansion.py), one benchmark per case × implementation,
grouped by case so the table compares ours, the reference, the tinyBIG-equivalent, the peer and the
GEMM floor side by side. Each benchmark times one forward+backward. Quick shapes by default;
``RPN2K_BENCH_FULL=1`` selects bench.md's shapes, ``RPN2K_BENCH_THREADS`` the thread count (2).
Not collected by ``pytest tests`` (testpaths = tests).
"""
import os

import pytest
import torch

from rpn2kernels.bench.runner import benchmark_case, case_impl_params
from rpn2kernels.bench.suites import expansion

FULL = os.environ.get("RPN2K_BENCH_FULL", "0") == "1"
THREADS = int(os.environ.get("RPN2K_BENCH_THREADS", "2"))
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")

torch.set_num_threads(THREADS)
CASES = expansion.cases(quick=not FULL, device=DEVICE)


@pytest.mark.parametrize("case,impl_name", case_impl_params(CASES))
def test_expansion(benchmark, case, impl_name):
    benchmark_case(benchmark, case, impl_name, DEVICE, FULL)
