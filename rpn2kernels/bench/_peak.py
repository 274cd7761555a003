"""Peak process memory of one case × implementation, in a fresh process.

Why a fresh process: the high-water mark of a process only ever rises, and the allocator keeps
freed memory, so a peak measured after other cases ran says more about them than about this one.

Why forked from a zygote rather than a new interpreter each time: ``import torch`` alone takes ~3 s
here and a suite has ~70 case × implementation pairs. The zygote (``python -m
rpn2kernels.bench._peak --serve``, started once per benchmark process) imports torch, rpn2kernels
and the suites, freezes the GC and never runs a tensor op (so no OpenMP pool exists and ``fork`` is
safe); every measurement is a child forked from it: a clean address space, no allocator history,
no cases run before it. multiprocessing's forkserver is not used because it re-imports the
caller's ``__main__`` in every child (a pytest run or a user script would run again).

Method inside the child (``METHOD`` below, recorded in every JSON):
1. one untimed forward+backward of the case, then everything freed: the first call faults in
   libtorch code pages and starts the thread pool, which is not the op's memory;
2. fresh inputs are built, ``malloc_trim(0)`` returns every free heap page to the kernel (otherwise
   a temporary freed while building the inputs is silently reused by the op and never counted), the
   resident-set high-water mark is reset (``echo 5 > /proc/self/clear_refs``) and VmRSS read as the
   baseline;
3. one forward+backward; ``peak_bytes`` = VmHWM − baseline: what the op allocates and touches
   (saved tensors, temporaries, output and gradients). ``inputs_bytes`` = RSS growth while building
   the inputs (x, W, b, G and an implementation's own pre-built tensors, e.g. the floor's K).
If clear_refs is not writable, step 1 is skipped and ``ru_maxrss`` minus the baseline is used; the
method field says so. On CUDA the device peak (``torch.cuda.max_memory_allocated`` over the
baseline) is recorded as well.

``python -m rpn2kernels.bench._peak SUITE CASE IMPL [--quick]`` runs the same measurement in this
fresh interpreter and prints it as JSON.
"""
from __future__ import annotations

import argparse
import atexit
import ctypes
import gc
import json
import os
import resource
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch

import rpn2kernels  # noqa: F401  (the zygote loads the compiled extension once, before forking)

from . import suites

METHOD = ("child forked from a zygote that only imported torch/rpn2kernels/suites; one warm fwd+bwd "
          "(code pages, thread pool), fresh inputs, malloc_trim(0), VmHWM reset via /proc/self/clear_refs; "
          "peak_bytes = VmHWM after one fwd+bwd - VmRSS before it; inputs_bytes = RSS growth building the inputs")


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _find(suite: str, case_name: str, impl_name: str, quick: bool, case_kwargs: Dict, device: torch.device):
    module = suites.get(suite)
    for case in module.cases(quick, device=device, **case_kwargs):
        if case.name == case_name:
            for impl in case.impls:
                if impl.name == impl_name:
                    return case, impl
            raise KeyError(f"case {case_name!r} of suite {suite!r} has no implementation {impl_name!r}")
    raise KeyError(f"suite {suite!r} has no case {case_name!r} (quick={quick}, {case_kwargs})")


def _fwd_bwd(case, impl, device):
    inputs = case.make_inputs(device)
    p = impl.setup(inputs)
    p.reset()
    y = p.forward()
    y.backward(inputs["grad_out"])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return inputs, p, y


