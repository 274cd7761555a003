"""The expansion family on every backend against the pure-PyTorch reference and closed forms."""
import math

import pytest
import torch

import rpn2kernels
from rpn2kernels import functional as F
from rpn2kernels.basis import basis_arguments, expansion_width
from rpn2kernels.reference import expansion as reference
from rpn2kernels.testing import backend_device_params, compiled_backend_params, scaled_tolerance

# (basis, degree, keywords): every basis of the family, with non-default parameters where it has any
BASIS_CASES = [
    ("chebyshev", 3, {}),
    ("legendre", 4, {}),
    ("jacobi", 3, {"alpha": 0.5, "beta": 1.5}),
    ("gegenbauer", 3, {"alpha": 0.7}),
    ("hermite", 4, {}),
    ("laguerre", 3, {"alpha": 1.0}),
    ("bessel", 3, {}),
    ("reverse_bessel", 3, {}),
    ("fibonacci", 4, {}),
    ("lucas", 3, {}),
    ("gaussian_rbf", 4, {"lo": -1.0, "hi": 1.0, "epsilon": 1.5}),
    ("inverse_quadratic_rbf", 3, {"lo": -0.5, "hi": 1.0, "epsilon": 2.0}),
    ("bspline", 3, {"lo": -1.0, "hi": 1.0, "intervals": 4}),
    ("bspline", 1, {"lo": -0.8, "hi": 1.2, "intervals": 3}),
    ("taylor", 1, {}),
    ("taylor", 2, {}),
    ("taylor", 3, {}),
]
CASE_IDS = [f"{b}{d}" + ("-" + "-".join(f"{k}{v}" for k, v in kw.items()) if kw else "") for b, d, kw in BASIS_CASES]

# (B, m, n): not multiples of any block size, size-1 dims
SHAPES = [(1, 1, 1), (5, 3, 7), (19, 6, 17)]


def make_inputs(B, m, n, basis, degree, kw, dtype, device, bias=True, spread=1.2):
    _, _, params = basis_arguments(basis, degree, **kw)
    D = expansion_width(basis, degree, params, m)
    x = (torch.rand(B, m, dtype=dtype) * 2 - 1) * spread  # also outside [-1, 1] and the spline range
    w = torch.randn(n, D, dtype=dtype) / math.sqrt(max(D, 1))
    b = torch.randn(n, dtype=dtype) if bias else None
    return x.to(device), w.to(device), (b.to(device) if b is not None else None), params


def reference_grads(x, w, b, basis, degree, params, grad_out):
    xs = x.detach().double().requires_grad_()
    ws = w.detach().double().requires_grad_()
    bs = b.detach().double().requires_grad_() if b is not None else None
    y = reference.expand_linear(xs, ws, bs, basis, degree, params)
    y.backward(grad_out.double())
    return y, xs.grad, ws.grad, (bs.grad if bs is not None else None)


def run_ours(x, w, b, basis, degree, kw, backend, grad_out):
    xs = x.detach().clone().requires_grad_()
    ws = w.detach().clone().requires_grad_()
    bs = b.detach().clone().requires_grad_() if b is not None else None
    y = F.expand_linear(xs, ws, bs, basis, degree, backend=backend, **kw)
    y.backward(grad_out)
    return y, xs.grad, ws.grad, (bs.grad if bs is not None else None)


def assert_close_to(ours, ref, dtype):
    torch.testing.assert_close(ours.double(), ref.to(ours.device).double(), **scaled_tolerance(dtype, ref))


