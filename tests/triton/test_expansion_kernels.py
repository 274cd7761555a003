"""Triton expansion kernels (rpn2kernels/triton/expansion.py) against the pure-PyTorch reference.

Without a GPU the kernels run under TRITON_INTERPRET=1 on CPU tensors (set here as well as in
conftest, before triton is imported); the interpreter costs ~0.2 ms per triton.language call, so
shapes are small and the half-precision tests, which the interpreter computes wrongly, run only on
a GPU.
"""
import os
import zlib

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

pytest.importorskip("triton")

from rpn2kernels.basis import expansion_width  # noqa: E402
from rpn2kernels.reference import expansion as reference  # noqa: E402
from rpn2kernels.triton import expansion as kernels  # noqa: E402

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
DEVICE = "cpu" if INTERPRET else "cuda"

BASES = [
    ("chebyshev", 3, []),
    ("legendre", 4, []),
    ("jacobi", 3, [0.5, 1.5]),
    ("gegenbauer", 3, [0.7]),
    ("hermite", 4, []),
    ("laguerre", 3, [1.0]),
    ("bessel", 3, []),
    ("reverse_bessel", 4, []),
    ("fibonacci", 4, []),
    ("lucas", 3, []),
    ("gaussian_rbf", 5, [-1.0, 1.0, 1.5]),
    ("inverse_quadratic_rbf", 5, [-1.0, 1.0, 1.5]),
    ("bspline", 3, [-1.0, 1.0, 4.0]),
    ("bspline", 1, [-1.0, 1.0, 5.0]),
    ("taylor", 1, []),
    ("taylor", 2, []),
    ("taylor", 3, []),
]
BASIS_IDS = [f"{b}{d}" for b, d, _ in BASES]
SHAPES = [(5, 3, 7), (1, 1, 1), (17, 9, 18)]  # (B, m, n): none a multiple of any tile
DTYPES = [torch.float32, torch.float64]
RTOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def make_x(basis, B, m, dtype, generator):
    x = torch.rand(B, m, dtype=torch.float64, generator=generator) * 2 - 1
    if basis in ("bspline", "gaussian_rbf", "inverse_quadratic_rbf"):
        x = x * 3.0  # reaches past the spline support (±2.5 for the settings above) and the centres
    return x.to(dtype=dtype, device=DEVICE)


def close(actual, expected, dtype, what=""):
    """rtol per dtype; atol scaled by the largest expected magnitude, as sums over features and
    outputs lose absolute (not relative) accuracy to cancellation."""
    rtol = RTOL[dtype]
    atol = rtol * (1.0 + (expected.abs().max().item() if expected.numel() else 0.0))
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


