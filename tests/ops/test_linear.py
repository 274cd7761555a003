"""narrow_linear (y = x·Wᵀ + b) on every backend and both copies of the CPU loops (baseline and
AVX2+FMA) against torch.nn.functional.linear: values, gradients, gradcheck, opcheck, reproducibility,
odd and empty shapes, non-contiguous operands, bad input."""
import pytest
import torch

from rpn2kernels import _extension
from rpn2kernels import functional as F
from rpn2kernels.backends import BackendUnavailable
from rpn2kernels.testing import scaled_tolerance

op = torch.ops.rpn2kernels.narrow_linear
no_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


# (B, in, out): partial column tiles (7, 17, 33), the AVX2 tile's 6 rows and the baseline's 4 not
# dividing B, reductions over several 64-step chunks, Gᵀ·x walking B by columns (B > out, also
# where B ≤ in: (13, 37, 7), (9, 1100, 7), (200, 300, 16)),
# and small outputs over long reductions, cut into 2 and 16 segments: Gᵀ·x over B = 2500 and
# 17000 rows, and a forward over in = 5000 features. Forwards over in = 1100 take three 512-step
# passes of a whole column tile over B in place (out = 16: the packed Wᵀ, and with the
# weight-transposed layout the weight itself) or over the zero-padded packed Wᵀ (out = 7). Gᵀ·x
# with out = 16 or 32 (whole tiles of the transposed product xᵀ·G) takes the transposed walk, over
# a reduction that 16-row chunks do not divide (300, 700 rows).
SHAPES = [(13, 37, 7), (1, 1, 1), (6, 5, 16), (41, 130, 17), (300, 100, 7), (70, 9, 33), (200, 300, 16),
          (2500, 5, 7), (17000, 3, 20), (3, 5000, 4), (20, 1100, 16), (9, 1100, 7), (300, 40, 16),
          (700, 50, 32)]
EMPTY = [(0, 5, 3), (4, 0, 3), (4, 5, 0)]


def _inputs(B, m, n, dtype, layout, bias=True, device="cpu"):
    g = torch.Generator().manual_seed(B * 1000 + m * 10 + n)
    x = torch.randn(B, m, generator=g, dtype=dtype)
    w = torch.randn(n, m, generator=g, dtype=dtype) / max(m, 1) ** 0.5
    b = torch.randn(n, generator=g, dtype=dtype) if bias else None
    if layout == "x-strided":        # every other column of a wider buffer
        x = torch.cat([x, x], 1).reshape(B, m, 2)[:, :, 0] if B * m else x
    elif layout == "x-transposed":   # column-major storage
        x = x.t().contiguous().t()
    elif layout == "weight-transposed":
        w = w.t().contiguous().t()
    return [t if t is None else t.to(device).requires_grad_() for t in (x, w, b)]


def _check_against_linear(x, w, b, backend):
    y = F.narrow_linear(x, w, b, backend=backend)
    grad = torch.randn_like(y)
    y.backward(grad)
    ours = [y.detach()] + [t.grad for t in (x, w, b) if t is not None]
    x2, w2 = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    b2 = None if b is None else b.detach().clone().requires_grad_()
    y2 = torch.nn.functional.linear(x2, w2, b2)
    y2.backward(grad)
    expected = [y2.detach()] + [t.grad for t in (x2, w2, b2) if t is not None]
    for name, got, want in zip(("y", "dx", "dW", "db"), ours, expected):
        assert got.shape == want.shape, name
        torch.testing.assert_close(got, want, **scaled_tolerance(want.dtype, want), msg=name)


@pytest.mark.parametrize("shape", SHAPES + EMPTY, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["contiguous", "x-strided", "x-transposed", "weight-transposed"])
def test_cpu_kernel_matches_linear(isa, shape, dtype, layout):
    _check_against_linear(*_inputs(*shape, dtype, layout), backend="cpu")


@pytest.mark.parametrize("shape", [(13, 37, 7), (41, 130, 17)], ids=lambda s: "x".join(map(str, s)))
def test_without_bias(isa, shape):
    _check_against_linear(*_inputs(*shape, torch.float32, "contiguous", bias=False), backend="cpu")


