"""The propagation family on every backend: graph SpMM powers, PageRank and edge attention against
dense closed forms (Â built by hand from the spec's formulas), gradients against the reference,
gradcheck, opcheck, determinism and bad input."""
import math

import pytest
import torch

import rpn2kernels
from rpn2kernels import Graph
from rpn2kernels import functional as F
from rpn2kernels.ops import propagation as ops
from rpn2kernels.reference import propagation as reference
from rpn2kernels.testing import backend_device_params, compiled_backend_params, scaled_tolerance


def random_edges(num_nodes, num_edges, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, max(num_nodes, 1), (2, num_edges), generator=g) if num_nodes else torch.zeros(2, 0,
                                                                                                            dtype=torch.long)


# name -> (edge_index, num_nodes): the corner cases of the issue
GRAPHS = {
    "random": (random_edges(23, 70), 23),
    "isolated-and-empty-rows": (torch.tensor([[0, 0, 3, 5], [1, 3, 5, 0]]), 9),
    "self-loops-only": (torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]]), 4),
    "duplicates": (torch.tensor([[0, 0, 0, 1, 2, 2], [1, 1, 2, 2, 0, 0]]), 3),
    "single-node": (torch.tensor([[0], [0]]), 1),
    "no-edges": (torch.zeros(2, 0, dtype=torch.long), 5),
}
NORMALIZATIONS = [None, "column", "row", "row_column", "symmetric"]


def dense_adjacency(edge_index, n, directed, self_loops, dtype=torch.float64):
    """tinyBIG's A (functions.md §5.5): duplicates collapse to 1, max(A, Aᵀ) when undirected, + I."""
    A = torch.zeros(n, n, dtype=dtype)
    if edge_index.numel():
        A[edge_index[0], edge_index[1]] = 1.0
    if not directed:
        A = torch.maximum(A, A.t())
    if self_loops:
        A = A + torch.eye(n, dtype=dtype)
    return A


def dense_normalized(A, mode):
    """The §5.5 table, written densely and independently of rpn2kernels.graph."""
    one = lambda s: torch.where(s == 0, torch.ones_like(s), s)  # noqa: E731
    r, c = one(A.sum(1)), one(A.sum(0))
    if mode is None:
        return A
    if mode == "row":
        return A / r[:, None]
    if mode == "column":
        return A / c[None, :]
    if mode == "symmetric":
        return A / (r.sqrt()[:, None] * c.sqrt()[None, :])
    M = A / r.sqrt()[:, None]
    return M / one(M.sum(0)).sqrt()[None, :]


def to_backend(graph, device, dtype):
    return graph.to(device=device, dtype=dtype)


@pytest.mark.parametrize("mode", NORMALIZATIONS, ids=str)
@pytest.mark.parametrize("directed", [True, False], ids=["directed", "undirected"])
@pytest.mark.parametrize("self_loops", [False, True], ids=["no-loops", "loops"])
def test_graph_normalisation_matches_the_dense_formulas(mode, directed, self_loops):
    for name, (edge_index, n) in GRAPHS.items():
        graph = Graph.from_edge_index(edge_index, n, directed=directed, self_loops=self_loops, normalization=mode,
                                      dtype=torch.float64)
        expected = dense_normalized(dense_adjacency(edge_index, n, directed, self_loops), mode)
        torch.testing.assert_close(graph.dense().double(), expected, rtol=1e-12, atol=1e-12, msg=name)
        # the cached transpose lists the same entries
        rows = reference.csr_rows(graph.t_rowptr)
        torch.testing.assert_close(graph.dense()[rows, graph.t_col], graph.edge_values()[graph.t_perm], msg=name)


def test_graph_spec_example_row_column_vs_symmetric():
    path = torch.tensor([[0, 1], [1, 2]])
    rc = Graph.from_edge_index(path, 3, directed=False, self_loops=True, normalization="row_column").dense()
    sym = Graph.from_edge_index(path, 3, directed=False, self_loops=True, normalization="symmetric").dense()
    assert rc[0, 0].item() == pytest.approx(0.6239, abs=1e-4)
    assert rc[0, 1].item() == pytest.approx(0.5011, abs=1e-4)
    assert rc[1, 1].item() == pytest.approx(0.4091, abs=1e-4)
    assert (sym[0, 0].item(), sym[0, 1].item(), sym[1, 1].item()) == pytest.approx((0.5, 0.4082, 0.3333), abs=1e-4)


