"""Generic benchmark machinery: correctness gate, side-by-side timing, saved bytes, peak memory,
roofline fractions, targets, table, JSON and plot (protocol: spec/bench.md).

A suite (``rpn2kernels.bench.suites.<name>``) returns :class:`Case` objects; each case lists its
implementations (:class:`Impl`: ours, our reference, the tinyBIG-equivalent, the best peer, the
compute floor) and its targets. Everything here is suite-agnostic.

Method, and why:

- **Correctness before timing.** Every implementation with ``check=True`` is run forward+backward
  once and compared with the reference (output and every gradient). A mismatch marks the case
  failed, skips its timing, and makes the run exit non-zero — a fast wrong kernel is not a result.
  Tolerance: fp32 ``rtol=1e-4`` with ``atol = 1e-4·max|reference|`` per tensor, because the
  implementations sum D-long products in different orders and an elementwise relative test alone
  fails on the outputs that happen to be near zero.
- **Side by side, round robin.** All implementations of a case are timed in this one process, and
  every repetition runs each of them once in turn (alternating direction) instead of all repetitions
  of one then all of the next: on a shared 2-core machine the clock speed and the neighbours change
  over seconds, and interleaving puts that drift on every implementation equally, so the *ratios*
  are trustworthy even when absolute times are not.
- **Three modes.** ``fwd`` (autograd on, so the saving for backward is paid), ``bwd`` (only
  ``y.backward(G)``, after an untimed forward), ``fwdbwd``. Gradients are reset to None before every
  run, so each backward allocates its dW as ``zero_grad(set_to_none=True)`` training does.
  Median and min of ``runs`` samples after ``warmup`` rounds per mode (fewer once a mode's warm-up
  has taken ``WARMUP_BUDGET_S``, but at least one: G4's rows take 4–7 s a run, and two more
  warm-up rounds of its three modes added ~45 s to a 20-minute suite); targets use the medians.
- **Saved bytes**: one forward under ``torch.autograd.graph.saved_tensors_hooks``; the nbytes of the
  unique storages of the packed tensors (dedupe by storage data_ptr, so views of one buffer count
  once). ``saved_bytes`` excludes the storages of the parameters (weights live anyway, a layer saving
  W costs nothing extra) but counts the input x (in a network x is the previous layer's activation,
  freed unless saved); ``saved_bytes_total`` counts everything.
- **Peak memory** of each case × implementation in a fresh process forked from a zygote that has
  only imported torch, rpn2kernels and the suites (a fresh interpreter per measurement would cost
  3 s of ``import torch`` each); median of three processes in full mode. See
  :mod:`rpn2kernels.bench._peak`.
- **Roofline**: each case states its useful work (FLOP for compute-bound ops, bytes for
  bandwidth-bound ones); achieved GFLOP/s or GB/s of the fwd+bwd median is reported with its fraction
  of the SGEMM or STREAM limit (:mod:`.limits`), measured in the same run before and after the
  cases, best of the two.
- **Allocator**: glibc's defaults, as users have them: a large block freed and allocated again may
  come back as new pages that fault on first touch (docs/backends.md), and that cost stays in every
  implementation's time — E2's target counts tinyBIG "allocating dW". Fixing the thresholds instead
  (tried) moved E2's tinyBIG ratio from 3.07 to 1.85 and halved several C1 medians' spread.
- **Contention**: the CPU time other processes used while each case was timed is recorded; above
  ``NOISY_CORES`` the row is flagged (and, in full mode, timed once more, keeping the quieter
  attempt). Missed targets never fail the run; a correctness failure does.
"""
from __future__ import annotations

import datetime as _dt
import gc
import json
import math
import os
import platform
import re
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

MODES = ("fwd", "bwd", "fwdbwd")
RTOL = 1e-4


# ------------------------------------------------------------------------------------------------
# What a suite describes


@dataclass
class Prepared:
    """One implementation bound to one set of inputs.

    ``leaves`` are the tensors whose ``.grad`` a backward fills (reset to None before every run);
    ``params`` names the leaves that are parameters (not counted in ``saved_bytes``);
    ``canonical_grads`` maps this implementation's gradients onto the reference's names and layouts
    (e.g. tinyBIG's flat (1, n·D) parameter onto ``weight`` (n, D)).
    """

    forward: Callable[[], torch.Tensor]
    leaves: Dict[str, torch.Tensor]
    params: Tuple[str, ...] = ()
    canonical_grads: Optional[Callable[[], Dict[str, torch.Tensor]]] = None

    def grads(self) -> Dict[str, torch.Tensor]:
        if self.canonical_grads is not None:
            return self.canonical_grads()
        return {k: v.grad for k, v in self.leaves.items() if v.grad is not None}

    def reset(self) -> None:
        for leaf in self.leaves.values():
            leaf.grad = None


