"""This machine's roofline, measured in the same run as the cases it judges.

Absolute times on a shared 2-core box drift from run to run, so the limits are re-measured by every
run rather than read from a table: a fraction of a limit measured minutes earlier on the same
machine state is meaningful, a fraction of a datasheet number is not.

- STREAM triad ``a = b + s·c`` with ``torch.add(b, c, alpha=s, out=a)``: one fused pass, 3 arrays
  counted (STREAM convention: no write-allocate traffic), float32, each array far larger than the
  last-level cache. torch rather than numpy because numpy runs single-threaded while the ops under
  test use ``torch.get_num_threads()`` threads.
- SGEMM: ``torch.mm`` fp32 at 2048³ (2·n³ FLOP per call); TF32 is switched off on CUDA so the
  number is the fp32 peak the fp32 ops are compared with.
- CPU multiply-add peak (``rpn2kernels._C.cpu_multiply_add_peak``): twelve independent float32
  FMA chains per thread in registers, on every torch thread — the hardware ceiling the SGEMM limit
  is reported against (``sgemm_fraction_of_peak``), so "x % of SGEMM" can be read as a share of the
  machine too. Not a target: bench.md's compute limit stays SGEMM.
The best of the repetitions is reported (as STREAM does): it is the attainable limit, the noise is
all on the slow side.
"""
from __future__ import annotations

import time
from typing import Dict, Optional

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(stop) / 1e3
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def stream_triad(device: torch.device, elements: int, reps: int) -> Dict[str, float]:
    a = torch.empty(elements, device=device)
    b = torch.rand(elements, device=device)
    c = torch.rand(elements, device=device)
    scalar = 3.0
    for _ in range(2):  # first touch of `a` and thread-pool start-up are not bandwidth
        torch.add(b, c, alpha=scalar, out=a)
    _sync(device)
    times = [_timed(lambda: torch.add(b, c, alpha=scalar, out=a), device) for _ in range(reps)]
    moved = 3 * elements * a.element_size()
    best = min(times)
    return {
        "gb_per_s": moved / best / 1e9,
        "gb_per_s_median": moved / sorted(times)[len(times) // 2] / 1e9,
        "array_mib": elements * a.element_size() / 2**20,
        "bytes_per_iteration": moved,
        "reps": reps,
        "method": "torch.add(b, c, alpha=s, out=a), float32, 3 arrays counted, best of reps",
    }


def sgemm(device: torch.device, size: int, reps: int) -> Dict[str, float]:
    previous_tf32 = torch.backends.cuda.matmul.allow_tf32 if device.type == "cuda" else None
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    try:
        a = torch.randn(size, size, device=device)
        b = torch.randn(size, size, device=device)
        out = torch.empty(size, size, device=device)
        torch.mm(a, b, out=out)
        _sync(device)
        times = [_timed(lambda: torch.mm(a, b, out=out), device) for _ in range(reps)]
    finally:
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = previous_tf32
    flop = 2.0 * size ** 3
    return {
        "gflop_per_s": flop / min(times) / 1e9,
        "gflop_per_s_median": flop / sorted(times)[len(times) // 2] / 1e9,
        "size": size,
        "reps": reps,
        "method": f"torch.mm float32 {size}x{size}x{size}, 2n^3 FLOP, best of reps",
    }


def multiply_add_peak(seconds: float) -> Optional[Dict[str, object]]:
    """The CPU's float32 multiply-add throughput on torch's threads, or None without the extension."""
    from .. import _extension

    if not _extension.extension_loaded():
        return None
    from .. import _C

    return {
        "gflop_per_s": _C.cpu_multiply_add_peak(seconds),
        "isa": _extension.cpu_isa(),
        "method": "12 independent float32 multiply-add chains in registers per thread (FMA on avx2), "
                  f"every torch thread, best of 3 runs of ≈{seconds / 8:.3g}–{seconds / 4:.3g} s",
    }


def measure(device: torch.device, quick: bool = False) -> Dict[str, object]:
    """The limits; ``quick`` uses smaller arrays (still ≫ LLC) and fewer repetitions."""
    if device.type == "cuda":
        elements = (1 << 28) if not quick else (1 << 26)   # 1 GiB / 256 MiB per array ≫ L2
    else:
        elements = (1 << 25) if not quick else (1 << 24)   # 128 / 64 MiB per array ≫ L3
    reps = 5 if quick else 10
    limits: Dict[str, object] = {
        "threads": torch.get_num_threads(),
        "stream_triad": stream_triad(device, elements, reps),
        "sgemm": sgemm(device, 2048 if device.type == "cpu" else 8192, 3 if quick else 5),
    }
    peak = multiply_add_peak(0.2 if quick else 0.8) if device.type == "cpu" else None
    if peak is not None:
        limits["multiply_add_peak"] = peak
        limits["sgemm_fraction_of_peak"] = limits["sgemm"]["gflop_per_s"] / peak["gflop_per_s"]
    return limits


__all__ = ["measure", "multiply_add_peak", "stream_triad", "sgemm"]