def test_graph_self_scaling_and_existing_self_loop():
    graph = Graph.from_edge_index(torch.tensor([[0, 1], [0, 0]]), 2, self_loops=True, self_scaling=0.5,
                                  dtype=torch.float64)
    torch.testing.assert_close(graph.dense(), torch.tensor([[1.5, 0.0], [1.0, 0.5]], dtype=torch.float64))


def test_graph_from_links_and_weighted_duplicates():
    graph = Graph.from_links(["a", "b", "c"], [("a", "b"), ("b", "c"), ("a", "b")], dtype=torch.float64)
    torch.testing.assert_close(graph.dense().double(), dense_adjacency(torch.tensor([[0, 1], [1, 2]]), 3, True, False))
    weighted = Graph.from_edge_index(torch.tensor([[0, 0], [1, 1]]), 2, edge_weight=torch.tensor([0.25, 0.5]))
    assert weighted.dense()[0, 1].item() == pytest.approx(0.75)
    with pytest.raises(ValueError, match="not in nodes"):
        Graph.from_links(["a"], [("a", "z")])


@pytest.mark.parametrize("bad, match", [
    (dict(edge_index=torch.tensor([[0, 5], [1, 2]]), num_nodes=3), "out of range for num_nodes=3"),
    (dict(edge_index=torch.tensor([[0, -1], [1, 2]]), num_nodes=3), ">= 0, got -1"),
    (dict(edge_index=torch.tensor([[0.0, 1.0], [1.0, 2.0]]), num_nodes=3), "dtype int64 or int32"),
    (dict(edge_index=torch.tensor([0, 1, 2]), num_nodes=3), r"shape \(2, E\)"),
    (dict(edge_index=torch.tensor([[0], [1]]), num_nodes=3, normalization="mean"), "normalization must be one of"),
    (dict(edge_index=torch.tensor([[0], [1]]), num_nodes=3, normalization="row",
          edge_weight=torch.tensor([float("nan")])), "NaN"),
    (dict(edge_index=torch.tensor([[0], [1]]), num_nodes=3, edge_weight=torch.tensor([1.0, 2.0])), r"shape \(E=1,\)"),
])
def test_graph_bad_input(bad, match):
    edge_index = bad.pop("edge_index")
    num_nodes = bad.pop("num_nodes")
    with pytest.raises((ValueError, TypeError), match=match):
        Graph.from_edge_index(edge_index, num_nodes, **bad)


def test_graph_module_moves_and_saves():
    graph = Graph.from_edge_index(random_edges(11, 30), 11, normalization="column")
    state = graph.state_dict()
    assert set(state) == {"rowptr", "col", "value", "t_rowptr", "t_col", "t_perm"}
    other = Graph.from_edge_index(random_edges(7, 5, seed=3), 7, normalization="column")
    other.load_state_dict(state)
    assert other.num_nodes == 11
    torch.testing.assert_close(other.dense(), graph.dense())
    # the derived transposed values follow the loaded graph and dtype moves
    torch.testing.assert_close(other.t_value, graph.value[graph.t_perm], rtol=0, atol=0)
    wide = other.to(torch.float64)
    assert wide.t_value.dtype == torch.float64
    torch.testing.assert_close(wide.t_value, wide.value[wide.t_perm], rtol=0, atol=0)
    assert graph.to(torch.float64).value.dtype == torch.float64


# ---------------------------------------------------------------------------------------------
# propagate / pagerank / edge attention on every backend

@pytest.mark.parametrize("backend_device", backend_device_params())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("graph_name", list(GRAPHS))
@pytest.mark.parametrize("F_", [1, 7, 37], ids=["F1", "F7", "F37"])  # 37: two full 16-wide CPU blocks and a tail
def test_propagate_matches_dense_powers(backend_device, dtype, graph_name, F_):
    backend, device = backend_device
    edge_index, n = GRAPHS[graph_name]
    graph = Graph.from_edge_index(edge_index, n, directed=False, self_loops=True, normalization="column", dtype=dtype)
    graph = to_backend(graph, device, dtype)
    A = graph.dense().double().cpu()
    x = torch.randn(n, F_, dtype=dtype)
    for hops, accumulate in ((1, False), (3, False), (3, True)):
        expected = sum(torch.linalg.matrix_power(A.t(), k) @ x.double() for k in range(1, hops + 1)) if accumulate \
            else torch.linalg.matrix_power(A.t(), hops) @ x.double()
        xs = x.to(device).clone().requires_grad_()
        out = F.propagate(graph, xs, hops, accumulate, backend=backend)
        torch.testing.assert_close(out.double().cpu(), expected, **scaled_tolerance(dtype, expected))
        grad = torch.randn(n, F_, dtype=dtype)
        out.backward(grad.to(device))
        ops_T = sum(torch.linalg.matrix_power(A, k) for k in range(1, hops + 1)) if accumulate \
            else torch.linalg.matrix_power(A, hops)
        expected_grad = ops_T @ grad.double()
        torch.testing.assert_close(xs.grad.double().cpu(), expected_grad, **scaled_tolerance(dtype, expected_grad))