@pytest.mark.parametrize("backend_device", backend_device_params())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("case", BASIS_CASES, ids=CASE_IDS)
def test_expand_linear_forward_and_gradients_match_reference(case, shape, dtype, backend_device):
    backend, device = backend_device
    basis, degree, kw = case
    B, m, n = shape
    x, w, b, params = make_inputs(B, m, n, basis, degree, kw, dtype, device)
    grad_out = torch.randn(B, n, dtype=dtype, device=device)
    y_ref, dx_ref, dw_ref, db_ref = reference_grads(x.cpu(), w.cpu(), b.cpu(), basis, degree, params, grad_out.cpu())
    y, dx, dw, db = run_ours(x, w, b, basis, degree, kw, backend, grad_out)
    assert y.dtype == dtype and y.device == x.device and y.shape == (B, n)
    assert_close_to(y, y_ref, dtype)
    assert_close_to(dx, dx_ref, dtype)
    assert_close_to(dw, dw_ref, dtype)
    assert_close_to(db, db_ref, dtype)


@pytest.mark.parametrize("backend_device", backend_device_params())
@pytest.mark.parametrize("case", BASIS_CASES, ids=CASE_IDS)
def test_expand_materialised_and_its_backward_match_reference(case, backend_device):
    backend, device = backend_device
    basis, degree, kw = case
    x, _, _, params = make_inputs(7, 5, 1, basis, degree, kw, torch.float64, device)
    xs = x.clone().requires_grad_()
    k = F.expand(xs, basis, degree, backend=backend, **kw)
    g = torch.randn_like(k)
    k.backward(g)
    xr = x.cpu().clone().requires_grad_()
    k_ref = reference.expand(xr, basis, degree, params)
    k_ref.backward(g.cpu())
    assert_close_to(k, k_ref, torch.float64)
    assert_close_to(xs.grad, xr.grad, torch.float64)


def _check_taylor2_at_fused_width(n, dtype, backend, device):
    # m >= 64 takes the bilinear path of the CPU kernel (csrc/cpu/expansion.cpp)
    x, w, b, params = make_inputs(6, 67, n, "taylor", 2, {}, dtype, device)
    grad_out = torch.randn(6, n, dtype=dtype, device=device)
    y_ref, dx_ref, dw_ref, _ = reference_grads(x.cpu(), w.cpu(), b.cpu(), "taylor", 2, params, grad_out.cpu())
    y, dx, dw, _ = run_ours(x, w, b, "taylor", 2, {}, backend, grad_out)
    for ours, ref in ((y, y_ref), (dx, dx_ref), (dw, dw_ref)):
        assert_close_to(ours, ref, dtype)
    return (y, dx, dw), lambda: run_ours(x, w, b, "taylor", 2, {}, backend, grad_out)[:3]


@pytest.mark.parametrize("backend_device", backend_device_params())
def test_taylor2_fused_identity_at_width_above_the_fused_threshold(backend_device):
    _check_taylor2_at_fused_width(5, torch.float64, *backend_device)