def reference_linear(x, weight, bias, grad_out, basis, degree, params):
    xr = x.detach().clone().requires_grad_(True)
    wr = weight.detach().clone().requires_grad_(True)
    y = reference.expand_linear(xr, wr, bias, basis, degree, params)
    y.backward(grad_out)
    return y.detach(), xr.grad, wr.grad


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "fp64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("basis,degree,params", BASES, ids=BASIS_IDS)
def test_expand_linear_matches_reference(basis, degree, params, shape, dtype):
    B, m, n = shape
    g = torch.Generator().manual_seed(zlib.crc32(f"{basis}{degree}{shape}".encode()))
    D = expansion_width(basis, degree, params, m)
    x = make_x(basis, B, m, dtype, g)
    weight = torch.randn(n, D, generator=g, dtype=torch.float64).to(dtype=dtype, device=DEVICE) / D ** 0.5
    bias = torch.randn(n, generator=g, dtype=torch.float64).to(dtype=dtype, device=DEVICE)
    grad_out = torch.randn(B, n, generator=g, dtype=torch.float64).to(dtype=dtype, device=DEVICE)

    y = kernels.expand_linear_forward(x, weight, bias, basis, degree, params)
    grad_x, grad_w = kernels.expand_linear_backward(grad_out, x, weight, basis, degree, params)
    y_ref, grad_x_ref, grad_w_ref = reference_linear(x, weight, bias, grad_out, basis, degree, params)

    assert y.dtype == dtype and grad_x.dtype == dtype and grad_w.dtype == dtype
    close(y, y_ref, dtype, "forward")
    close(grad_x, grad_x_ref, dtype, "grad_x")
    close(grad_w, grad_w_ref, dtype, "grad_weight")


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "fp64"])
@pytest.mark.parametrize("basis,degree,params", BASES, ids=BASIS_IDS)
def test_expand_matches_reference(basis, degree, params, dtype):
    B, m = 17, 9
    g = torch.Generator().manual_seed(zlib.crc32(f"{basis}{degree}".encode()))
    x = make_x(basis, B, m, dtype, g)
    D = expansion_width(basis, degree, params, m)
    grad_features = torch.randn(B, D, generator=g, dtype=torch.float64).to(dtype=dtype, device=DEVICE)

    features = kernels.expand_forward(x, basis, degree, params)
    grad_x = kernels.expand_backward(grad_features, x, basis, degree, params)
    xr = x.clone().requires_grad_(True)
    features_ref = reference.expand(xr, basis, degree, params)
    features_ref.backward(grad_features)

    assert features.shape == (B, D) and features.dtype == dtype
    close(features, features_ref.detach(), dtype, "features")
    close(grad_x, xr.grad, dtype, "grad_x")


@pytest.mark.parametrize("basis,degree,params", [BASES[0], BASES[2], BASES[10], BASES[12], BASES[15], BASES[16]],
                         ids=["chebyshev3", "jacobi3", "gaussian_rbf5", "bspline3", "taylor2", "taylor3"])
def test_non_contiguous_inputs(basis, degree, params):
    """Transposed views of x, weight and the upstream gradients go through their strides."""
    dtype = torch.float64
    B, m, n = 6, 5, 4
    g = torch.Generator().manual_seed(3)
    D = expansion_width(basis, degree, params, m)
    x = make_x(basis, m, B, dtype, g).t()
    weight = torch.randn(D, n, generator=g, dtype=dtype).to(DEVICE).t()
    grad_out = torch.randn(n, B, generator=g, dtype=dtype).to(DEVICE).t()
    grad_features = torch.randn(D, B, generator=g, dtype=dtype).to(DEVICE).t()
    assert not x.is_contiguous() and not weight.is_contiguous() and not grad_out.is_contiguous()

    y = kernels.expand_linear_forward(x, weight, None, basis, degree, params)
    grad_x, grad_w = kernels.expand_linear_backward(grad_out, x, weight, basis, degree, params)
    y_ref, grad_x_ref, grad_w_ref = reference_linear(x, weight, None, grad_out, basis, degree, params)
    close(y, y_ref, dtype, "forward")
    close(grad_x, grad_x_ref, dtype, "grad_x")
    close(grad_w, grad_w_ref, dtype, "grad_weight")

    xr = x.clone().requires_grad_(True)
    features_ref = reference.expand(xr, basis, degree, params)
    features_ref.backward(grad_features)
    close(kernels.expand_forward(x, basis, degree, params), features_ref.detach(), dtype, "features")
    close(kernels.expand_backward(grad_features, x, basis, degree, params), xr.grad, dtype, "expand grad_x")


@pytest.mark.parametrize("basis,degree,params", [BASES[0], BASES[12], BASES[15], BASES[16]],
                         ids=["chebyshev3", "bspline3", "taylor2", "taylor3"])