@pytest.mark.parametrize("backend_device", backend_device_params())
def test_graph_spmm_edge_value_gradient_and_base(backend_device):
    backend, device = backend_device
    graph = Graph.from_edge_index(random_edges(13, 40), 13, normalization="row", dtype=torch.float64).to(device)
    value = graph.value.clone().requires_grad_()
    x = torch.randn(13, 5, dtype=torch.float64, device=device, requires_grad=True)
    base = torch.randn(13, 5, dtype=torch.float64, device=device, requires_grad=True)
    args = (graph.rowptr, graph.col, value, graph.t_rowptr, graph.t_col, value.detach()[graph.t_perm])
    if backend == "reference":
        out = reference.spmm(graph.rowptr, graph.col, value, x, base, 0.7, -1.3)
    else:
        out = ops.graph_spmm(*args, x, base, 0.7, -1.3, backend)
    grads = torch.autograd.grad(out.square().sum(), (value, x, base))
    value_r, x_r, base_r = (t.detach().clone().requires_grad_() for t in (value, x, base))
    out_r = reference.spmm(graph.rowptr, graph.col, value_r, x_r, base_r, 0.7, -1.3)
    grads_r = torch.autograd.grad(out_r.square().sum(), (value_r, x_r, base_r))
    torch.testing.assert_close(out, out_r)
    for got, want in zip(grads, grads_r):
        torch.testing.assert_close(got, want)


def dense_pagerank(A, x, c):
    n = A.shape[0]
    return c * torch.linalg.solve(torch.eye(n, dtype=torch.float64) - (1 - c) * A.t(), x.double())


@pytest.mark.parametrize("backend_device", backend_device_params())
@pytest.mark.parametrize("mode", ["column", "row", "symmetric", None])
def test_pagerank_matches_the_dense_inverse(backend_device, mode):
    backend, device = backend_device
    edge_index, n = random_edges(40, 160, seed=1), 40
    graph = Graph.from_edge_index(edge_index, n, directed=mode == "symmetric", normalization=mode).to(device)
    A = graph.dense().double().cpu()
    x = torch.randn(n, 3)
    xs = x.to(device).requires_grad_()
    # An unnormalised graph needs (1-c)·ρ(A) < 1. The interpreter (≈0.3 s per Triton SpMM here)
    # runs a larger c, i.e. fewer steps: the same code path, a shorter series.
    c = 0.9 if mode is None else (0.5 if backend == "triton" and str(device) == "cpu" else 0.15)
    out = F.pagerank(graph, xs, c, tol=1e-7, backend=backend)
    expected = dense_pagerank(A, x, c)
    assert ((out.double().cpu() - expected).abs().max() / expected.abs().max()).item() <= 1e-4
    grad = torch.randn(n, 3)
    out.backward(grad.to(device))
    expected_grad = c * torch.linalg.solve(torch.eye(n, dtype=torch.float64) - (1 - c) * A, grad.double())
    assert ((xs.grad.double().cpu() - expected_grad).abs().max() / expected_grad.abs().max()).item() <= 1e-4


def _pagerank_structure(graph, value):
    """The op's CSR arguments with P's values ``value`` (a leaf that may require grad)."""
    return (graph.rowptr, graph.col, value, graph.t_rowptr, graph.t_col, value.detach()[graph.t_perm])


