"""The benchmark runner's machinery on tiny expansion cases: JSON shape, positive ratios, the
correctness gate, and the refusal to time the reference as "ours"."""
import json
import os

import pytest
import torch

import rpn2kernels

from rpn2kernels.bench import limits as bench_limits
from rpn2kernels.bench import runner
from rpn2kernels.bench.suites import expansion


def _small_limits():
    cpu = torch.device("cpu")
    return {"threads": torch.get_num_threads(),
            "stream_triad": bench_limits.stream_triad(cpu, 1 << 20, 3),
            "sgemm": bench_limits.sgemm(cpu, 256, 3),
            "multiply_add_peak": bench_limits.multiply_add_peak(0.02)}


def test_multiply_add_peak_is_the_hardware_ceiling_of_sgemm(keep_threads):
    """Closed-form sanity: the probe's GFLOP/s on one thread, doubled, bounds two threads' from above
    (within noise), and the platform SGEMM of a large product cannot beat the multiply-add units."""
    torch.set_num_threads(1)
    one = rpn2kernels._C.cpu_multiply_add_peak(0.1)
    torch.set_num_threads(2)
    two = rpn2kernels._C.cpu_multiply_add_peak(0.1)
    assert 0 < two < 2.6 * one
    sgemm = bench_limits.sgemm(torch.device("cpu"), 1024, 3)["gflop_per_s"]
    assert sgemm < 1.1 * two
    with pytest.raises(ValueError, match=r"seconds must be in \(0, 60\], got -1"):
        rpn2kernels._C.cpu_multiply_add_peak(-1.0)


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_run_suite_writes_complete_json(tmp_path, keep_threads):
    result = runner.run_suite(
        "expansion", quick=True, out_dir=str(tmp_path), threads=2, device="cpu", warmup=1, runs=3,
        case_kwargs={"tiny": True, "bases": ["chebyshev", "taylor", "bspline"]}, limits=_small_limits(),
        echo=lambda s: None)
    with open(result["files"]["json"]) as f:
        data = json.load(f)
    assert os.path.getsize(result["files"]["png"]) > 0
    for key in ("suite", "mode", "quick_note", "environment", "limits", "protocol", "rows", "summary"):
        assert key in data, key
    for key in ("host", "torch_version", "threads", "cpu_model", "loadavg_before"):
        assert key in data["environment"], key
    assert data["limits"]["stream_triad"]["gb_per_s"] > 0 and data["limits"]["sgemm"]["gflop_per_s"] > 0
    assert len(data["limits"]["measurements"]) == 2  # start of the run and after the cases
    assert data["limits"]["multiply_add_peak"]["isa"] == rpn2kernels._extension.cpu_isa()
    assert data["limits"]["sgemm_fraction_of_peak"] == pytest.approx(
        data["limits"]["sgemm"]["gflop_per_s"] / data["limits"]["multiply_add_peak"]["gflop_per_s"])
    assert [r["case"] for r in data["rows"]] == ["E1-chebyshev", "E2-taylor", "E3-bspline"]
    assert data["summary"]["correctness_failures"] == 0
    for row in data["rows"]:
        assert row["correct"] is True
        assert set(row["impls"]) >= {"ours", "reference", "tinybig", "floor"}
        for name, impl in row["impls"].items():
            for mode in ("fwd", "bwd", "fwdbwd"):
                t = impl["times"][mode]
                assert 0 < t["min_s"] <= t["median_s"] and len(t["samples_s"]) == 3
            assert impl["saved_bytes"] >= 0 and impl["saved_bytes_total"] >= impl["saved_bytes"]
            assert "peak_bytes" in impl["peak"], impl["peak"]
            assert impl["achieved"]
        for name, ratio in row["ratios"].items():
            assert all(ratio[m] > 0 for m in ("fwd", "bwd", "fwdbwd", "fwdbwd_min")), (name, ratio)
        assert row["targets"] and all(t["met"] in (True, False) for t in row["targets"])
        assert "other_cores_busy" in row["contention"]
        # The fused op saves x only; the materialising ones at least κ(x), which is K times larger.
        assert row["impls"]["ours"]["saved_bytes"] < row["impls"]["tinybig"]["saved_bytes"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_run_suite_on_cuda_measures_device_peak(tmp_path, keep_threads):
    result = runner.run_suite(
        "expansion", quick=True, out_dir=str(tmp_path), threads=2, device="cuda", warmup=1, runs=3,
        case_kwargs={"tiny": True, "bases": ["chebyshev"]}, echo=lambda s: None)
    assert os.path.basename(result["files"]["json"]).startswith(runner._machine_tag(torch.device("cuda")))
    for impl in result["rows"][0]["impls"].values():
        # one fwd+bwd allocates at least the output and the weight gradient on the device
        assert impl["peak"]["device_peak_bytes"] > 0, impl["peak"]


def test_correctness_gate_fails_the_row():
    case = expansion.cases(quick=True, tiny=True, bases=["chebyshev"])[0]
    ours = next(i for i in case.impls if i.name == "ours")

    def wrong(inputs):
        p = ours.setup(inputs)
        forward = p.forward
        p.forward = lambda: forward() * 1.01
        return p

    case.impls = [runner.Impl("ours", "off by 1%", wrong, role="ours")] + \
        [i for i in case.impls if i.role == "reference"]
    lim = {"sgemm": {"gflop_per_s": 1.0}, "stream_triad": {"gb_per_s": 1.0}}
    row = runner.run_case(case, torch.device("cpu"), 1, 2, runner._Timer(torch.device("cpu")), lim)
    assert row["correct"] is False and "ours output" in row["error"]


def test_unavailable_backend_is_an_error_not_a_fallback(monkeypatch):
    from rpn2kernels import backends

    def refuse(*args, **kwargs):
        raise backends.BackendUnavailable("no compiled kernels (test)")

    monkeypatch.setattr(backends, "select_backend", refuse)
    with pytest.raises(RuntimeError, match="cannot run here"):
        expansion.cases(quick=True, tiny=True)
