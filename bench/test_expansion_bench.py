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

from rpn2kernels.bench.runner import check_against_reference
from rpn2kernels.bench.suites import expansion

FULL = os.environ.get("RPN2K_BENCH_FULL", "0") == "1"
THREADS = int(os.environ.get("RPN2K_BENCH_THREADS", "2"))
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")

torch.set_num_threads(THREADS)
CASES = expansion.cases(quick=not FULL, device=DEVICE)


@pytest.mark.parametrize(
    "case,impl_name",
    [pytest.param(c, i.name, id=f"{c.name}-{i.name}") for c in CASES for i in c.impls],
)
def test_expansion(benchmark, case, impl_name):
    inputs = case.make_inputs(DEVICE)
    impl = next(i for i in case.impls if i.name == impl_name)
    reference = next(i for i in case.impls if i.role == "reference")
    prepared = {i.name: i.setup(inputs) for i in {reference.name: reference, impl.name: impl}.values()}
    # A benchmark of a wrong result is worthless: the same gate as the runner, before timing.
    check_against_reference(prepared, [reference] + ([impl] if impl is not reference else []), inputs["grad_out"])

    p, grad_out = prepared[impl_name], inputs["grad_out"]
    benchmark.group = case.name
    benchmark.extra_info.update({"impl": impl.label, "threads": torch.get_num_threads(),
                                 "mode": "full" if FULL else "quick", **case.meta})

    def forward_backward():
        p.reset()
        p.forward().backward(grad_out)
        if DEVICE.type == "cuda":
            torch.cuda.synchronize(DEVICE)

    benchmark(forward_backward)