@pytest.mark.parametrize("backend_device", compiled_backend_params())
@pytest.mark.parametrize("steps", [0, 1, 2, 4, 5, 10])  # one segment; S² (4); a ragged last segment (5, 10)
def test_pagerank_edge_value_gradient_is_the_truncated_series_gradient(backend_device, steps):
    """dZ_T/dP by the checkpointed reverse sweep against autograd through the reference's unrolled
    iteration (exact for the same truncated series), values and x at once."""
    backend, device = backend_device
    graph = Graph.from_edge_index(random_edges(17, 60, seed=4), 17, self_loops=True, normalization="column").to(device)
    value = graph.value.clone().requires_grad_()
    x = torch.randn(17, 5, device=device, requires_grad=True)
    out = ops.pagerank(*_pagerank_structure(graph, value), x, 0.2, steps, backend)
    grad = torch.randn_like(out)
    got_value, got_x = torch.autograd.grad(out, (value, x), grad)
    value_r, x_r = value.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
    out_r = reference.pagerank_iterate(graph.rowptr, graph.col, value_r, x_r, 0.2, steps)
    want_value, want_x = torch.autograd.grad(out_r, (value_r, x_r), grad, materialize_grads=True)
    torch.testing.assert_close(out, out_r)
    torch.testing.assert_close(got_value, want_value, **scaled_tolerance(torch.float32, want_value))
    torch.testing.assert_close(got_x, want_x, **scaled_tolerance(torch.float32, want_x))
    if steps == 0:
        assert torch.count_nonzero(got_value) == 0  # Z_0 = c·x does not depend on P


@pytest.mark.parametrize("steps", [1, 4, 7])
def test_pagerank_edge_value_gradcheck_fp64(steps):
    graph = Graph.from_edge_index(random_edges(9, 25, seed=2), 9, self_loops=True, normalization="column",
                                  dtype=torch.float64)
    value = graph.value.clone().requires_grad_()
    x = torch.randn(9, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda val, t: ops.pagerank(*_pagerank_structure(graph, val), t, 0.3, steps, "cpu"), (value, x))


def test_pagerank_edge_value_gradient_matches_the_dense_inverse():
    """Run to convergence, the truncated series' gradient is the exact PageRank's:
    Z = c·M⁻¹x with M = I − (1−c)·P gives dL/dP = (1−c)·(M⁻ᵀG)·Zᵀ on P's pattern."""
    edge_index, n, c = random_edges(30, 110, seed=6), 30, 0.2
    graph = Graph.from_edge_index(edge_index, n, self_loops=True, normalization="column", dtype=torch.float64)
    value = graph.value.clone().requires_grad_()
    x, grad = torch.randn(n, 4, dtype=torch.float64), torch.randn(n, 4, dtype=torch.float64)
    steps = F.pagerank_steps(graph, c, tol=1e-13)
    out = ops.pagerank(*_pagerank_structure(graph, value), x, c, steps, "cpu")
    (got,) = torch.autograd.grad(out, value, grad)
    rows = torch.repeat_interleave(torch.arange(n), graph.rowptr.diff())
    P = torch.zeros(n, n, dtype=torch.float64).index_put_((rows, graph.col), graph.value.detach(), accumulate=True)
    M = torch.eye(n, dtype=torch.float64) - (1 - c) * P
    Z = c * torch.linalg.solve(M, x)
    adjoint = torch.linalg.solve(M.t(), grad)
    want = (1 - c) * (adjoint[rows] * Z[graph.col]).sum(1)
    torch.testing.assert_close(out, Z, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_pagerank_refuses_a_divergent_series():
    graph = Graph.from_edge_index(torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]), 3)  # ρ(A) = √2
    with pytest.raises(ValueError, match="diverges"):
        F.pagerank(graph, torch.randn(3, 2), 0.15)


def dense_attention(A, q, k, v, scale):
    """§5.11 written densely: E = scale·Â ⊙ (K Qᵀ) (E[u, v] for u → v), masked column softmax."""
    E = scale * A * (k.double() @ q.double().t())
    mask = E != 0
    logits = torch.where(mask, E, torch.full_like(E, -1e300))
    alpha = torch.softmax(logits, dim=0) * mask
    alpha = torch.where(mask.any(0, keepdim=True), alpha, torch.zeros_like(alpha))
    return alpha.t() @ v.double()


@pytest.mark.parametrize("backend_device", backend_device_params())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("graph_name", ["random", "isolated-and-empty-rows", "duplicates", "single-node", "no-edges"])
def test_edge_attention_matches_dense_masked_softmax(backend_device, dtype, graph_name):
    backend, device = backend_device
    edge_index, n = GRAPHS[graph_name]
    graph = Graph.from_edge_index(edge_index, n, self_loops=graph_name == "random", normalization="column",
                                  dtype=dtype).to(device)
    if graph.num_edges > 2:  # an exactly-zero edge value is masked out, as tinyBIG's [E ≠ 0]
        graph.value[1] = 0.0
    q, k, v = (torch.randn(n, d, dtype=dtype) for d in (3, 3, 5))
    out = F.edge_attention(graph, q.to(device), k.to(device), v.to(device), 0.8, backend=backend)
    expected = dense_attention(graph.dense().double().cpu(), q, k, v, 0.8)
    torch.testing.assert_close(out.double().cpu(), expected, **scaled_tolerance(dtype, expected))


