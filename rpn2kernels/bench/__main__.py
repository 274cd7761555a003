"""``python -m rpn2kernels.bench``: exit 0 when every correctness check passed (missed targets are
reported, not fatal), 1 when a correctness check failed, 2 when the benchmark could not run."""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch


def main(argv=None) -> int:
    from . import suites

    ap = argparse.ArgumentParser(prog="python -m rpn2kernels.bench", description=__doc__)
    ap.add_argument("--suite", action="append", choices=suites.names(),
                    help="suite to run (repeatable); default: all")
    ap.add_argument("--quick", action="store_true", help="smaller shapes and 5 runs (< 2 min for all suites)")
    ap.add_argument("--out", default=None, help="results directory (default: <repo>/bench/results)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads (default: 2, the thread count of bench.md's targets, "
                         "or the core count if smaller)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--case", action="append", default=None, help="only cases whose name contains this")
    ap.add_argument("--no-peak", action="store_true", help="skip the peak-memory subprocesses")
    args = ap.parse_args(argv)

    threads = args.threads or min(2, os.cpu_count() or 1)
    torch.set_num_threads(threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    print(f"rpn2kernels.bench: torch {torch.__version__}, torch.set_num_threads({threads}) -> "
          f"{torch.get_num_threads()} threads, device {device}, {'quick' if args.quick else 'full'} mode")

    from .runner import _limits_for, _peak_note

    t0 = time.perf_counter()
    try:
        limits = _limits_for(device, args.quick)
    except Exception as error:
        print(f"rpn2kernels.bench: could not measure the limits: {error}", file=sys.stderr)
        return 2
    print(f"limits: STREAM triad {limits['stream_triad']['gb_per_s']:.1f} GB/s, "
          f"SGEMM {limits['sgemm']['gflop_per_s']:.1f} GFLOP/s{_peak_note(limits)} ({time.perf_counter() - t0:.1f} s)")

    from .runner import run_suite

    failures = 0
    for name in args.suite or suites.names():
        try:
            result = run_suite(name, quick=args.quick, out_dir=args.out, device=str(device), limits=limits,
                               peak=not args.no_peak, case_filter=args.case)
        except RuntimeError as error:  # e.g. the compiled backend is unavailable: say so, fail
            print(f"rpn2kernels.bench: suite {name!r} cannot run: {error}", file=sys.stderr)
            return 2
        failures += result["summary"]["correctness_failures"]
        limits = result["limits"]  # the best limits so far carry over to the next suite
    print(f"total {time.perf_counter() - t0:.1f} s")
    if failures:
        print(f"rpn2kernels.bench: {failures} correctness failure(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