@dataclass
class Impl:
    name: str                    # JSON key: "ours", "reference", "tinybig", "peer", "floor", …
    label: str                   # what exactly runs, for the reader of the JSON
    setup: Callable[[Dict[str, torch.Tensor]], Prepared]
    role: str = "baseline"       # "ours" | "reference" | "baseline" | "floor"
    check: bool = True           # compared with the reference before timing
    check_note: str = ""         # why not, when check is False


@dataclass
class Target:
    """kinds: ``floor`` (ours/impl fwd+bwd median ≤ threshold), ``speedup`` (impl/ours ≥ threshold),
    ``saved_fraction`` (ours saved bytes / impl saved bytes ≤ threshold)."""

    id: str
    text: str
    kind: str
    impl: str
    threshold: float


@dataclass
class Case:
    name: str                    # unique within the suite, e.g. "E3-legendre"
    id: str                      # the spec's row id, e.g. "E3"
    description: str
    make_inputs: Callable[[torch.device], Dict[str, torch.Tensor]]  # must contain "grad_out"
    impls: List[Impl]
    work: float                  # FLOP (bound "compute") or bytes (bound "bandwidth") of one fwd+bwd
    bound: str = "compute"
    work_note: str = ""
    #: the other measure of work, reported as a second rate where the bound is debatable (E2's
    #: tinyBIG is bandwidth-bound, the fused op that never reads κ(x) compute-bound)
    secondary_work: Optional[float] = None
    targets: List[Target] = field(default_factory=list)
    meta: Dict[str, object] = field(default_factory=dict)


class CorrectnessError(AssertionError):
    pass


# ------------------------------------------------------------------------------------------------
# Timing


class _Timer:
    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"
        if self.cuda:
            # Each sample starts from a cold L2, as triton.testing.do_bench does: otherwise a small
            # case's second run reads its inputs from cache and beats the roofline.
            self._flush = torch.empty(256 * 2**20, dtype=torch.uint8, device=device)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def measure(self, fn: Callable[[], None]) -> float:
        if self.cuda:
            self._flush.zero_()
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            stop.record()
            torch.cuda.synchronize(self.device)
            return start.elapsed_time(stop) / 1e3
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0


def _one_sample(p: Prepared, grad_out: torch.Tensor, mode: str, timer: _Timer) -> float:
    p.reset()
    box: List[torch.Tensor] = []
    if mode == "fwd":
        dt = timer.measure(lambda: box.append(p.forward()))
    elif mode == "bwd":
        y = p.forward()
        timer.sync()
        dt = timer.measure(lambda: y.backward(grad_out))
        del y
    else:
        dt = timer.measure(lambda: p.forward().backward(grad_out))
    box.clear()  # free the graph outside the timed region
    return dt


def time_impls(prepared: Dict[str, Prepared], grad_out: torch.Tensor, warmup: int, runs: int,
               timer: _Timer) -> Dict[str, Dict[str, List[float]]]:
    """samples[impl][mode] = list of seconds, taken round robin (see module docstring)."""
    samples = {name: {m: [] for m in MODES} for name in prepared}
    order = list(prepared)
    # A cyclic-GC pass costs ~100 ms with torch loaded; left on, it lands in a random sample.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        _time_rounds(prepared, grad_out, warmup, runs, timer, samples, order)
    finally:
        if gc_was_enabled:
            gc.enable()
    for p in prepared.values():
        p.reset()
    return samples


#: Seconds of warm-up per mode after which the remaining warm-up rounds are skipped.
WARMUP_BUDGET_S = 2.0


def _time_rounds(prepared, grad_out, warmup, runs, timer, samples, order) -> None:
    for mode in MODES:
        started = time.perf_counter()
        for round_index in range(warmup):
            if round_index > 0 and time.perf_counter() - started > WARMUP_BUDGET_S:
                break
            for name in order:
                _one_sample(prepared[name], grad_out, mode, timer)
        for r in range(runs):
            for name in (order if r % 2 == 0 else order[::-1]):
                samples[name][mode].append(_one_sample(prepared[name], grad_out, mode, timer))


def _stats(values: Sequence[float]) -> Dict[str, object]:
    ordered = sorted(values)
    n = len(ordered)
    median = ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])
    return {"median_s": median, "min_s": ordered[0], "samples_s": list(values)}


# ------------------------------------------------------------------------------------------------
# Saved bytes and correctness