@pytest.mark.parametrize("backend_device", compiled_backend_params())
@pytest.mark.parametrize("low_rank_width", [2, 6])
def test_edge_attention_gradients_match_reference(backend_device, low_rank_width):
    backend, device = backend_device
    graph = Graph.from_edge_index(random_edges(17, 60, seed=4), 17, self_loops=True, normalization="column",
                                  dtype=torch.float64).to(device)
    value = graph.value.clone().requires_grad_()
    tensors = [torch.randn(17, d, dtype=torch.float64, device=device, requires_grad=True)
               for d in (low_rank_width, low_rank_width, 4)]
    args = (graph.rowptr, graph.col, value, graph.t_rowptr, graph.t_col, graph.t_perm)
    out, _ = ops.graph_attention(*args, *tensors, 0.6, backend)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (value, *tensors), grad)
    leaves = [t.detach().clone().requires_grad_() for t in (value, *tensors)]
    out_r, _ = reference.edge_attention(graph.rowptr, graph.col, leaves[0], *leaves[1:], 0.6)
    want = torch.autograd.grad(out_r, leaves, grad)
    torch.testing.assert_close(out, out_r)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


# ---------------------------------------------------------------------------------------------
# gradcheck, opcheck, determinism, non-contiguous inputs

@pytest.mark.parametrize("backend_device", compiled_backend_params())
def test_gradcheck_fp64(backend_device):
    backend, device = backend_device
    graph = Graph.from_edge_index(random_edges(9, 25, seed=2), 9, self_loops=True, normalization="column",
                                  dtype=torch.float64).to(device)
    x = torch.randn(9, 3, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.propagate(graph, t, 2, True, backend=backend), (x,))
    assert torch.autograd.gradcheck(lambda t: F.pagerank(graph, t, 0.3, steps=3, backend=backend), (x,))
    q, k, v = (torch.randn(9, d, dtype=torch.float64, device=device, requires_grad=True) for d in (2, 2, 3))
    assert torch.autograd.gradcheck(lambda a, b, c: F.edge_attention(graph, a, b, c, 0.9, backend=backend), (q, k, v))
    value = graph.value.clone().requires_grad_()
    spmm_args = lambda val: (graph.rowptr, graph.col, val, graph.t_rowptr, graph.t_col,  # noqa: E731
                             val.detach()[graph.t_perm])
    attention_args = lambda val: (graph.rowptr, graph.col, val, graph.t_rowptr, graph.t_col, graph.t_perm)  # noqa: E731
    assert torch.autograd.gradcheck(lambda val, t: ops.graph_spmm(*spmm_args(val), t, None, 0.5, 0.0, backend),
                                    (value, x))
    assert torch.autograd.gradcheck(lambda val: ops.graph_attention(*attention_args(val), q, k, v, 0.9, backend)[0],
                                    (value,))