def device_window_start(device: torch.device) -> int:
    """Opens a device peak-memory window: the bytes allocated now (the caching allocator's high-water
    mark is reset, so device_window_peak reads the peak since this call)."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)


def device_window_peak(device: torch.device, base: int) -> int:
    torch.cuda.synchronize(device)
    return max(0, torch.cuda.max_memory_allocated(device) - base)


def device_peak(case, impl, device: torch.device) -> Dict[str, object]:
    """Peak device memory of one fwd+bwd, measured in the running process: the caching allocator's
    high-water mark is exact per region, so CUDA needs no fresh process (unlike host RSS)."""
    _fwd_bwd(case, impl, device)  # warm: compiled kernels, cuBLAS workspaces
    torch.cuda.empty_cache()
    inputs = case.make_inputs(device)
    p = impl.setup(inputs)
    p.reset()
    base = device_window_start(device)
    y = p.forward()
    y.backward(inputs["grad_out"])
    peak = device_window_peak(device, base)
    del y, p, inputs
    torch.cuda.empty_cache()
    return {"peak_bytes": peak, "device_peak_bytes": peak, "inputs_bytes": base,
            "method": "torch.cuda.max_memory_allocated over one fwd+bwd after a warm run, in the run's process"}


def measure(suite: str, case_name: str, impl_name: str, quick: bool, case_kwargs: Dict, threads: int,
            device: str) -> Dict[str, object]:
    torch.set_num_threads(threads)
    dev = torch.device(device)
    case, impl = _find(suite, case_name, impl_name, quick, case_kwargs, dev)
    resettable = _reset_hwm()
    if resettable:  # without a resettable mark the warm run's peak could not be told apart
        state = _fwd_bwd(case, impl, dev)
        del state
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    _malloc_trim()
    before_inputs = _status_bytes("VmRSS")
    inputs = case.make_inputs(dev)
    p = impl.setup(inputs)
    p.reset()
    _malloc_trim()
    if dev.type == "cuda":
        device_base = device_window_start(dev)
    if resettable:
        _reset_hwm()
    base = _status_bytes("VmRSS")
    y = p.forward()
    y.backward(inputs["grad_out"])
    device_peak_bytes = device_window_peak(dev, device_base) if dev.type == "cuda" else None
    if resettable:
        hwm = _status_bytes("VmHWM")
        method = "VmHWM after clear_refs"
    else:
        hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        method = "ru_maxrss (clear_refs unavailable; no warm run, first-call code pages included)"
    out: Dict[str, object] = {
        "peak_bytes": max(0, hwm - base),
        "inputs_bytes": max(0, base - before_inputs),
        "method": method,
    }
    if device_peak_bytes is not None:
        out["device_peak_bytes"] = device_peak_bytes
    del y, p, inputs
    return out


def _measure_job(job: Sequence) -> Dict[str, object]:
    before = set(sys.modules)
    t0 = time.perf_counter()
    try:
        result = measure(*job)
        result["measure_s"] = round(time.perf_counter() - t0, 4)
    except BaseException as error:  # one failed measurement must not lose the others
        result = {"error": f"{type(error).__name__}: {error}"}
    # Modules the first call imported lazily (sympy via torch's custom-op machinery, ~0.4 s): the
    # zygote imports them too, so later children start warm.
    result["_lazy_modules"] = sorted(set(sys.modules) - before)
    return result


def _import_quietly(names: Sequence[str]) -> None:
    import importlib

    for name in names:
        if name not in sys.modules:
            try:
                importlib.import_module(name)
            except Exception:
                pass


MARK = "@@RPN2K-PEAK "


def _serve() -> int:
    """Zygote loop: one JSON request per stdin line ({"jobs": [...], "parallel": N}), one marked
    JSON reply line per request; up to N children in flight (peak memory is per process, so running
    them side by side would change only the wall time — on machines with cores to spare)."""
    for name in suites.names():
        try:
            suites.get(name)
        except Exception:  # a suite whose peer is missing fails in its own child, with its message
            pass
    gc.collect()
    gc.freeze()  # children must not dirty (and count) the zygote's pages by collecting them
    print(MARK + json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        jobs, parallel = request["jobs"], max(1, int(request.get("parallel", 1)))
        results: List[Optional[Dict[str, object]]] = [None] * len(jobs)
        pending = list(enumerate(jobs))
        running: Dict[int, Tuple[int, int]] = {}
        while pending or running:
            while pending and len(running) < parallel:
                index, job = pending.pop(0)
                read_fd, write_fd = os.pipe()
                pid = os.fork()
                if pid == 0:  # child: never returns into this loop, whatever happens
                    try:
                        os.close(read_fd)
                        os.dup2(2, 1)  # a stray print must not interleave with the reply lines
                        data = json.dumps(_measure_job(job)).encode()
                        with os.fdopen(write_fd, "wb") as f:
                            f.write(data)
                    finally:
                        os._exit(0)
                os.close(write_fd)
                running[pid] = (index, read_fd)
            pid, status = os.wait()
            index, read_fd = running.pop(pid)
            with os.fdopen(read_fd, "rb") as f:
                data = f.read()
            result = json.loads(data) if data else {"error": f"measurement child died (wait status {status})"}
            lazy = result.pop("_lazy_modules", [])
            if any(name not in sys.modules for name in lazy):
                _import_quietly(lazy)
                gc.collect()
                gc.freeze()
            results[index] = result
        print(MARK + json.dumps(results), flush=True)
    return 0


class _Zygote:
    def __init__(self) -> None:
        package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
        # torch.cuda.is_available() in the zygote must not initialise the CUDA driver, or no forked
        # child could use the GPU; the NVML-based check does not.
        env.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
        self.proc = subprocess.Popen([sys.executable, "-m", "rpn2kernels.bench._peak", "--serve"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self._read()  # wait until the imports are done

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
        raise RuntimeError(f"the peak-memory zygote exited (status {self.proc.wait()})")

    def run(self, jobs: Sequence[Sequence], parallel: int) -> List[Dict[str, object]]:
        self.proc.stdin.write(json.dumps({"jobs": [list(j) for j in jobs], "parallel": parallel}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        for pipe in (self.proc.stdin, self.proc.stdout):  # both, or the exit warns of an unclosed file
            if not pipe.closed:
                pipe.close()


_ZYGOTE: Optional[_Zygote] = None


def measure_many(jobs: Sequence[Sequence], parallel: Optional[int] = None) -> List[Dict[str, object]]:
    """Each job (suite, case, impl, quick, case_kwargs, threads, device) in its own child of the
    zygote; the zygote is started on first use and kept for the next suite of the same run."""
    global _ZYGOTE
    if not jobs:
        return []
    if parallel is None:
        # One at a time: two children × the benchmark's threads on a 2-core machine spin in each
        # other's OpenMP barriers and take longer than running them in turn.
        parallel = 1
    try:
        if _ZYGOTE is None or _ZYGOTE.proc.poll() is not None:
            _ZYGOTE = _Zygote()
            atexit.register(_ZYGOTE.close)
        return _ZYGOTE.run(jobs, parallel)
    except (OSError, RuntimeError, ValueError) as error:
        return [{"error": f"peak-memory zygote failed: {error}"} for _ in jobs]


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--serve"]:
        return _serve()
    ap = argparse.ArgumentParser(prog="python -m rpn2kernels.bench._peak", description=__doc__.splitlines()[0])
    ap.add_argument("suite")
    ap.add_argument("case")
    ap.add_argument("impl")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=min(2, torch.get_num_threads()))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    print(json.dumps(measure(args.suite, args.case, args.impl, args.quick, {}, args.threads, args.device), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