@pytest.mark.parametrize("backend_device", [p for p in compiled_backend_params() if p.values[0][0] != "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("n", [1, 37], ids=lambda n: f"n{n}")
def test_taylor2_fused_identity_output_chunks_are_exact_and_deterministic(n, dtype, backend_device):
    # the CPU kernel runs the outputs in 16 fixed chunks; n = 37 leaves a ragged last chunk
    first, rerun = _check_taylor2_at_fused_width(n, dtype, *backend_device)
    for a, b in zip(first, rerun()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend_device", backend_device_params())
@pytest.mark.parametrize("case", [BASIS_CASES[0], BASIS_CASES[12], BASIS_CASES[15]], ids=["chebyshev3", "bspline3", "taylor2"])
def test_non_contiguous_and_batched_inputs(case, backend_device):
    backend, device = backend_device
    basis, degree, kw = case
    _, _, params = basis_arguments(basis, degree, **kw)
    base = torch.rand(4, 11, 3, dtype=torch.float64, device=device) * 2 - 1
    x = base.transpose(1, 2)  # (4, 3, 11): non-contiguous, leading batch dims
    D = expansion_width(basis, degree, params, 11)
    w = torch.randn(6, D, dtype=torch.float64, device=device).t().contiguous().t()  # column-major weight
    y = F.expand_linear(x, w, None, basis, degree, backend=backend, **kw)
    y_ref = reference.expand_linear(x.reshape(-1, 11).cpu(), w.cpu(), None, basis, degree, params)
    assert y.shape == (4, 3, 6)
    assert_close_to(y.reshape(-1, 6), y_ref, torch.float64)


@pytest.mark.parametrize("backend_device", backend_device_params())
@pytest.mark.parametrize("shape", [(0, 3, 4), (3, 0, 4), (3, 2, 0)], ids=["B0", "m0", "n0"])
def test_empty_dimensions(shape, backend_device):
    backend, device = backend_device
    B, m, n = shape
    x, w, b, params = make_inputs(B, m, n, "chebyshev", 2, {}, torch.float32, device)
    xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
    y = F.expand_linear(xs, ws, b, "chebyshev", 2, backend=backend)
    assert y.shape == (B, n)
    torch.testing.assert_close(y.cpu(), b.cpu().expand(B, n).contiguous())
    y.sum().backward()
    assert xs.grad.shape == x.shape and ws.grad.shape == w.shape
    assert torch.count_nonzero(ws.grad) == 0


@pytest.mark.parametrize("backend_device", compiled_backend_params())
@pytest.mark.parametrize("case", BASIS_CASES, ids=CASE_IDS)
def test_gradcheck_fp64(case, backend_device):
    backend, device = backend_device
    basis, degree, kw = case
    x, w, b, _ = make_inputs(3, 2, 2, basis, degree, kw, torch.float64, device, spread=0.9)
    inputs = tuple(t.clone().requires_grad_() for t in (x, w, b))
    assert torch.autograd.gradcheck(
        lambda x, w, b: F.expand_linear(x, w, b, basis, degree, backend=backend, **kw), inputs)
    assert torch.autograd.gradcheck(lambda x: F.expand(x, basis, degree, backend=backend, **kw), (inputs[0],))


@pytest.mark.parametrize("backend_device", compiled_backend_params())
def test_double_backward_is_refused_on_kernel_backends(backend_device):
    """The kernels have no κ'' (dx's own derivative): create_graph=True must raise, never return a
    gradient that silently ignores its inputs; the reference backend supports it."""
    backend, device = backend_device
    x, w, b, _ = make_inputs(3, 2, 2, "chebyshev", 3, {}, torch.float64, device)
    inputs = tuple(t.clone().requires_grad_() for t in (x, w, b))
    for fn in (lambda: F.expand_linear(*inputs, "chebyshev", 3, backend=backend),
               lambda: F.expand(inputs[0], "chebyshev", 3, backend=backend)):
        with pytest.raises(NotImplementedError, match=rf"double backward \(create_graph=True\) is not implemented "
                                                      rf"on backend '{backend if backend == 'triton' else device}'"):
            torch.autograd.grad(fn().square().sum(), inputs[0], create_graph=True)
        fn().square().sum().backward()  # a plain backward is unaffected
    assert torch.autograd.gradgradcheck(
        lambda x, w, b: F.expand_linear(x, w, b, "chebyshev", 3, backend="reference"),
        tuple(t.detach().cpu().requires_grad_() for t in inputs))


def _op_names(backend):
    prefix = "triton_" if backend == "triton" else ""
    ops = torch.ops.rpn2kernels
    return getattr(ops, f"{prefix}expand_linear"), getattr(ops, f"{prefix}expand")


@pytest.mark.parametrize("backend_device", compiled_backend_params())
@pytest.mark.parametrize("case", [BASIS_CASES[i] for i in (0, 2, 10, 12, 15)],
                         ids=[CASE_IDS[i] for i in (0, 2, 10, 12, 15)])
def test_opcheck(case, backend_device):
    backend, device = backend_device
    basis, degree, kw = case
    x, w, b, params = make_inputs(5, 3, 4, basis, degree, kw, torch.float32, device)
    linear, expand = _op_names(backend)
    for bias in (b, None):
        torch.library.opcheck(linear, (x, w.requires_grad_(), bias, basis, degree, params))
    torch.library.opcheck(expand, (x.clone().requires_grad_(), basis, degree, params))


# ----------------------------------------------------------------------------------------------
# Closed forms: independent oracles for the recurrences and their derivatives (functions.md §2.5)

def chebyshev_u(k, x):
    u_prev, u = torch.ones_like(x), 2 * x
    if k == 0:
        return u_prev
    for _ in range(k - 1):
        u_prev, u = u, 2 * x * u - u_prev
    return u


CLOSED_FORM_DERIVATIVES = {
    # basis: (degree, kw, derivative of P_k as a function of (k, x))
    "chebyshev": (4, {}, lambda k, x: k * chebyshev_u(k - 1, x)),
    "hermite": (4, {}, lambda k, x: k * reference._polynomial_terms(x, "hermite", k, [])[k - 1]),
    "lucas": (4, {}, lambda k, x: k * reference._polynomial_terms(x, "fibonacci", k, [])[k]),
    "gegenbauer": (3, {"alpha": 0.7},
                   lambda k, x: 2 * 0.7 * reference._polynomial_terms(x, "gegenbauer", k - 1, [1.7])[k - 1]),
    "jacobi": (3, {"alpha": 0.5, "beta": 1.5},
               lambda k, x: (k + 3.0) / 2 * reference._polynomial_terms(x, "jacobi", k - 1, [1.5, 2.5])[k - 1]),
    "laguerre": (3, {"alpha": 1.0},
                 lambda k, x: -reference._polynomial_terms(x, "laguerre", k - 1, [2.0])[k - 1]),
}


@pytest.mark.parametrize("backend_device", backend_device_params())
@pytest.mark.parametrize("basis", sorted(CLOSED_FORM_DERIVATIVES))
def test_derivative_recurrence_matches_closed_form(basis, backend_device):
    backend, device = backend_device
    degree, kw, derivative = CLOSED_FORM_DERIVATIVES[basis]
    x = torch.linspace(-1.3, 1.3, 11, dtype=torch.float64).reshape(11, 1)
    for k in range(1, degree + 1):
        # the gradient of feature column k-1 alone is dP_k/dx
        xs = x.to(device).clone().requires_grad_()
        F.expand(xs, basis, degree, backend=backend, **kw)[:, k - 1].sum().backward()
        torch.testing.assert_close(xs.grad.cpu(), derivative(k, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend_device", backend_device_params())
def test_laguerre_is_the_correct_family_not_tinybigs(backend_device):
    backend, device = backend_device
    x = torch.linspace(-2, 2, 9, dtype=torch.float64).reshape(9, 1)
    k = F.expand(x.to(device), "laguerre", 2, backend=backend, alpha=1.0).cpu()
    torch.testing.assert_close(k[:, 0:1], 2 - x)
    torch.testing.assert_close(k[:, 1:2], 3 - 3 * x + x * x / 2)


@pytest.mark.parametrize("backend_device", backend_device_params())
def test_bspline_partition_of_unity_and_support(backend_device):
    backend, device = backend_device
    x = torch.linspace(-1, 0.999, 37, dtype=torch.float64).reshape(37, 1)
    k = F.expand(x.to(device), "bspline", 3, backend=backend, lo=-1.0, hi=1.0, intervals=5).cpu()
    torch.testing.assert_close(k.sum(1), torch.ones(37, dtype=torch.float64))
    outside = torch.tensor([[-1.0 - 3 * 0.4 - 1e-9], [1.0 + 3 * 0.4]], dtype=torch.float64)
    assert torch.count_nonzero(F.expand(outside.to(device), "bspline", 3, backend=backend)) == 0


@pytest.mark.parametrize("backend_device", backend_device_params())
@pytest.mark.parametrize("degree", [1, 3])
def test_bspline_non_finite_input_gives_nan_features_and_gradient(degree, backend_device):
    # NaN and ±inf are not "outside the support": the reference's Cox–de Boor gives NaN, and so
    # must every kernel (a silent 0 would hide the bad input).
    backend, device = backend_device
    x = torch.tensor([[float("nan"), 0.3, float("inf")], [-float("inf"), -0.7, 5.0]], dtype=torch.float64)
    xs = x.to(device).clone().requires_grad_()
    k = F.expand(xs, "bspline", degree, backend=backend, intervals=3)
    g = torch.randn(k.shape, dtype=torch.float64)
    k.backward(g.to(device))
    xr = x.detach().clone().requires_grad_()
    k_ref = reference.expand(xr, "bspline", degree, [-1.0, 1.0, 3.0])
    k_ref.backward(g)
    assert k_ref.isnan().any()  # the oracle itself propagates NaN
    torch.testing.assert_close(k.cpu(), k_ref, equal_nan=True)
    # the reference's gradient at a non-finite x is an autograd artefact (0 through degree 1's
    # constant masks, NaN above); the kernels' derivative is NaN there at every degree
    finite = x.isfinite()
    torch.testing.assert_close(xs.grad.cpu()[finite], xr.grad[finite])
    if backend != "reference":
        assert xs.grad.cpu()[~finite].isnan().all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_exponential_of_each_isa_across_its_range(isa, dtype):
    # The CPU kernel exponentiates the Gaussian's −ε²(x − μ)² with its own vector exp
    # (csrc/cpu/exp_vector.inc, one copy per ISA): exponents from 0 down past where it flushes to
    # zero (below 2^−125 in float32, 2^−1020 in float64), and non-finite x (NaN stays NaN, ±inf
    # gives e^−inf = 0). Oracle: the reference in float64; the tolerance allows the exponent's own
    # rounding in dtype (|e| ulps) and a few ulps of the exp.
    _, _, params = basis_arguments("gaussian_rbf", 4, lo=-1.0, hi=1.0, epsilon=1.0)
    x = torch.cat([torch.linspace(-1.0, 40.0, 2053, dtype=torch.float64),
                   torch.tensor([float("nan"), float("inf"), -float("inf")], dtype=torch.float64)])
    x = x.reshape(1, -1).to(dtype)
    ours = F.expand(x, "gaussian_rbf", 4, backend="cpu", lo=-1.0, hi=1.0, epsilon=1.0).double()
    ref = reference.expand(x.double(), "gaussian_rbf", 4, params)
    finfo = torch.finfo(dtype)
    exponent = torch.where(ref > 0, ref.log().abs(), torch.zeros_like(ref))
    tol = ref * finfo.eps * (4 + 2 * exponent) + 4 * finfo.tiny
    nan = ref.isnan()
    assert torch.equal(ours.isnan(), nan)
    assert ((ours - ref).abs()[~nan] <= tol[~nan]).all(), float(((ours - ref).abs() - tol)[~nan].max())
    assert (ours[~nan] == 0).any() and (ours[~nan] > 0).any()  # both the flushed and the normal range


@pytest.mark.parametrize("backend_device", backend_device_params())
def test_input_norm_tanh(backend_device):
    backend, device = backend_device
    x = torch.randn(4, 3, dtype=torch.float64, device=device) * 3
    w = torch.randn(2, 9, dtype=torch.float64, device=device)
    y = F.expand_linear(x, w, None, "chebyshev", 3, backend=backend, input_norm="tanh")
    y_ref = reference.expand_linear(torch.tanh(x.cpu()), w.cpu(), None, "chebyshev", 3, [])
    assert_close_to(y, y_ref, torch.float64)


# ----------------------------------------------------------------------------------------------
# Bad input: every error names the argument and the expected vs actual value

def _inputs():
    return torch.randn(4, 3), torch.randn(2, 6), torch.randn(2)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_bad_inputs_raise_clear_errors(backend):
    x, w, b = _inputs()
    with pytest.raises(ValueError, match=r"weight must have shape \(n, D=6\).*got \(2, 7\)"):
        F.expand_linear(x, torch.randn(2, 7), b, "chebyshev", 2, backend=backend)
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\), got \(3,\)"):
        F.expand_linear(x, w, torch.randn(3), "chebyshev", 2, backend=backend)
    with pytest.raises(TypeError, match=r"x must be a floating-point tensor, got dtype torch.int64"):
        F.expand_linear(torch.ones(4, 3, dtype=torch.long), w, b, backend=backend)
    with pytest.raises(TypeError, match=r"weight must have x's dtype torch.float32, got torch.float64"):
        F.expand_linear(x, w.double(), b, backend=backend)
    with pytest.raises(ValueError, match=r"basis must be one of .*got 'cheb'"):
        F.expand_linear(x, w, b, "cheb", 2, backend=backend)
    with pytest.raises(ValueError, match=r"degree must be >= 1, got 0"):
        F.expand_linear(x, w, b, "chebyshev", 0, backend=backend)
    with pytest.raises(TypeError, match=r"degree must be an int, got float"):
        F.expand_linear(x, w, b, "chebyshev", 2.0, backend=backend)
    with pytest.raises(ValueError, match=r"x must have at least 1 dim"):
        F.expand_linear(torch.tensor(1.0), w, b, backend=backend)
    with pytest.raises(ValueError, match=r"takes the parameters \('alpha',\), got unexpected \['beta'\]"):
        F.expand_linear(x, w, b, "laguerre", 2, backend=backend, beta=1.0)
    with pytest.raises(ValueError, match=r"intervals of a bspline basis must be a positive integer, got 2.5"):
        F.expand(x, "bspline", 2, backend=backend, intervals=2.5)
    with pytest.raises(ValueError, match=r"input_norm must be one of"):
        F.expand(x, "chebyshev", 2, backend=backend, input_norm="sigmoid")
    meta = torch.randn(2, 6, device="meta")
    with pytest.raises(ValueError, match=r"weight must be on x's device cpu, got meta"):
        F.expand_linear(x, meta, None, backend=backend)


def test_compiled_op_checks_name_the_argument():
    ops = torch.ops.rpn2kernels
    x, w, b = _inputs()
    with pytest.raises(RuntimeError, match=r"weight must have shape \(n, D=6\) for m=3, got \[2, 5\]"):
        ops.expand_linear(x, w[:, :5], b, "chebyshev", 2, [])
    with pytest.raises(RuntimeError, match=r"x must have 2 dims \(B, m\), got 3 dims"):
        ops.expand_linear(x[None], w, b, "chebyshev", 2, [])
    with pytest.raises(RuntimeError, match=r"basis must be one of \[.*\], got 'nope'"):
        ops.expand(x, "nope", 2, [])
    with pytest.raises(RuntimeError, match=r"basis 'jacobi' takes 2 params, got 1"):
        ops.expand(x, "jacobi", 2, [1.0])
    with pytest.raises(RuntimeError, match=r"x must be a floating-point tensor, got dtype Long"):
        ops.expand(x.long(), "chebyshev", 2, [])
    with pytest.raises(RuntimeError, match=r"cpu backend supports float32 and float64 x, got BFloat16"):
        ops.expand(x.bfloat16(), "chebyshev", 2, [])
    with pytest.raises(RuntimeError, match=r"bias must have x's dtype Float, got Double"):
        ops.expand_linear(x, w, b.double(), "chebyshev", 2, [])
    with pytest.raises(RuntimeError, match=r"grad_out must have shape \(B=4, n=2\), got \[4, 3\]"):
        ops.expand_linear_backward(torch.randn(4, 3), x, w, "chebyshev", 2, [])
    with pytest.raises(RuntimeError, match=r"bspline degree must be <= 15, got 16"):
        ops.expand(x, "bspline", 16, [-1.0, 1.0, 2.0])