@pytest.mark.parametrize("backend_device", [pytest.param(("reference", "cpu"), id="reference-cpu"),
                                            pytest.param(("cuda", "cuda"), id="cuda-cuda", marks=no_gpu),
                                            pytest.param(("reference", "cuda"), id="reference-cuda", marks=no_gpu)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_other_backends_match_linear(backend_device, dtype):
    backend, device = backend_device
    for shape in SHAPES[:4]:
        _check_against_linear(*_inputs(*shape, dtype, "x-transposed", device=device), backend=backend)


def test_batch_dims_are_flattened():
    x = torch.randn(3, 4, 10)
    w, b = torch.randn(5, 10), torch.randn(5)
    torch.testing.assert_close(F.narrow_linear(x, w, b, backend="cpu"), torch.nn.functional.linear(x, w, b))


@pytest.mark.parametrize("shape", [(300, 100, 7), (5000, 5, 7)], ids=["tiles", "segments"])
def test_bitwise_reproducible_for_any_thread_count(isa, shape):
    B, _, n = shape
    x, w, b = (t.detach() for t in _inputs(*shape, torch.float32, "contiguous"))
    g = torch.randn(B, n)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            results.append((op(x, w, b), op(g, w.t(), None), op(g.t(), x.t(), None)))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, c in zip(results[0], other):
            assert torch.equal(a, c)


def test_gradcheck(isa):
    x, w, b = (t.detach().requires_grad_() for t in _inputs(9, 11, 5, torch.float64, "contiguous"))
    assert torch.autograd.gradcheck(lambda *a: F.narrow_linear(*a, backend="cpu"), (x, w, b))
    assert torch.autograd.gradgradcheck(lambda *a: F.narrow_linear(*a, backend="cpu"), (x, w, b))


def test_opcheck():
    for shape in [(13, 37, 7), (4, 0, 3)]:
        x, w, b = _inputs(*shape, torch.float64, "x-transposed")
        torch.library.opcheck(op, (x, w, b))
        torch.library.opcheck(op, (x, w, None))


def test_compiled_matches_eager():
    x, w, b = (t.detach().requires_grad_() for t in _inputs(41, 130, 17, torch.float32, "contiguous"))
    compiled = torch.compile(lambda *a: F.narrow_linear(*a, backend="cpu"), fullgraph=True)
    y = compiled(x, w, b)
    y.sum().backward()
    torch.testing.assert_close(y, torch.nn.functional.linear(x, w, b))
    torch.testing.assert_close(x.grad, torch.ones(41, 17) @ w.detach())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_default_takes_the_kernel_only_where_it_is_faster(dtype):
    m = 1024
    big = torch.empty(F.NARROW_MIN_BYTES // (m * torch.finfo(dtype).bits // 8), m, dtype=dtype)
    narrow, wide = torch.randn(16, m, dtype=dtype), torch.randn(64, m, dtype=dtype)
    assert F.narrow_kernel_preferred(big, narrow) == _extension.cpu_vector_kernels()
    assert F.narrow_kernel_preferred(big.view(4, -1, m), narrow) == _extension.cpu_vector_kernels()  # rows flatten
    assert not F.narrow_kernel_preferred(big, wide)
    # an x that fits in cache stays on torch's GEMM
    assert not F.narrow_kernel_preferred(big[1:], narrow)
    assert not F.narrow_kernel_preferred(torch.empty(0, m, dtype=dtype), narrow)
    x, w = torch.randn(10, 100, dtype=dtype), torch.randn(64, 100, dtype=dtype)
    torch.testing.assert_close(F.narrow_linear(x, w), torch.nn.functional.linear(x, w))


def test_bad_input():
    x, w, b = torch.randn(5, 4), torch.randn(3, 4), torch.randn(3)
    with pytest.raises(ValueError, match=r"weight must have shape \(out_features, in_features=4\), got \(3, 5\)"):
        F.narrow_linear(x, torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\), got \(4,\)"):
        F.narrow_linear(x, w, torch.randn(4))
    with pytest.raises(TypeError, match="x must be a floating-point tensor, got dtype torch.int64"):
        F.narrow_linear(x.long(), w)
    with pytest.raises(TypeError, match="weight must have x's dtype torch.float32, got torch.float64"):
        F.narrow_linear(x, w.double())
    with pytest.raises(BackendUnavailable, match=r"narrow_linear has no triton kernel"):
        F.narrow_linear(x, w, b, backend="triton")
    # the op's own checks (what torch.ops callers hit)
    with pytest.raises(RuntimeError, match=r"x must have 2 dims \(B, in_features\), got shape \[5, 4, 1\]"):
        op(x[..., None], w, b)
    with pytest.raises(RuntimeError, match=r"weight must have shape \(out_features, in_features=4\), got \[3, 5\]"):
        op(x, torch.randn(3, 5), b)
    with pytest.raises(RuntimeError, match=r"bias must have shape \(3,\), got \[2\]"):
        op(x, w, torch.randn(2))
    with pytest.raises(RuntimeError, match="weight must have x's dtype Float, got Double"):
        op(x, w.double(), b)
    with pytest.raises(RuntimeError, match="the cpu backend supports float32 and float64 x, got BFloat16"):
        op(x.bfloat16(), w.bfloat16(), None)
    with pytest.raises(ValueError, match="cpu_isa must be 'auto', 'generic' or a supported ISA"):
        _extension.set_cpu_isa("avx512")


def test_backend_preference_for_a_backend_the_family_lacks(monkeypatch):
    monkeypatch.setenv("RPN2K_BACKEND", "triton")
    x, w = torch.randn(5, 4), torch.randn(3, 4)
    torch.testing.assert_close(F.narrow_linear(x, w), torch.nn.functional.linear(x, w))