@pytest.mark.parametrize("backend_device", compiled_backend_params())
def test_double_backward_of_the_linear_graph_ops(backend_device):
    """graph_spmm and pagerank are linear in x: their backward is the same op on the transpose, so
    gradients of gradients (create_graph=True) are exact on every backend."""
    backend, device = backend_device
    graph = Graph.from_edge_index(random_edges(9, 25, seed=3), 9, self_loops=True, normalization="column",
                                  dtype=torch.float64).to(device)
    interpreted = backend == "triton" and str(device) == "cpu"  # ≈1 ms per program: fewer, smaller calls
    features, steps = (2, 2) if interpreted else (3, 4)
    x = torch.randn(9, features, dtype=torch.float64, device=device, requires_grad=True)
    base = torch.randn(9, features, dtype=torch.float64, device=device, requires_grad=True)
    structure = (graph.rowptr, graph.col, graph.value, graph.t_rowptr, graph.t_col, graph.t_value)
    assert torch.autograd.gradgradcheck(lambda t, u: ops.graph_spmm(*structure, t, u, 0.7, 1.5, backend), (x, base))
    assert torch.autograd.gradgradcheck(lambda t: F.pagerank(graph, t, 0.3, steps=steps, backend=backend), (x,))
    if not interpreted:
        assert torch.autograd.gradgradcheck(lambda t: F.propagate(graph, t, 3, True, backend=backend), (x,))
    # against the reference's plain autograd: a gradient penalty's gradient
    for fn in (lambda t, be: F.propagate(graph, t, 2, False, backend=be),
               lambda t, be: F.pagerank(graph, t, 0.3, steps=4, backend=be)):
        got, want = [torch.autograd.grad(torch.autograd.grad(fn(x, be).sin().sum(), x, create_graph=True)[0]
                                         .square().sum(), x)[0] for be in (backend, "reference")]
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("backend_device", compiled_backend_params())
def test_double_backward_that_is_not_implemented_raises(backend_device):
    """Edge attention (non-linear) and the edge-value gradients have kernel-op backwards without
    autograd: create_graph=True raises instead of returning a gradient that ignores its inputs."""
    backend, device = backend_device
    graph = Graph.from_edge_index(random_edges(9, 25, seed=3), 9, self_loops=True, normalization="column").to(device)
    x = torch.randn(9, 3, device=device, requires_grad=True)
    value = graph.value.clone().requires_grad_()
    values_structure = _pagerank_structure(graph, value)
    cases = [("graph_attention", lambda: F.edge_attention(graph, x, x, x, 0.5, backend=backend)),
             ("graph_spmm", lambda: ops.graph_spmm(*values_structure, x, None, 1.0, 0.0, backend)),
             ("pagerank", lambda: ops.pagerank(*values_structure, x, 0.3, 3, backend))]
    for name, fn in cases:
        with pytest.raises(NotImplementedError, match=rf"rpn2kernels::{name}: double backward \(create_graph=True\)"):
            torch.autograd.grad(fn().square().sum(), x, create_graph=True)
        fn().square().sum().backward()  # a plain backward is unaffected


@pytest.mark.parametrize("backend_device", compiled_backend_params())
def test_opcheck(backend_device):
    backend, device = backend_device
    graph = Graph.from_edge_index(random_edges(8, 20, seed=5), 8, self_loops=True, normalization="column").to(device)
    structure = (graph.rowptr, graph.col, graph.value, graph.t_rowptr, graph.t_col, graph.t_value)
    x = torch.randn(8, 3, device=device, requires_grad=True)
    q, k, v = (torch.randn(8, d, device=device, requires_grad=True) for d in (2, 2, 3))
    torch.library.opcheck(ops.graph_spmm, (*structure, x, x.detach().clone().requires_grad_(), 0.5, 2.0, backend))
    torch.library.opcheck(ops.graph_attention, (*structure[:5], graph.t_perm, q, k, v, 0.7, backend))
    torch.library.opcheck(ops.pagerank, (*structure, x, 0.2, 5, backend))
    learnable = graph.value.clone().requires_grad_()  # the checkpointed edge-value backward
    torch.library.opcheck(ops.pagerank, (*_pagerank_structure(graph, learnable), x, 0.2, 5, backend))
    torch.library.opcheck(ops.graph_spmm, (*_pagerank_structure(graph, learnable), x, None, 0.5, 0.0, backend))
    prefix = "triton_" if backend == "triton" else ""
    kernels = torch.ops.rpn2kernels
    xd = x.detach()
    torch.library.opcheck(getattr(kernels, f"{prefix}spmm"), (graph.rowptr, graph.col, graph.value, xd, xd, 0.5, 2.0))
    torch.library.opcheck(getattr(kernels, f"{prefix}pagerank_iterate"), (graph.rowptr, graph.col, graph.value, xd,
                                                                          0.2, 4))
    torch.library.opcheck(getattr(kernels, f"{prefix}sddmm"), (graph.rowptr, graph.col, xd, xd))
    out, lse = getattr(kernels, f"{prefix}edge_attention")(graph.rowptr, graph.col, graph.value, q.detach(),
                                                            k.detach(), v.detach(), 0.7)
    torch.library.opcheck(getattr(kernels, f"{prefix}edge_attention"),
                          (graph.rowptr, graph.col, graph.value, q.detach(), k.detach(), v.detach(), 0.7))
    torch.library.opcheck(getattr(kernels, f"{prefix}edge_attention_backward"),
                          (graph.rowptr, graph.col, graph.value, q.detach(), k.detach(), v.detach(), out, lse,
                           torch.randn_like(out), 0.7))


