"""pytest-benchmark suite of the propagation cases (G1–G5 and C1 of spec/bench.md), for regression
tracking: ``pytest bench/ --benchmark-only [--benchmark-json=out.json] [--benchmark-compare]``.

The cases and implementations are exactly those of ``python -m rpn2kernels.bench --suite
propagation`` (rpn2kernels/bench/suites/propagation.py), one benchmark per case × implementation,
grouped by case so the table compares ours, the reference, the tinyBIG-equivalent, the peer (PyG when
installed, torch.sparse.mm) and the floor side by side. Each benchmark times one forward+backward
after the runner's correctness gate. The suite's one-shot measurements have twins here too: G3's
build + first forward+backward of ours and of tinyBIG (a dense inverse; one round each), G5's tinyBIG
where the suite moves it out of the runner (full sizes only), and the C1 no-NaN check at L = 4096.
Quick shapes by default; ``RPN2K_BENCH_FULL=1`` selects bench.md's shapes, ``RPN2K_BENCH_THREADS`` the
thread count (2). Not collected by ``pytest tests`` (testpaths = tests).
"""
import os

import pytest
import torch

from rpn2kernels.bench.runner import benchmark_case, case_impl_params
from rpn2kernels.bench.suites import propagation

FULL = os.environ.get("RPN2K_BENCH_FULL", "0") == "1"
THREADS = int(os.environ.get("RPN2K_BENCH_THREADS", "2"))
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SIZES = propagation.SIZES["full" if FULL else "quick"]

torch.set_num_threads(THREADS)
CASES = propagation.cases(quick=not FULL, device=DEVICE)


def _sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


@pytest.mark.parametrize("case,impl_name", case_impl_params(CASES))
def test_propagation(benchmark, case, impl_name):
    benchmark_case(benchmark, case, impl_name, DEVICE, FULL)


# ------------------------------------------------------------------------------------------------
# G3: build + first forward+backward (one round each: tinyBIG's build is a dense inverse)

_, G3_GRAPHS, G3_F = SIZES["G3"]


@pytest.mark.parametrize("graph_name", G3_GRAPHS)
@pytest.mark.parametrize("impl_name", ["ours", "tinybig"])
def test_g3_build_and_first_call(benchmark, graph_name, impl_name):
    from rpn2kernels import functional
    from rpn2kernels.graph import Graph

    N, _, undirected, _ = propagation.GRAPHS[graph_name]
    links = propagation.graph_links(graph_name)
    link_list = [tuple(pair) for pair in links.t().tolist()]
    g = torch.Generator().manual_seed(900)
    x0 = torch.randn(N, G3_F, generator=g).to(DEVICE)
    grad = torch.randn(N, G3_F, generator=g).to(DEVICE)
    propagation._warm_up(G3_F, DEVICE)  # lazy imports of the first custom-op call stay out of the timing

    def fresh():
        return (x0.clone().requires_grad_(),), {}

    def ours(x):
        G = Graph.from_edge_index(links.to(DEVICE), N, directed=not undirected, normalization="column")
        functional.pagerank(G, x, propagation.C).backward(grad)
        _sync()

    def tinybig(x):
        propagation._tb_pagerank_first(N, link_list, undirected, x, grad)
        _sync()

    benchmark.group = f"G3-first-call-{graph_name}"
    benchmark.extra_info.update({"N": N, "F": G3_F, "impl": impl_name, "threads": torch.get_num_threads()})
    benchmark.pedantic(ours if impl_name == "ours" else tinybig, setup=fresh,
                       rounds=3 if impl_name == "ours" else 1, iterations=1)


# ------------------------------------------------------------------------------------------------
# G5 above the size where the suite keeps tinyBIG's dense GAT in the runner (full shapes only)

G5_GRAPH, G5_M = SIZES["G5"]


@pytest.mark.skipif(propagation.GRAPHS[G5_GRAPH][0] <= propagation.DENSE_ROW_MAX_N,
                    reason="at this size tinyBIG's dense GAT is a row of test_propagation")
def test_g5_tinybig_dense_gat(benchmark):
    case = propagation._g5_case(G5_GRAPH, G5_M, propagation.resolve_ours_backends(DEVICE), DEVICE, 206,
                                tinybig_row=True)
    inputs = case.make_inputs(DEVICE)
    impl = next(i for i in case.impls if i.name == "tinybig")
    p = impl.setup(inputs)

    def forward_backward():
        p.reset()
        p.forward().backward(inputs["grad_out"])
        _sync()

    benchmark.group = case.name
    benchmark.extra_info.update({"impl": impl.label, "N": case.meta["N"], "threads": torch.get_num_threads()})
    benchmark.pedantic(forward_backward, rounds=1, iterations=1)


# ------------------------------------------------------------------------------------------------
# C1: no NaN for the bi-directional inverse approximation at L = 4096


def test_c1_inverse_bidirectional_no_nan(benchmark):
    L, b, m = SIZES["C1_check"]
    result = benchmark.pedantic(propagation.chain_check, args=(L, b, m, str(DEVICE)), rounds=1, iterations=1)
    benchmark.group = "C1-inverse_approx-bi-no-NaN"
    benchmark.extra_info.update({"L": L, "b": b, "m": m})
    assert result["no_nan_fwd_bwd"]
    assert result["vs_float64_horner (b=2, m=4)"]["max_rel_err"] <= 1e-4
