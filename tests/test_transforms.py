"""torch.autocast, forward-mode AD and vmap over every public function, on every backend.

Autocast: each function applies its policy (rpn2kernels/_autocast.py) — on CPU, low-precision inputs
run in float32; on CUDA, the GEMM-like ops run in the autocast dtype and the others in the widest
input dtype — checked against the same call without autocast. Forward-mode AD: the kernel backends
refuse dual inputs (a custom op would pass the tangent as zero); the reference gives the tangent.
vmap: PyTorch's per-sample fallback, checked against a loop.
"""
import pytest
import torch

from rpn2kernels import Graph
from rpn2kernels import functional as F
from rpn2kernels.nn import ExpansionLinear, GraphConv
from rpn2kernels.testing import backend_device_params


def _graph(device):
    g = torch.Generator().manual_seed(1)
    return Graph.from_edge_index(torch.randint(0, 11, (2, 30), generator=g), 11, self_loops=True,
                                 normalization="column").to(device)


def calls(graph):
    """name -> (function of (tensors, backend), input shapes); the first input is the features."""
    return {
        "expand": (lambda t, be: F.expand(t[0], "chebyshev", 3, backend=be), [(11, 4)]),
        "expand_linear": (lambda t, be: F.expand_linear(t[0], t[1], t[2], "legendre", 2, backend=be),
                          [(11, 4), (3, 8), (3,)]),
        "narrow_linear": (lambda t, be: F.narrow_linear(t[0], t[1], t[2], backend=be), [(11, 4), (3, 4), (3,)]),
        "propagate": (lambda t, be: F.propagate(graph, t[0], 2, True, backend=be), [(11, 4)]),
        "pagerank": (lambda t, be: F.pagerank(graph, t[0], 0.3, steps=3, backend=be), [(11, 4)]),
        "edge_attention": (lambda t, be: F.edge_attention(graph, t[0], t[1], t[2], 0.5, backend=be),
                           [(11, 4), (11, 4), (11, 2)]),
        "chain": (lambda t, be: F.chain_propagate(t[0], "multihop", 2, bidirectional=True, backend=be), [(2, 7, 4)]),
    }


CPU_BACKENDS = [p for p in backend_device_params() if p.values[0][1] == "cpu"]

def _call(name, backend, device):
    """(function, input shapes) of ``name`` on this device; skips the one op without a Triton kernel."""
    if name == "narrow_linear" and backend == "triton":
        pytest.skip("narrow_linear has no Triton kernel; backend='triton' is refused (docs/backends.md)")
    return calls(_graph(device))[name]


@pytest.mark.parametrize("backend_device", CPU_BACKENDS)
@pytest.mark.parametrize("name", list(calls(None)))
@pytest.mark.parametrize("features_dtype", [torch.bfloat16, torch.float32])
def test_cpu_autocast_runs_in_float32(backend_device, name, features_dtype):
    """A bf16 activation (what an autocast nn.Linear hands over) beside fp32 parameters: the op runs
    in float32 on every backend, gradients reach the bf16 leaf in bf16; fp32 inputs are untouched
    (the reference backend's own F.linear does not drop to bf16)."""
    backend, device = backend_device
    fn, shapes = _call(name, backend, device)
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(*s, generator=g).to(device) for s in shapes]
    leaves = [inputs[0].to(features_dtype).requires_grad_()] + [t.clone().requires_grad_() for t in inputs[1:]]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fn(leaves, backend)
    assert out.dtype == torch.float32
    grad = torch.randn(out.shape, generator=g).to(device)
    out.backward(grad)
    upcast = [leaves[0].detach().float().requires_grad_()] + [t.detach().clone().requires_grad_() for t in inputs[1:]]
    want = fn(upcast, backend)
    want.backward(grad)
    torch.testing.assert_close(out, want)
    assert leaves[0].grad.dtype == features_dtype
    torch.testing.assert_close(leaves[0].grad, upcast[0].grad.to(features_dtype))
    for got, exp in zip(leaves[1:], upcast[1:]):
        torch.testing.assert_close(got.grad, exp.grad)