@pytest.mark.parametrize("shape", [(0, 3, 4), (3, 2, 0), (3, 0, 4), (0, 0, 0)], ids=lambda s: "x".join(map(str, s)))
def test_empty_dimensions(basis, degree, params, shape):
    B, m, n = shape
    dtype = torch.float32
    D = expansion_width(basis, degree, params, m)
    x = torch.rand(B, m, dtype=dtype, device=DEVICE)
    weight = torch.randn(n, D, dtype=dtype, device=DEVICE)
    bias = torch.randn(n, dtype=dtype, device=DEVICE)
    y = kernels.expand_linear_forward(x, weight, bias, basis, degree, params)
    assert y.shape == (B, n)
    torch.testing.assert_close(y, bias.expand(B, n))  # κ(x)·Wᵀ is an empty sum or y itself is empty
    grad_x, grad_w = kernels.expand_linear_backward(torch.ones(B, n, dtype=dtype, device=DEVICE), x, weight,
                                                     basis, degree, params)
    assert grad_x.shape == (B, m) and grad_w.shape == (n, D)
    assert not grad_x.any() and not grad_w.any()
    features = kernels.expand_forward(x, basis, degree, params)
    assert features.shape == (B, D)
    assert kernels.expand_backward(torch.ones(B, D, dtype=dtype, device=DEVICE), x, basis, degree,
                                   params).shape == (B, m)


@pytest.mark.skipif(not INTERPRET, reason="tile sizes are only overridable under the interpreter")
@pytest.mark.parametrize("basis,degree,params", [BASES[2], ("bspline", 3, [-1.0, 1.0, 2.0]), BASES[15]],
                         ids=["jacobi3", "bspline3", "taylor2"])
def test_several_tiles_and_row_splits(basis, degree, params, monkeypatch):
    """Minimum tiles so every dimension spans several tiles with ragged edges, and dW reduced from
    2 uneven row slices (32 + 1 rows); the result must equal the reference and be bitwise
    reproducible."""
    monkeypatch.setattr(kernels, "_INTERPRET_BLOCKS",
                        dict(BB=16, BN=16, BM=16, EB=16, EM=16, TC=16, num_warps=1))
    monkeypatch.setattr(kernels, "_FORCE_SPLIT", 2)
    dtype = torch.float64
    B, m, n = 33, 17, 17
    g = torch.Generator().manual_seed(5)
    D = expansion_width(basis, degree, params, m)
    x = make_x(basis, B, m, dtype, g)
    weight = torch.randn(n, D, generator=g, dtype=dtype) / D ** 0.5
    bias = torch.randn(n, generator=g, dtype=dtype)
    grad_out = torch.randn(B, n, generator=g, dtype=dtype)
    y = kernels.expand_linear_forward(x, weight, bias, basis, degree, params)
    grad_x, grad_w = kernels.expand_linear_backward(grad_out, x, weight, basis, degree, params)
    y_ref, grad_x_ref, grad_w_ref = reference_linear(x, weight, bias, grad_out, basis, degree, params)
    close(y, y_ref, dtype, "forward")
    close(grad_x, grad_x_ref, dtype, "grad_x")
    close(grad_w, grad_w_ref, dtype, "grad_weight")
    assert torch.equal(grad_w, kernels.expand_linear_backward(grad_out, x, weight, basis, degree, params)[1])
    close(kernels.expand_forward(x, basis, degree, params), reference.expand(x, basis, degree, params), dtype,
          "features")



