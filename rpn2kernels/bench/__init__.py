"""Benchmark runner of rpn2kernels (protocol and targets: spec/bench.md).

``python -m rpn2kernels.bench [--suite NAME] [--quick] [--out DIR] [--threads N]`` measures this
machine's limits once, runs every suite (or the named ones) side by side against the reference, the
tinyBIG-equivalent computation, the best peer and the compute floor, prints a table and writes
``bench/results/<host>-<YYYYMMDD>-<suite>[-quick].json`` plus a ``.png`` per suite.
"""
from .runner import Case, CorrectnessError, Impl, Prepared, Target, run_case, run_suite

__all__ = ["Case", "CorrectnessError", "Impl", "Prepared", "Target", "run_case", "run_suite"]