def test_modules_compile_fullgraph_under_cpu_autocast():
    torch._dynamo.reset()
    graph = _graph("cpu")
    model = torch.nn.Sequential(torch.nn.Linear(5, 6), GraphConv(6, 3, graph), torch.nn.Tanh(),
                                ExpansionLinear(3, 2, "chebyshev", 3))
    x = torch.randn(11, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        eager = model(x)
        compiled = torch.compile(model, fullgraph=True)(x)
    assert eager.dtype == compiled.dtype == torch.float32
    torch.testing.assert_close(compiled, eager)


def test_policy_leaves_inputs_alone_without_autocast():
    x = torch.randn(11, 4, dtype=torch.bfloat16)
    with pytest.raises(Exception, match=r"supports dtypes \(float32, float64\), got bfloat16"):
        F.propagate(_graph("cpu"), x)  # outside autocast a bf16 CPU tensor is still refused, not cast


CUDA_BACKENDS = [p for p in backend_device_params() if p.values[0][1] == "cuda"]


@pytest.mark.parametrize("backend_device", CUDA_BACKENDS)
@pytest.mark.parametrize("name", list(calls(None)))
def test_cuda_autocast_gemms_in_the_autocast_dtype_others_promote(backend_device, name):
    backend, device = backend_device
    fn, shapes = _call(name, backend, device)
    inputs = [torch.randn(*s, device=device) for s in shapes]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = fn(inputs, backend)
        low = fn([inputs[0].bfloat16()] + inputs[1:], backend)
    gemm = name in ("expand_linear", "narrow_linear")
    assert out.dtype == (torch.bfloat16 if gemm else torch.float32)
    assert low.dtype == (torch.bfloat16 if gemm or len(inputs) == 1 else torch.float32)
    want = fn(inputs, backend)
    torch.testing.assert_close(out.float(), want, rtol=3e-2, atol=3e-2)


LINEAR = ("narrow_linear", "propagate", "pagerank", "chain")  # forward AD through the op itself


@pytest.mark.parametrize("backend_device", CPU_BACKENDS)
@pytest.mark.parametrize("name", list(calls(None)))
def test_forward_mode_ad(backend_device, name):
    """The ops linear in their inputs give the exact tangent on every backend (the op on the primal
    and on the tangent; narrow_linear's bilinear ẋ·Wᵀ + x·Ẇᵀ + ḃ), checked against central finite
    differences; the others refuse dual inputs on the kernel backends rather than pass a zero tangent."""
    backend, device = backend_device
    fn, shapes = _call(name, backend, device)
    g = torch.Generator().manual_seed(2)
    inputs = [torch.randn(*s, generator=g, dtype=torch.float64).to(device) for s in shapes]
    tangents = [torch.randn(t.shape, generator=g, dtype=torch.float64).to(device) for t in inputs]

    def call(*tensors):
        return fn(list(tensors), backend)

    if backend == "reference" or name in LINEAR:
        _, got = torch.func.jvp(call, tuple(inputs), tuple(tangents))
        eps = 1e-6
        plus = call(*[t + eps * d for t, d in zip(inputs, tangents)])
        minus = call(*[t - eps * d for t, d in zip(inputs, tangents)])
        torch.testing.assert_close(got, (plus - minus) / (2 * eps), rtol=1e-5, atol=1e-6)
        import torch.autograd.forward_ad as forward_ad

        with forward_ad.dual_level():
            dual = call(*[forward_ad.make_dual(t, d) for t, d in zip(inputs, tangents)])
            torch.testing.assert_close(forward_ad.unpack_dual(dual).tangent, got)
        return
    with pytest.raises(NotImplementedError, match=r"forward-mode AD \(torch.func.jvp, torch.autograd.forward_ad\) "
                                                  rf"is not implemented on backend '{backend}'"):
        torch.func.jvp(call, tuple(inputs), tuple(tangents))
    import torch.autograd.forward_ad as forward_ad

    with forward_ad.dual_level(), pytest.raises(NotImplementedError, match="forward-mode AD"):
        call(forward_ad.make_dual(inputs[0], tangents[0]), *inputs[1:])


@pytest.mark.parametrize("backend_device", [p for p in CPU_BACKENDS if p.values[0][0] != "reference"])
@pytest.mark.parametrize("name", list(calls(None)))
def test_a_dual_gradient_reaching_a_kernel_backward_is_refused(backend_device, name):
    """torch.autograd.grad with dual grad_outputs (forward-over-reverse) would hand the registered
    backwards a tangent that their kernel ops drop: refused too."""
    backend, device = backend_device
    fn, shapes = _call(name, backend, device)
    inputs = [torch.randn(*s, dtype=torch.float64).to(device).requires_grad_() for s in shapes]
    out = fn(inputs, backend)
    import torch.autograd.forward_ad as forward_ad

    with forward_ad.dual_level(), pytest.raises(NotImplementedError, match="forward-mode AD"):
        torch.autograd.grad(out, inputs[0], forward_ad.make_dual(torch.ones_like(out), torch.ones_like(out)))


@pytest.mark.parametrize("backend_device", CPU_BACKENDS)
@pytest.mark.parametrize("name", ["propagate", "pagerank", "chain", "expand"])
def test_vmap_matches_a_loop(backend_device, name):
    backend, device = backend_device
    fn, shapes = _call(name, backend, device)
    batch = torch.randn(3, *shapes[0]).to(device)
    got = torch.func.vmap(lambda t: fn([t], backend))(batch)
    torch.testing.assert_close(got, torch.stack([fn([t], backend) for t in batch]))


@pytest.mark.parametrize("backend_device", CPU_BACKENDS)
def test_functorch_grad_raises_on_kernel_backends_and_works_on_the_reference(backend_device):
    """torch.func.grad over a custom op's generated autograd is refused by PyTorch (loudly, which is
    what matters: no silent zero gradient); the reference matches torch.autograd.grad."""
    backend, device = backend_device
    fn, shapes = _call("propagate", backend, device)
    x = torch.randn(*shapes[0], dtype=torch.float64).to(device)

    def loss(t):
        return fn([t], backend).sin().sum()

    if backend != "reference":
        with pytest.raises(RuntimeError, match="functorch transforms"):
            torch.func.grad(loss)(x)
        return
    leaf = x.clone().requires_grad_()
    (want,) = torch.autograd.grad(loss(leaf), leaf)
    torch.testing.assert_close(torch.func.grad(loss)(x), want)