@pytest.mark.skipif(not INTERPRET, reason="tile sizes are only overridable under the interpreter")
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "fp64"])
@pytest.mark.parametrize("shape", [(5, 7, 3), (17, 9, 18)], ids=lambda s: "x".join(map(str, s)))
def test_taylor2_split_reductions(shape, dtype, monkeypatch):
    """Taylor-2 forward (M+1 column blocks of W) and dx (M+1 passes of the c sum) reduced from 3
    uneven slices, as on a GPU whose output grid is too small to fill it; 16-wide tiles give the
    17x9x18 case several row and output tiles besides. Must match the reference and be bitwise
    reproducible."""
    monkeypatch.setattr(kernels, "_INTERPRET_BLOCKS",
                        dict(BB=16, BN=16, BM=16, EB=16, EM=16, TC=16, num_warps=1))
    monkeypatch.setattr(kernels, "_FORCE_SPLIT", 3)
    splits = []  # what the launchers chose: forward, dx, dW
    split_count = kernels._split_count
    monkeypatch.setattr(kernels, "_split_count", lambda *a, **k: splits.append(split_count(*a, **k)) or splits[-1])
    B, m, n = shape
    g = torch.Generator().manual_seed(zlib.crc32(f"taylor2-split{shape}".encode()))
    D = expansion_width("taylor", 2, [], m)
    x = make_x("taylor", B, m, dtype, g)
    weight = torch.randn(n, D, generator=g, dtype=torch.float64).to(dtype=dtype, device=DEVICE) / D ** 0.5
    bias = torch.randn(n, generator=g, dtype=torch.float64).to(dtype=dtype, device=DEVICE)
    grad_out = torch.randn(B, n, generator=g, dtype=torch.float64).to(dtype=dtype, device=DEVICE)

    y = kernels.expand_linear_forward(x, weight, bias, "taylor", 2, [])
    grad_x, grad_w = kernels.expand_linear_backward(grad_out, x, weight, "taylor", 2, [])
    assert splits[0] == 3 and splits[1] == 3, splits
    y_ref, grad_x_ref, grad_w_ref = reference_linear(x, weight, bias, grad_out, "taylor", 2, [])
    assert y.dtype == dtype and grad_x.dtype == dtype
    close(y, y_ref, dtype, "forward")
    close(grad_x, grad_x_ref, dtype, "grad_x")
    close(grad_w, grad_w_ref, dtype, "grad_weight")
    assert torch.equal(y, kernels.expand_linear_forward(x, weight, bias, "taylor", 2, []))
    grad_x2, grad_w2 = kernels.expand_linear_backward(grad_out, x, weight, "taylor", 2, [])
    assert torch.equal(grad_x, grad_x2) and torch.equal(grad_w, grad_w2)


def test_taylor3_row_chunks(monkeypatch):
    """Taylor degree ≥ 3 materialises κ a few rows at a time; force several chunks."""
    monkeypatch.setattr(kernels, "_TAYLOR_CHUNK_ELEMENTS", 2 * 39)  # m=3: D = 39, so 2 rows a chunk
    basis, degree, params = "taylor", 3, []
    dtype = torch.float64
    g = torch.Generator().manual_seed(7)
    x = make_x(basis, 5, 3, dtype, g)
    weight = torch.randn(4, 39, generator=g, dtype=dtype).to(DEVICE)
    grad_out = torch.randn(5, 4, generator=g, dtype=dtype).to(DEVICE)
    y = kernels.expand_linear_forward(x, weight, None, basis, degree, params)
    grad_x, grad_w = kernels.expand_linear_backward(grad_out, x, weight, basis, degree, params)
    y_ref, grad_x_ref, grad_w_ref = reference_linear(x, weight, None, grad_out, basis, degree, params)
    close(y, y_ref, dtype, "forward")
    close(grad_x, grad_x_ref, dtype, "grad_x")
    close(grad_w, grad_w_ref, dtype, "grad_weight")


@pytest.mark.parametrize("degree,dtype", [(1, torch.float32), (1, torch.float64), (3, torch.float32),
                                          (3, torch.float64), (8, torch.float64), (15, torch.float32)],
                         ids=["1-fp32", "1-fp64", "3-fp32", "3-fp64", "8-fp64", "15-fp32"])
