"""nn modules of the expansion family: values, parameters, torch.compile(fullgraph=True)."""
import pytest
import torch

import rpn2kernels
from rpn2kernels.nn import Expansion, ExpansionLinear
from rpn2kernels.reference import expansion as reference
from rpn2kernels.testing import backend_device_params, scaled_tolerance

COMPILE_CASES = [("chebyshev", 3, {}), ("jacobi", 2, {"alpha": 0.5, "beta": 1.0}), ("bspline", 2, {"intervals": 3}),
                 ("gaussian_rbf", 3, {"epsilon": 2.0}), ("taylor", 2, {})]


@pytest.mark.parametrize("backend_device", backend_device_params())
@pytest.mark.parametrize("case", COMPILE_CASES, ids=[c[0] for c in COMPILE_CASES])
def test_expansion_linear_compiles_fullgraph_and_matches_eager(case, backend_device):
    backend, device = backend_device
    basis, degree, kw = case
    torch._dynamo.reset()
    layer = ExpansionLinear(5, 7, basis, degree, backend=backend, device=device, **kw)
    x = torch.rand(9, 5, device=device) * 2 - 1
    eager_x = x.clone().requires_grad_()
    y_eager = layer(eager_x)
    y_eager.square().sum().backward()
    eager_grads = [eager_x.grad] + [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()

    compiled = torch.compile(layer, fullgraph=True, backend="inductor")
    comp_x = x.clone().requires_grad_()
    y_comp = compiled(comp_x)
    y_comp.square().sum().backward()
    comp_grads = [comp_x.grad] + [p.grad for p in layer.parameters()]
    torch.testing.assert_close(y_comp, y_eager, **scaled_tolerance(torch.float32, y_eager))
    for ours, ref in zip(comp_grads, eager_grads):
        torch.testing.assert_close(ours, ref, **scaled_tolerance(torch.float32, ref))


def test_expansion_linear_matches_reference_and_has_linear_like_parameters():
    layer = ExpansionLinear(4, 3, "legendre", 3, dtype=torch.float64)
    assert layer.weight.shape == (3, 12) and layer.bias.shape == (3,)
    assert layer.weight.abs().max() <= 1 / 12 ** 0.5
    x = torch.randn(2, 6, 4, dtype=torch.float64)  # leading batch dims
    y = layer(x)
    y_ref = reference.expand_linear(x.reshape(-1, 4), layer.weight, layer.bias, "legendre", 3, [])
    torch.testing.assert_close(y.reshape(-1, 3), y_ref)
    assert "basis='legendre'" in repr(layer) and "out_features=3" in repr(layer)
    state = layer.state_dict()
    clone = ExpansionLinear(4, 3, "legendre", 3, dtype=torch.float64)
    clone.load_state_dict(state)
    torch.testing.assert_close(clone(x), y)


def test_expansion_linear_without_bias_and_with_input_norm():
    layer = ExpansionLinear(3, 2, "chebyshev", 2, bias=False, input_norm="tanh", dtype=torch.float64)
    assert layer.bias is None
    x = torch.randn(5, 3, dtype=torch.float64) * 4
    torch.testing.assert_close(layer(x), reference.expand_linear(torch.tanh(x), layer.weight, None, "chebyshev", 2, []))


def test_expansion_module_materialises_kappa():
    module = Expansion(3, "bspline", 3, lo=-2.0, hi=2.0, intervals=4)
    assert module.out_features == 3 * 7
    x = torch.randn(6, 3)
    torch.testing.assert_close(module(x), reference.expand(x, "bspline", 3, [-2.0, 2.0, 4.0]))


def test_module_argument_errors():
    with pytest.raises(ValueError, match="in_features must be a non-negative int, got -1"):
        ExpansionLinear(-1, 3)
    with pytest.raises(ValueError, match="out_features must be a non-negative int, got 2.5"):
        ExpansionLinear(3, 2.5)
    with pytest.raises(ValueError, match="basis must be one of"):
        Expansion(3, "fourier")
    with pytest.raises(rpn2kernels.BackendUnavailable, match="backend 'cuda' .* refused: the cuda backend needs CUDA tensors"):
        ExpansionLinear(3, 2, backend="cuda")(torch.randn(2, 3))