def saved_bytes(p: Prepared) -> Dict[str, int]:
    param_storages = {p.leaves[name].untyped_storage().data_ptr() for name in p.params}
    storages: Dict[int, int] = {}
    packed = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        storages[st.data_ptr()] = max(storages.get(st.data_ptr(), 0), st.nbytes())
        packed[0] += 1
        return t

    p.reset()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = p.forward()
    del y
    return {
        "saved_bytes": sum(v for ptr, v in storages.items() if ptr not in param_storages),
        "saved_bytes_total": sum(storages.values()),
        "saved_tensors": packed[0],
    }


def _run_once(p: Prepared, grad_out: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    p.reset()
    y = p.forward()
    y.backward(grad_out)
    out = y.detach().clone()
    grads = {k: v.detach().clone() for k, v in p.grads().items()}
    p.reset()
    return out, grads


def _compare(what: str, got: torch.Tensor, want: torch.Tensor) -> Dict[str, float]:
    if got.shape != want.shape:
        raise CorrectnessError(f"{what}: shape {tuple(got.shape)} != reference {tuple(want.shape)}")
    got64, want64 = got.double(), want.double()
    if not torch.isfinite(got64).all():
        raise CorrectnessError(f"{what}: non-finite values")
    scale = want64.abs().max().item() if want64.numel() else 0.0
    err = (got64 - want64).abs()
    allowed = RTOL * want64.abs() + RTOL * scale
    worst = (err - allowed).max().item() if err.numel() else -1.0
    max_abs = err.max().item() if err.numel() else 0.0
    if worst > 0:
        raise CorrectnessError(
            f"{what}: max |diff| {max_abs:.3e} exceeds rtol {RTOL} (+ atol {RTOL}·max|ref| = {RTOL * scale:.3e})")
    return {"max_abs_err": max_abs, "max_rel_err": max_abs / scale if scale > 0 else 0.0}


def check_against_reference(prepared: Dict[str, Prepared], impls: Sequence[Impl],
                            grad_out: torch.Tensor) -> Dict[str, Dict[str, object]]:
    """Raises CorrectnessError naming the implementation and tensor that disagree."""
    ref_name = next(i.name for i in impls if i.role == "reference")
    y_ref, g_ref = _run_once(prepared[ref_name], grad_out)
    report: Dict[str, Dict[str, object]] = {}
    for impl in impls:
        if impl.role == "reference":
            continue
        if not impl.check:
            report[impl.name] = {"checked": False, "note": impl.check_note}
            continue
        y, grads = _run_once(prepared[impl.name], grad_out)
        errors = {"output": _compare(f"{impl.name} output", y, y_ref)}
        for key, want in g_ref.items():
            if key not in grads:
                raise CorrectnessError(f"{impl.name}: no gradient for {key}")
            errors[f"grad_{key}"] = _compare(f"{impl.name} grad of {key}", grads[key], want)
        report[impl.name] = {"checked": True, "errors": errors}
    return report


# ------------------------------------------------------------------------------------------------
# Targets


def evaluate_targets(case: Case, impl_rows: Dict[str, Dict[str, object]]) -> List[Dict[str, object]]:
    out = []
    ours = impl_rows.get("ours", {})
    for t in case.targets:
        other = impl_rows.get(t.impl, {})
        value: Optional[float] = None
        if t.kind in ("floor", "speedup"):
            o = ours.get("times", {}).get("fwdbwd", {}).get("median_s")
            b = other.get("times", {}).get("fwdbwd", {}).get("median_s")
            if o and b:
                value = o / b if t.kind == "floor" else b / o
        elif t.kind == "saved_fraction":
            o, b = ours.get("saved_bytes"), other.get("saved_bytes")
            if o is not None and b:
                value = o / b
        else:
            raise ValueError(f"unknown target kind {t.kind!r}")
        if value is None:
            met = None
        elif t.kind == "speedup":
            met = value >= t.threshold
        else:
            met = value <= t.threshold
        out.append({"id": t.id, "text": t.text, "kind": t.kind, "against": t.impl,
                    "threshold": t.threshold, "value": value, "met": met})
    return out


# ------------------------------------------------------------------------------------------------
# Environment description


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> Dict[str, object]:
    import numpy

    env = {
        "host": socket.gethostname(),
        "python": sys.version.split()[0],
        "torch_version": torch.__version__,
        "numpy_version": numpy.__version__,
        "threads": torch.get_num_threads(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
    }
    try:
        import rpn2kernels

        env["rpn2kernels_version"] = rpn2kernels.__version__
    except Exception as error:  # the suites raise their own clear error
        env["rpn2kernels_version"] = f"import failed: {error}"
    env["git"] = _git_state()
    if device.type != "cuda":
        env["gpu"] = ("no CUDA device in this run: the GPU targets of bench.md are unmeasured, "
                      "not estimated")
    return env


def _git_state() -> Optional[Dict[str, object]]:
    """Commit and dirty flag of a source checkout: a result is only comparable with the code it timed."""
    import subprocess

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        commit = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return {"commit": commit, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return None


def default_out_dir() -> str:
    """<repo>/bench/results in a source checkout, else ./bench/results."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if os.path.isdir(os.path.join(repo, "bench")):
        return os.path.join(repo, "bench", "results")
    return os.path.join(os.getcwd(), "bench", "results")


# ------------------------------------------------------------------------------------------------
# One case


def _achieved(row: Dict[str, object], seconds: Optional[float], limits: Dict[str, object]) -> Dict[str, object]:
    if not seconds:
        return {}
    flop = row["work"] if row["bound"] == "compute" else row.get("secondary_work")
    moved = row["work"] if row["bound"] == "bandwidth" else row.get("secondary_work")
    out: Dict[str, object] = {"primary": "gflop_per_s" if row["bound"] == "compute" else "gb_per_s"}
    if flop:
        out["gflop_per_s"] = flop / seconds / 1e9
        out["fraction_of_sgemm"] = out["gflop_per_s"] / limits["sgemm"]["gflop_per_s"]
    if moved:
        out["gb_per_s"] = moved / seconds / 1e9
        out["fraction_of_stream"] = out["gb_per_s"] / limits["stream_triad"]["gb_per_s"]
    return out


def attach_achieved(rows: Sequence[Dict[str, object]], limits: Dict[str, object]) -> None:
    """Achieved rate of every implementation's fwd+bwd median, as a fraction of the limits."""
    for row in rows:
        for r in row.get("impls", {}).values():
            if "times" in r:
                r["achieved"] = _achieved(row, r["times"]["fwdbwd"]["median_s"], limits)


class _CpuMonitor:
    """CPU time the rest of the machine used while a case was timed, in cores (all busy jiffies of
    /proc/stat, steal included, minus this process's own): on a shared 2-core box another process
    using one core makes OpenMP barriers stall, and the JSON should say which rows that hit."""

    HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    @staticmethod
    def _read() -> Optional[Tuple[int, int, float]]:
        try:
            with open("/proc/stat") as f:
                vals = [int(v) for v in f.readline().split()[1:9]]
            with open("/proc/self/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            own = int(fields[11]) + int(fields[12])  # utime + stime of all our threads
            return sum(vals) - vals[3] - vals[4], own, time.perf_counter()
        except (OSError, ValueError, IndexError):
            return None

    def __enter__(self):
        self.start = self._read()
        self.other_cores: Optional[float] = None
        return self

    def __exit__(self, *exc):
        end = self._read()
        if self.start and end and end[2] > self.start[2]:
            others = (end[0] - self.start[0]) - (end[1] - self.start[1])
            self.other_cores = max(0.0, others / self.HZ / (end[2] - self.start[2]))
        return False


NOISY_CORES = 0.25


def run_case(case: Case, device: torch.device, warmup: int, runs: int, timer: _Timer,
             limits: Optional[Dict[str, object]] = None, retries: int = 0,
             retry_if_faster_than_s: float = 120.0) -> Dict[str, object]:
    """Correctness gate, saved bytes, timing. When the rest of the machine used more than
    NOISY_CORES cores during the timing, it is repeated up to ``retries`` times (only for cases
    whose timing took less than ``retry_if_faster_than_s``) and the quietest attempt is kept."""
    row: Dict[str, object] = {
        "case": case.name, "id": case.id, "description": case.description, "meta": case.meta,
        "bound": case.bound, "work": case.work, "work_unit": "FLOP" if case.bound == "compute" else "bytes",
        "work_note": case.work_note, "secondary_work": case.secondary_work, "impls": {}, "correct": None,
    }
    inputs = case.make_inputs(device)
    grad_out = inputs["grad_out"]
    prepared = {impl.name: impl.setup(inputs) for impl in case.impls}
    try:
        checks = check_against_reference(prepared, case.impls, grad_out)
        row["correct"] = True
    except CorrectnessError as error:
        row["correct"] = False
        row["error"] = str(error)
        return row

    impl_rows: Dict[str, Dict[str, object]] = {}
    for impl in case.impls:
        impl_rows[impl.name] = {"label": impl.label, "role": impl.role, **saved_bytes(prepared[impl.name])}
        impl_rows[impl.name]["check"] = checks.get(impl.name, {"checked": True, "note": "is the reference"})
    attempts = []
    for _ in range(1 + max(0, retries)):
        t0 = time.perf_counter()
        with _CpuMonitor() as monitor:
            samples = time_impls(prepared, grad_out, warmup, runs, timer)
        attempts.append((monitor.other_cores, samples))
        if monitor.other_cores is None or monitor.other_cores <= NOISY_CORES \
                or time.perf_counter() - t0 > retry_if_faster_than_s:
            break
    other_cores, samples = min(attempts, key=lambda a: a[0] if a[0] is not None else 0.0)
    row["contention"] = {
        "other_cores_busy": other_cores,
        "noisy": other_cores is not None and other_cores > NOISY_CORES,
        "attempts_other_cores": [a[0] for a in attempts],
        "note": f"cores used by other processes while timing (noisy above {NOISY_CORES}); the quietest attempt is kept",
    }
    for name, per_mode in samples.items():
        impl_rows[name]["times"] = {m: _stats(v) for m, v in per_mode.items()}

    ours = impl_rows.get("ours")
    ratios: Dict[str, Dict[str, float]] = {}
    if ours is not None:
        for name, r in impl_rows.items():
            if name == "ours":
                continue
            ratios[name] = {m: r["times"][m]["median_s"] / ours["times"][m]["median_s"] for m in MODES}
            ratios[name]["fwdbwd_min"] = r["times"]["fwdbwd"]["min_s"] / ours["times"]["fwdbwd"]["min_s"]
            if ours["saved_bytes"]:
                ratios[name]["saved_bytes"] = r["saved_bytes"] / ours["saved_bytes"]
    row["impls"] = impl_rows
    row["ratios"] = ratios
    row["ratio_definition"] = "baseline median time / ours median time (> 1: ours is faster)"
    floor = next((i.name for i in case.impls if i.role == "floor"), None)
    if floor is not None and ours is not None:
        row["ours_over_floor"] = ours["times"]["fwdbwd"]["median_s"] / impl_rows[floor]["times"]["fwdbwd"]["median_s"]
    row["targets"] = evaluate_targets(case, impl_rows)
    if limits is not None:
        attach_achieved([row], limits)
    return row


# ------------------------------------------------------------------------------------------------
# Output: table, JSON, plot


def _ms(s: Optional[float]) -> str:
    return "-" if s is None else f"{s * 1e3:9.2f}"


def _mb(b: Optional[float]) -> str:
    return "-" if b is None else f"{b / 2**20:8.2f}"


def _peak_note(limits: Dict[str, object]) -> str:
    if "multiply_add_peak" not in limits:
        return ""
    return (f" ({100 * limits['sgemm_fraction_of_peak']:.0f}% of the multiply-add peak "
            f"{limits['multiply_add_peak']['gflop_per_s']:.0f})")


def format_table(result: Dict[str, object]) -> str:
    lines = []
    env, limits = result["environment"], result["limits"]
    lines.append(
        f"== suite {result['suite']} ({result['mode']}) on {env['device_name']} | torch {env['torch_version']} | "
        f"threads {env['threads']} | STREAM triad {limits['stream_triad']['gb_per_s']:.1f} GB/s | "
        f"SGEMM {limits['sgemm']['gflop_per_s']:.1f} GFLOP/s{_peak_note(limits)}")
    head = (f"{'case':<26} {'impl':<10} {'fwd ms':>9} {'bwd ms':>9} {'f+b ms':>9} {'f+b min':>9} "
            f"{'base/ours':>9} {'saved MB':>8} {'peak MB':>8} {'achieved':>18}")
    lines.append(head)
    lines.append("-" * len(head))
    for row in result["rows"]:
        if not row.get("correct"):
            lines.append(f"{row['case']:<26} CORRECTNESS FAILURE: {row.get('error')}")
            continue
        if row.get("contention", {}).get("noisy"):
            lines.append(f"{row['case']:<26} (NOISY: other processes used "
                         f"{row['contention']['other_cores_busy']:.2f} cores while it was timed)")
        for name, r in row["impls"].items():
            t = r["times"]
            ratio = row["ratios"].get(name, {}).get("fwdbwd")
            ach = r.get("achieved", {})
            if ach.get("primary") == "gflop_per_s":
                ach_s = f"{ach['gflop_per_s']:7.1f} GF/s {100 * ach['fraction_of_sgemm']:4.0f}%"
            elif "gb_per_s" in ach:
                ach_s = f"{ach['gb_per_s']:7.1f} GB/s {100 * ach['fraction_of_stream']:4.0f}%"
            else:
                ach_s = "-"
            peak = r.get("peak", {}).get("peak_bytes")
            lines.append(
                f"{row['case']:<26} {name:<10} {_ms(t['fwd']['median_s'])} {_ms(t['bwd']['median_s'])} "
                f"{_ms(t['fwdbwd']['median_s'])} {_ms(t['fwdbwd']['min_s'])} "
                f"{'' if ratio is None else f'{ratio:9.2f}':>9} {_mb(r['saved_bytes'])} {_mb(peak)} {ach_s:>18}")
        for t in row["targets"]:
            mark = {True: "MET", False: "NOT MET", None: "n/a"}[t["met"]]
            value = "-" if t["value"] is None else f"{t['value']:.3g}"
            cmp = ">=" if t["kind"] == "speedup" else "<="
            lines.append(f"    target {t['id']:<22} {value:>8} {cmp} {t['threshold']:.3g}  {mark:<8} {t['text']}")
    s = result["summary"]
    lines.append(f"targets met: {s['targets_met']}/{s['targets_total']}; "
                 f"correctness failures: {s['correctness_failures']}; noisy rows: {s['noisy_rows']}")
    return "\n".join(lines)


def plot(result: Dict[str, object], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r.get("correct")]
    if not rows:
        return
    impl_names: List[str] = []
    for r in rows:
        for name in r["impls"]:
            if name not in impl_names:
                impl_names.append(name)
    cases = [r["case"] for r in rows]
    fig, (ax_t, ax_r) = plt.subplots(2, 1, figsize=(max(8.0, 0.9 * len(cases) + 3), 9))
    width = 0.8 / len(impl_names)
    for k, name in enumerate(impl_names):
        xs = [i + (k - (len(impl_names) - 1) / 2) * width for i in range(len(cases))]
        ys = [r["impls"][name]["times"]["fwdbwd"]["median_s"] * 1e3 if name in r["impls"] else float("nan")
              for r in rows]
        ax_t.bar(xs, ys, width, label=name)
    ax_t.set_yscale("log")
    ax_t.set_ylabel("fwd+bwd median (ms, log)")
    ax_t.set_xticks(range(len(cases)))
    ax_t.set_xticklabels(cases, rotation=40, ha="right", fontsize=8)
    ax_t.legend(fontsize=8)
    env = result["environment"]
    ax_t.set_title(f"{result['suite']} ({result['mode']}) — {env['device_name']}, {env['threads']} threads, "
                   f"torch {env['torch_version']}", fontsize=10)
    baselines = [n for n in impl_names if n != "ours"]
    width = 0.8 / max(1, len(baselines))
    for k, name in enumerate(baselines):
        xs = [i + (k - (len(baselines) - 1) / 2) * width for i in range(len(cases))]
        ys = [r["ratios"].get(name, {}).get("fwdbwd", float("nan")) for r in rows]
        ax_r.bar(xs, ys, width, label=f"{name} / ours")
    ax_r.axhline(1.0, color="black", linewidth=0.8)
    ax_r.set_yscale("log")
    ax_r.set_ylabel("fwd+bwd time ratio baseline/ours (log; >1 ours faster)")
    ax_r.set_xticks(range(len(cases)))
    ax_r.set_xticklabels(cases, rotation=40, ha="right", fontsize=8)
    ax_r.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------
# A suite


def _json_default(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, (torch.dtype, torch.device)):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def run_suite(suite: str, *, quick: bool = False, out_dir: Optional[str] = None, threads: Optional[int] = None,
              device: Optional[str] = None, peak: bool = True, case_filter: Optional[Sequence[str]] = None,
              case_kwargs: Optional[Dict[str, object]] = None, limits: Optional[Dict[str, object]] = None,
              warmup: Optional[int] = None, runs: Optional[int] = None, write: bool = True,
              echo: Callable[[str], None] = print) -> Dict[str, object]:
    """Run one suite and return its result dict (also written as JSON + PNG when ``write``).

    ``case_kwargs`` go to the suite's ``cases(quick, **case_kwargs)`` (tests pass tiny shapes);
    ``case_filter`` keeps the cases whose name contains one of the strings; ``limits`` reuses limits
    measured earlier in the same process (``python -m rpn2kernels.bench`` measures them once for all
    suites).
    """
    from . import suites
    from . import _peak

    if threads is not None:
        torch.set_num_threads(threads)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    module = suites.get(suite)
    case_kwargs = dict(case_kwargs or {})
    cases: List[Case] = list(module.cases(quick, device=dev, **case_kwargs))
    if case_filter:
        cases = [c for c in cases if any(f in c.name for f in case_filter)]
    warmup = warmup if warmup is not None else (1 if quick else 3)
    runs = runs if runs is not None else (5 if quick else 10)  # bench.md: ≥ 10; quick keeps ≥ 5
    if limits is None:
        echo(f"measuring limits on {dev} with {torch.get_num_threads()} threads …")
        limits = _limits_for(dev, quick)
    timer = _Timer(dev)
    t_start = time.perf_counter()
    load_before = _loadavg()
    gc.collect()
    rows = []
    for case in cases:
        t0 = time.perf_counter()
        row = run_case(case, dev, warmup, runs, timer, retries=0 if quick else 1)
        rows.append(row)
        status = "ok" if row["correct"] else "CORRECTNESS FAILURE"
        busy = row.get("contention", {}).get("other_cores_busy")
        noise = "" if busy is None else f", other processes used {busy:.2f} cores" + (
            " — NOISY" if row["contention"]["noisy"] else "")
        echo(f"  {case.name}: {status} ({time.perf_counter() - t0:.1f} s{noise})")
    # The limits again after the cases: a limit measured during someone else's burst would inflate
    # every fraction, and the best of two windows minutes apart is much less likely to be hit.
    limits = best_limits(limits, _limits_for(dev, quick))
    attach_achieved(rows, limits)
    peak_repeats = 1 if quick else 3
    if peak and dev.type == "cuda":
        t0 = time.perf_counter()
        for case, row in zip(cases, rows):
            if not row["correct"]:
                continue
            for impl in case.impls:
                row["impls"][impl.name]["peak"] = _peak.device_peak(case, impl, dev)
        echo(f"  peak device memory of every case x implementation, in this process ({time.perf_counter() - t0:.1f} s)")
    elif peak:
        t0 = time.perf_counter()
        jobs = [(suite, row["case"], name, quick, case_kwargs, torch.get_num_threads(), str(dev))
                for row in rows if row["correct"] for name in row["impls"]]
        # Allocation-heavy baselines vary ±15 % from one fresh process to the next (allocator
        # thresholds, backward scheduling): the full run takes the median of three.
        measured = _peak.measure_many([job for job in jobs for _ in range(peak_repeats)])
        for k, (_, case_name, impl_name, *_) in enumerate(jobs):
            row = next(r for r in rows if r["case"] == case_name)
            row["impls"][impl_name]["peak"] = _median_peak(measured[k * peak_repeats:(k + 1) * peak_repeats])
        echo(f"  peak memory of {len(jobs)} case x implementation pairs, {peak_repeats} fresh process(es) each "
             f"({time.perf_counter() - t0:.1f} s)")

    all_targets = [t for r in rows for t in r.get("targets", [])]
    result: Dict[str, object] = {
        "schema": 1,
        "suite": suite,
        "mode": "quick" if quick else "full",
        "quick_note": module.QUICK_NOTE if quick else None,
        "date": _dt.date.today().isoformat(),
        "timestamp": _dt.datetime.now().isoformat(timespec="seconds"),
        "environment": {**environment(dev), "loadavg_before": load_before, "loadavg_after": _loadavg()},
        "limits": limits,
        "suite_info": getattr(module, "suite_info", lambda dev: {})(dev),
        "protocol": {
            "warmup_rounds": warmup, "warmup_budget_s": WARMUP_BUDGET_S, "runs": runs,
            "warmup_note": f"per mode up to warmup_rounds; after the first, no round starts once that mode's "
                           f"warm-up has taken {WARMUP_BUDGET_S} s",
            "timer": "torch.cuda.Event, L2 flushed before each sample" if dev.type == "cuda" else "time.perf_counter",
            "order": "round robin over implementations, direction alternating each repetition",
            "statistic": "median (targets) and min of the runs",
            "modes": {"fwd": "forward with autograd on", "bwd": "y.backward(G) after an untimed forward",
                      "fwdbwd": "forward + backward"},
            "grads": "reset to None before every sample (each backward allocates its gradients)",
            "correctness": f"output and all gradients vs the reference before timing; rtol {RTOL}, "
                           f"atol {RTOL}*max|reference| per tensor",
            "saved_bytes": ("one forward under torch.autograd.graph.saved_tensors_hooks; sum of nbytes of the "
                            "unique storages (dedupe by storage data_ptr) of the packed tensors; saved_bytes "
                            "excludes parameter storages (weights are alive anyway) but counts the input x; "
                            "saved_bytes_total counts everything"),
            "peak_memory": ("device memory: torch.cuda.max_memory_allocated over one fwd+bwd after a warm run, "
                            "in the run's process" if dev.type == "cuda"
                            else _peak.METHOD + f"; median of {peak_repeats} fresh process(es) per pair"),
        },
        "rows": rows,
        "summary": {
            "cases": len(rows),
            "correctness_failures": sum(1 for r in rows if not r["correct"]),
            "targets_total": len(all_targets),
            "targets_met": sum(1 for t in all_targets if t["met"]),
            "targets_not_met": [f"{r['case']}: {t['id']}" for r in rows for t in r.get("targets", [])
                                if t["met"] is False],
            "noisy_rows": [r["case"] for r in rows if r.get("contention", {}).get("noisy")],
            "elapsed_s": time.perf_counter() - t_start,
        },
    }
    echo(format_table(result))
    if write:
        out_dir = out_dir or default_out_dir()
        os.makedirs(out_dir, exist_ok=True)
        stem = f"{_machine_tag(dev)}-{_dt.date.today():%Y%m%d}-{suite}" + ("-quick" if quick else "")
        json_path = os.path.join(out_dir, stem + ".json")
        png_path = os.path.join(out_dir, stem + ".png")
        result["files"] = {"json": json_path, "png": png_path}
        with open(json_path, "w") as f:
            json.dump(result, f, indent=1, default=_json_default)
        plot(result, png_path)
        echo(f"wrote {json_path} and {png_path}")
    return result


def _machine_tag(dev: torch.device) -> str:
    """Result file prefix: the GPU's name on CUDA ("h100-80gb-hbm3"), else the host name."""
    if dev.type == "cuda":
        name = re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(dev).lower()).strip("-")
        return name[len("nvidia-"):] if name.startswith("nvidia-") else name
    return socket.gethostname()


def _median_peak(results: Sequence[Dict[str, object]]) -> Dict[str, object]:
    good = sorted((r for r in results if "peak_bytes" in r), key=lambda r: r["peak_bytes"])
    if not good:
        return dict(results[0]) if results else {"error": "not measured"}
    out = dict(good[len(good) // 2])
    out["peak_bytes_samples"] = [r["peak_bytes"] for r in results if "peak_bytes" in r]
    return out


def best_limits(a: Dict[str, object], b: Dict[str, object]) -> Dict[str, object]:
    """The higher of two limit measurements of the same machine, keeping both on record."""
    history = list(a.get("measurements", [{k: a[k] for k in ("stream_triad", "sgemm")}]))
    history.append({k: b[k] for k in ("stream_triad", "sgemm")})
    best = {
        "threads": a.get("threads"),
        "stream_triad": max((h["stream_triad"] for h in history), key=lambda m: m["gb_per_s"]),
        "sgemm": max((h["sgemm"] for h in history), key=lambda m: m["gflop_per_s"]),
        "measurements": history,
        "note": "best of the measurements taken at the start of the run and after each suite's cases",
    }
    peaks = [m["multiply_add_peak"] for m in (a, b) if "multiply_add_peak" in m]
    if peaks:
        best["multiply_add_peak"] = max(peaks, key=lambda m: m["gflop_per_s"])
        best["sgemm_fraction_of_peak"] = best["sgemm"]["gflop_per_s"] / best["multiply_add_peak"]["gflop_per_s"]
    return best


def _loadavg() -> Optional[List[float]]:
    """1/5/15-min load averages: on a shared machine, a load above the thread count explains noise."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _limits_for(dev: torch.device, quick: bool) -> Dict[str, object]:
    from . import limits as _limits

    return _limits.measure(dev, quick)


__all__ = ["Case", "Impl", "Prepared", "Target", "CorrectnessError", "run_suite", "run_case",
           "saved_bytes", "check_against_reference", "time_impls", "format_table", "plot", "environment"]


# ---------------------------------------------------------------------------------------------
# pytest-benchmark twins (bench/test_*_bench.py): one benchmark per case × implementation.

def case_impl_params(cases: Sequence[Case]) -> List:
    """pytest params (case, impl name) of every implementation of every case."""
    import pytest

    return [pytest.param(c, i.name, id=f"{c.name}-{i.name}") for c in cases for i in c.impls]


def _plain_meta(value) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_plain_meta(v) for v in value)
    return isinstance(value, (int, float, str, bool))


def benchmark_case(benchmark, case: Case, impl_name: str, device: torch.device, full: bool) -> None:
    """Times one forward+backward of ``impl_name`` with pytest-benchmark, after the runner's
    correctness gate (a benchmark of a wrong result is worthless)."""
    inputs = case.make_inputs(device)
    impl = next(i for i in case.impls if i.name == impl_name)
    reference = next(i for i in case.impls if i.role == "reference")
    prepared = {i.name: i.setup(inputs) for i in {reference.name: reference, impl.name: impl}.values()}
    check_against_reference(prepared, [reference] + ([impl] if impl is not reference else []), inputs["grad_out"])

    p, grad_out = prepared[impl_name], inputs["grad_out"]
    benchmark.group = case.name
    benchmark.extra_info.update({"impl": impl.label, "threads": torch.get_num_threads(),
                                 "mode": "full" if full else "quick",
                                 **{k: v for k, v in case.meta.items() if _plain_meta(v)}})

    def forward_backward():
        p.reset()
        p.forward().backward(grad_out)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    benchmark(forward_backward)