def test_bspline_high_degree_partition_of_unity_and_support(degree, dtype):
    """Σ_j B_{j,d}(x) = 1 inside [lo, hi) at every allowed degree (the piecewise form keeps fp32
    accurate where a truncated-power sum would cancel); features and derivatives are 0 outside
    the support [lo − d·h, hi + d·h); the values match the reference's Cox–de Boor."""
    params = [-1.0, 1.0, 4.0]
    h = 0.5
    K = 4 + degree
    inside = torch.tensor([-0.99, -0.5, 0.0, 0.3, 0.999], dtype=torch.float64)
    outside = torch.tensor([-1.0 - degree * h - 0.01, 1.0 + degree * h, 1.0 + degree * h + 0.3, -20.0, 1e6],
                           dtype=torch.float64)
    x = torch.stack([inside, outside]).to(dtype=dtype, device=DEVICE)
    features = kernels.expand_forward(x, "bspline", degree, params)
    tol = 2e-6 if dtype == torch.float32 else 1e-13
    sums = features.view(2, 5, K)[0].sum(-1)
    torch.testing.assert_close(sums, torch.ones_like(sums), atol=tol, rtol=0)
    assert not features[1].any()
    torch.testing.assert_close(features, reference.expand(x, "bspline", degree, params), atol=tol, rtol=0)
    grad_x = kernels.expand_backward(torch.ones_like(features), x, "bspline", degree, params)
    assert not grad_x[1].any()
    if degree > 1:  # Σ_j B'_j = 0 where the sum is constant (degree 1 is 0 too, but test 2+ only)
        torch.testing.assert_close(grad_x[0], torch.zeros_like(grad_x[0]), atol=50 * tol, rtol=0)


def test_rejects_bad_arguments():
    x = torch.rand(4, 3, device=DEVICE)
    with pytest.raises(ValueError, match="columns"):
        kernels.expand_linear_forward(x, torch.rand(2, 10, device=DEVICE), None, "chebyshev", 3, [])
    with pytest.raises(TypeError, match="dtype"):
        kernels.expand_linear_forward(x, torch.rand(2, 9, dtype=torch.float64, device=DEVICE), None,
                                      "chebyshev", 3, [])
    with pytest.raises(ValueError, match="params"):
        kernels.expand_forward(x, "jacobi", 3, [1.0])
    with pytest.raises(ValueError, match="shape"):
        kernels.expand_backward(torch.rand(4, 8, device=DEVICE), x, "chebyshev", 3, [])


@pytest.mark.skipif(INTERPRET or not torch.cuda.is_available(),
                    reason="the interpreter computes half-precision arithmetic wrongly; GPU only")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("basis,degree,params", [BASES[0], BASES[3], BASES[10], BASES[12], BASES[15]],
                         ids=["chebyshev3", "gegenbauer3", "gaussian_rbf5", "bspline3", "taylor2"])
def test_half_precision_on_gpu(basis, degree, params, dtype):
    """fp32 accumulation: the error is that of rounding operands to half, not of summing in half."""
    B, m, n = 300, 40, 70
    g = torch.Generator().manual_seed(11)
    D = expansion_width(basis, degree, params, m)
    x64 = make_x(basis, B, m, torch.float64, g)
    w64 = (torch.randn(n, D, generator=g, dtype=torch.float64) / D ** 0.5).to(DEVICE)
    b64 = torch.randn(n, generator=g, dtype=torch.float64).to(DEVICE)
    go64 = torch.randn(B, n, generator=g, dtype=torch.float64).to(DEVICE)
    x, w, b, go = (t.to(dtype) for t in (x64, w64, b64, go64))
    y = kernels.expand_linear_forward(x, w, b, basis, degree, params)
    grad_x, grad_w = kernels.expand_linear_backward(go, x, w, basis, degree, params)
    y_ref, grad_x_ref, grad_w_ref = reference_linear(x.double(), w.double(), b.double(), go.double(), basis, degree,
                                                     params)
    tol = 1e-2 if dtype == torch.float16 else 4e-2
    for got, want in ((y, y_ref), (grad_x, grad_x_ref), (grad_w, grad_w_ref)):
        assert got.dtype == dtype
        scale = want.abs().max().item() + 1.0
        assert (got.double() - want).abs().max().item() <= tol * scale