@pytest.mark.parametrize("backend_device", compiled_backend_params())
def test_deterministic_bitwise(backend_device):
    backend, device = backend_device
    graph = Graph.from_edge_index(random_edges(31, 200, seed=6), 31, self_loops=True, normalization="column").to(device)
    x = torch.randn(31, 9, device=device)
    q, k = torch.randn(31, 4, device=device), torch.randn(31, 4, device=device)

    def run():
        xs, qs, ks = (t.clone().requires_grad_() for t in (x, q, k))
        out = F.propagate(graph, xs, 2, True, backend=backend) + F.edge_attention(graph, qs, ks, xs, 0.5,
                                                                                  backend=backend)
        out.backward(torch.ones_like(out))
        return out.detach(), xs.grad, qs.grad, ks.grad

    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        first, second = run(), run()
    finally:
        torch.use_deterministic_algorithms(previous)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend_device", compiled_backend_params())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("graph_name", ["random", "isolated-and-empty-rows", "single-node", "no-edges"])
@pytest.mark.parametrize("F_, iterations", [(1, 0), (7, 1), (37, 9), (0, 3)], ids=["F1-T0", "F7-T1", "F37-T9", "F0-T3"])
def test_pagerank_iterate_is_the_spmm_loop(backend_device, dtype, graph_name, F_, iterations):
    """The one-call series equals, bitwise, the T spmm calls it replaces on the same backend, and
    the reference series within tolerance."""
    backend, device = backend_device
    edge_index, n = GRAPHS[graph_name]
    graph = Graph.from_edge_index(edge_index, n, self_loops=True, normalization="column").to(device=device,
                                                                                              dtype=dtype)
    x = torch.randn(n, 13, dtype=dtype, device=device)[:, :F_]  # non-contiguous when F_ < 13
    c = 0.2
    prefix = "triton_" if backend == "triton" else ""
    spmm, series = (getattr(torch.ops.rpn2kernels, prefix + name) for name in ("spmm", "pagerank_iterate"))
    xc = x.contiguous()
    z = xc * c
    for _ in range(iterations):
        z = spmm(graph.rowptr, graph.col, graph.value, z, xc, 1.0 - c, c)
    got = series(graph.rowptr, graph.col, graph.value, x, c, iterations)
    assert torch.equal(got, z)
    expected = reference.pagerank_iterate(graph.rowptr, graph.col, graph.value, xc, c, iterations)
    torch.testing.assert_close(got, expected, **scaled_tolerance(dtype, expected))


@pytest.mark.parametrize("backend_device", compiled_backend_params())
def test_pagerank_iterate_bad_input(backend_device):
    backend, device = backend_device
    prefix = "triton_" if backend == "triton" else ""
    series = getattr(torch.ops.rpn2kernels, prefix + "pagerank_iterate")
    rowptr, col = torch.tensor([0, 1, 2], device=device), torch.tensor([1, 0], device=device)
    x = torch.randn(2, 3, device=device)
    error = RuntimeError if backend != "triton" else ValueError
    with pytest.raises(error, match="square graph: rowptr has R=2 rows, x has 3"):
        series(rowptr, col, None, torch.randn(3, 3, device=device), 0.2, 2)
    with pytest.raises(error, match="iterations must be >= 0, got -1"):
        series(rowptr, col, None, x, 0.2, -1)
    with pytest.raises(error, match=r"c must be in \(0, 1\], got 1.5"):
        series(rowptr, col, None, x, 1.5, 2)


@pytest.mark.parametrize("backend_device", backend_device_params())
def test_non_contiguous_features(backend_device):
    backend, device = backend_device
    graph = Graph.from_edge_index(random_edges(12, 40, seed=7), 12, normalization="column").to(device)
    wide = torch.randn(6, 12, device=device)
    x = wide.t()  # (12, 6), non-contiguous
    assert not x.is_contiguous()
    torch.testing.assert_close(F.propagate(graph, x, 2, backend=backend), F.propagate(graph, x.contiguous(), 2,
                                                                                       backend="reference"))
    torch.testing.assert_close(F.edge_attention(graph, x, x, x, 0.3, backend=backend),
                               F.edge_attention(graph, x.contiguous(), x.contiguous(), x.contiguous(), 0.3,
                                                backend="reference"))


# ---------------------------------------------------------------------------------------------
# bad input

