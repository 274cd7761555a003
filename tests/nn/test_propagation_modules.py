"""nn modules of the propagation family: values against dense oracles, torch.compile(fullgraph=True)
forward+backward against eager, state_dict and device moves of the held graph."""
import pytest
import torch

from rpn2kernels import Graph
from rpn2kernels.nn import ChainPropagation, EdgeAttention, GraphConv, GraphPropagation
from rpn2kernels.testing import compiled_backend_params


def make_graph(n=14, e=40, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    kw.setdefault("normalization", "column")
    kw.setdefault("self_loops", True)
    return Graph.from_edge_index(torch.randint(0, n, (2, e), generator=g), n, directed=False, **kw)


def module_cases(device, backend):
    graph = make_graph().to(device)
    return {
        "propagation-acc": (GraphPropagation(graph, 3, True, backend=backend), (14, 6)),
        "pagerank": (GraphPropagation(graph, propagation="pagerank", c=0.2, tol=1e-5, backend=backend), (14, 6)),
        "graphconv-narrow": (GraphConv(6, 3, graph, hops=2, backend=backend, device=device), (14, 6)),
        "graphconv-wide": (GraphConv(3, 6, graph, backend=backend, device=device), (14, 3)),
        "attention-full": (EdgeAttention(5, graph, backend=backend, device=device), (14, 5)),
        "attention-lowrank": (EdgeAttention(5, graph, rank=2, scale=0.5, backend=backend, device=device), (14, 5)),
        "chain-bi-acc": (ChainPropagation("multihop", 2, bidirectional=True, accumulative=True, backend=backend),
                         (3, 9, 4)),
        "chain-exp": (ChainPropagation("exponential_approx", backend=backend), (3, 9, 4)),
        "chain-inverse": (ChainPropagation("inverse_approx", backend=backend), (3, 9, 4)),
    }


CASE_NAMES = list(module_cases("cpu", None))


@pytest.mark.parametrize("backend_device", compiled_backend_params())
@pytest.mark.parametrize("name", CASE_NAMES)
def test_module_compiles_fullgraph_and_matches_eager(backend_device, name):
    backend, device = backend_device
    torch._dynamo.reset()
    module, shape = module_cases(device, backend)[name]
    x = torch.randn(*shape, device=device)
    eager_x = x.clone().requires_grad_()
    out = module(eager_x)
    out.square().sum().backward()
    eager_grads = [eager_x.grad] + [p.grad.clone() for p in module.parameters()]
    module.zero_grad()
    compiled = torch.compile(module, fullgraph=True, backend="inductor")
    comp_x = x.clone().requires_grad_()
    comp_out = compiled(comp_x)
    comp_out.square().sum().backward()
    torch.testing.assert_close(comp_out, out)
    for got, want in zip([comp_x.grad] + [p.grad for p in module.parameters()], eager_grads):
        torch.testing.assert_close(got, want)


def test_graphconv_equals_dense_gcn_in_both_orders():
    graph = make_graph(dtype=torch.float64)
    A = graph.dense()
    for n_in, n_out in ((6, 3), (3, 6)):
        layer = GraphConv(n_in, n_out, graph, hops=2, dtype=torch.float64)
        x = torch.randn(14, n_in, dtype=torch.float64)
        expected = torch.linalg.matrix_power(A.t(), 2) @ x @ layer.weight.t() + layer.bias
        torch.testing.assert_close(layer(x), expected)


def test_edge_attention_module_equals_dense_gat():
    graph = make_graph(dtype=torch.float64)
    A = graph.dense()
    layer = EdgeAttention(5, graph, dtype=torch.float64)
    x = torch.randn(14, 5, dtype=torch.float64)
    E = A * (x @ layer.weight @ x.t())  # E[u, v] = Â[u, v]·x_uᵀ W x_v
    mask = E != 0
    alpha = torch.softmax(torch.where(mask, E, torch.full_like(E, -1e300)), dim=0) * mask
    torch.testing.assert_close(layer(x), alpha.t() @ x)
    low = EdgeAttention(5, graph, rank=2, dtype=torch.float64)
    E = A * (x @ low.u @ low.v @ x.t())
    mask = E != 0
    alpha = torch.softmax(torch.where(mask, E, torch.full_like(E, -1e300)), dim=0) * mask
    torch.testing.assert_close(low(x), alpha.t() @ x)


def test_module_state_dict_round_trip_and_device_move():
    layer = GraphConv(4, 2, make_graph())
    clone = GraphConv(4, 2, make_graph(n=5, e=3, seed=9))
    clone.load_state_dict(layer.state_dict())
    x = torch.randn(14, 4)
    torch.testing.assert_close(clone(x), layer(x))
    moved = layer.to(torch.float64)
    assert moved.propagate.graph.value.dtype == torch.float64
    assert moved(x.double()).dtype == torch.float64


def test_module_bad_arguments():
    graph = make_graph()
    with pytest.raises(TypeError, match="rpn2kernels.Graph"):
        GraphPropagation(torch.eye(3))
    with pytest.raises(ValueError, match="propagation must be one of"):
        GraphPropagation(graph, propagation="heat")
    with pytest.raises(ValueError, match="rank must be None or an int >= 1"):
        EdgeAttention(4, graph, rank=0)
    with pytest.raises(ValueError, match="variant must be one of"):
        ChainPropagation("linear")
    with pytest.raises(ValueError, match="in_features must be a non-negative int"):
        GraphConv(-1, 2, graph)