def test_functional_bad_input():
    graph = Graph.from_edge_index(random_edges(5, 8), 5)
    with pytest.raises(ValueError, match="expected 5 rows, got 4"):
        F.propagate(graph, torch.randn(4, 2))
    with pytest.raises(TypeError, match="floating-point"):
        F.propagate(graph, torch.ones(5, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="hops must be an int >= 1"):
        F.propagate(graph, torch.randn(5, 2), 0)
    with pytest.raises(TypeError, match="rpn2kernels.Graph"):
        F.propagate(torch.eye(5), torch.randn(5, 2))
    with pytest.raises(ValueError, match="c must be in"):
        F.pagerank(graph, torch.randn(5, 2), 1.5)
    with pytest.raises(ValueError, match="k must have q's shape"):
        F.edge_attention(graph, torch.randn(5, 2), torch.randn(5, 3), torch.randn(5, 4))
    with pytest.raises(ValueError, match="graph's device"):
        F.propagate(graph, torch.randn(5, 2, device="meta"))


def test_compiled_kernels_name_the_bad_argument():
    kernels = torch.ops.rpn2kernels
    rowptr, col, x = torch.tensor([0, 1, 2]), torch.tensor([0, 7]), torch.randn(3, 2)
    with pytest.raises(RuntimeError, match=r"col holds index 7 out of range \[0, 3\)"):
        kernels.spmm(rowptr, col, None, x, None, 1.0, 0.0)
    with pytest.raises(RuntimeError, match="rowptr must have dtype int64"):
        kernels.spmm(rowptr.int(), col, None, x, None, 1.0, 0.0)
    with pytest.raises(RuntimeError, match=r"value must have shape \(E=2,\)"):
        kernels.spmm(rowptr, torch.tensor([0, 1]), torch.ones(3), x, None, 1.0, 0.0)
    with pytest.raises(RuntimeError, match="rowptr must start at 0 and end at E=2"):
        kernels.spmm(torch.tensor([0, 1, 3]), torch.tensor([0, 1]), None, x, None, 1.0, 0.0)
    with pytest.raises(RuntimeError, match=r"base must have shape"):
        kernels.spmm(rowptr, torch.tensor([0, 1]), None, x, torch.randn(3, 2), 1.0, 0.0)
    with pytest.raises(RuntimeError, match="q must have R=2 rows"):
        kernels.edge_attention(rowptr, torch.tensor([0, 1]), None, x, x, x, 1.0)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        kernels.spmm(rowptr, torch.tensor([0, 1]), None, x.half(), None, 1.0, 0.0)
    with pytest.raises(RuntimeError, match="x must have 3 dims"):
        kernels.chain_filter(x, [1.0], 0, None, 0.0)
    with pytest.raises(RuntimeError, match="taps must hold at least one value"):
        kernels.chain_filter(x.view(1, 3, 2), [], 0, None, 0.0)


def test_pagerank_on_a_nilpotent_graph_runs_the_finite_series():
    graph = Graph.from_edge_index(torch.tensor([[0, 1], [1, 2]]), 3, dtype=torch.float64)  # a DAG: ρ = 0
    expected = 0.15 * torch.linalg.inv(torch.eye(3, dtype=torch.float64) - 0.85 * graph.dense().t())
    torch.testing.assert_close(F.pagerank(graph, torch.eye(3, dtype=torch.float64), 0.15), expected)


@pytest.mark.parametrize("F_", [5, 16, 37, 64, 70, 130])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_spmm_cpu_isa_copies(isa, F_, dtype):
    """Both copies of the CPU SpMM row loop (baseline: 16-feature blocks; AVX2: blocks of 8 vector
    registers, then 16-feature blocks, then a tail) against the reference, with values and a base,
    and pagerank_iterate on the same copy bitwise equal to its spmm steps."""
    g = torch.Generator().manual_seed(F_)
    N, E = 23, 90
    edge_index = torch.randint(0, N, (2, E), generator=g)
    graph = Graph.from_edge_index(edge_index, N, directed=True, normalization="row")
    x = torch.randn(N, F_, generator=g, dtype=dtype)
    base = torch.randn(N, F_, generator=g, dtype=dtype)
    value = graph.value.to(dtype)
    out = torch.ops.rpn2kernels.spmm(graph.rowptr, graph.col, value, x, base, 0.7, -1.5)
    expected = reference.spmm(graph.rowptr, graph.col, value, x, base, 0.7, -1.5)
    torch.testing.assert_close(out, expected, **scaled_tolerance(dtype, expected))
    z = x * 0.2
    for _ in range(3):
        z = torch.ops.rpn2kernels.spmm(graph.rowptr, graph.col, value, z, x, 0.8, 0.2)
    assert torch.equal(torch.ops.rpn2kernels.pagerank_iterate(graph.rowptr, graph.col, value, x, 0.2, 3), z)
