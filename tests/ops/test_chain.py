"""Chain interdependence (functions.md §5.4) on every backend against dense L×L matrices built from
tinyBIG's definitions (S, S_sym, matrix powers, inverse, matrix_exp — never from our taps)."""
import math

import pytest
import torch

from rpn2kernels import chain as chain_ops
from rpn2kernels import functional as F
from rpn2kernels.reference import propagation as reference
from rpn2kernels.testing import backend_device_params, compiled_backend_params, scaled_tolerance


def shift_matrix(L, bidirectional):
    S = torch.diag(torch.ones(max(L - 1, 0), dtype=torch.float64), 1)
    return S + S.t() if bidirectional else S


def column_normalise(W):
    c = W.sum(0)
    return W / torch.where(c == 0, torch.ones_like(c), c)[None, :]


def dense_chain(L, variant, hops, bidirectional, self_dependence, self_scaling, accumulative):
    """A of the variant as tinyBIG builds it (table of §5.4)."""
    S = shift_matrix(L, bidirectional)
    eye = torch.eye(L, dtype=torch.float64)
    if variant == "plain":
        return S + self_scaling * eye if self_dependence else S
    if variant == "multihop":
        adj = S + eye if self_dependence else S  # self_scaling is not forwarded: s = 1
        if accumulative:
            W = sum(torch.linalg.matrix_power(adj, j) for j in range(1, hops + 1))
            return column_normalise(W) if bidirectional else W
        return torch.linalg.matrix_power(adj, hops)
    if variant == "inverse_approx":
        if bidirectional:
            return column_normalise(sum(torch.linalg.matrix_power(S, k) for k in range(1, L)) if L > 1 else 0 * S)
        return torch.linalg.inv(eye - S)
    return torch.linalg.matrix_exp(S)


CASES = [
    ("plain", 1, False, True, 1.0, False),
    ("plain", 1, False, True, 0.5, False),
    ("plain", 1, False, False, 1.0, False),
    ("plain", 1, True, True, 2.0, False),
    ("plain", 1, True, False, 1.0, False),
    ("multihop", 3, False, True, 1.0, False),
    ("multihop", 3, False, False, 1.0, False),
    ("multihop", 3, False, True, 1.0, True),
    ("multihop", 2, False, False, 1.0, True),
    ("multihop", 3, True, True, 1.0, False),
    ("multihop", 2, True, False, 1.0, False),
    ("multihop", 3, True, True, 1.0, True),
    ("multihop", 2, True, False, 1.0, True),
    ("inverse_approx", 1, False, True, 1.0, False),
    ("inverse_approx", 1, True, True, 1.0, False),
    ("exponential_approx", 1, False, True, 1.0, False),
    ("exponential_approx", 1, True, True, 1.0, False),
]
CASE_IDS = [f"{v}-h{h}-{'bi' if bi else 'uni'}-{'self' if sd else 'noself'}{s}{'-acc' if acc else ''}"
            for v, h, bi, sd, s, acc in CASES]


@pytest.mark.parametrize("backend_device", backend_device_params())
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("L", [1, 2, 13], ids=lambda L: f"L{L}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_chain_matches_dense_matrix(backend_device, case, L, dtype):
    backend, device = backend_device
    variant, hops, bi, self_dep, scaling, acc = case
    A = dense_chain(L, variant, hops, bi, self_dep, scaling, acc)
    x = torch.randn(3, L, 5, dtype=dtype)
    xs = x.to(device).requires_grad_()
    out = F.chain_propagate(xs, variant, hops, bidirectional=bi, self_dependence=self_dep, self_scaling=scaling,
                            accumulative=acc, backend=backend)
    expected = torch.einsum("ut,bum->btm", A, x.double())
    tol = scaled_tolerance(dtype, expected)
    if variant == "exponential_approx" and dtype == torch.float32:
        tol["atol"] = max(tol["atol"], 1e-5 * expected.abs().max().item())
    torch.testing.assert_close(out.double().cpu(), expected, **tol)
    grad = torch.randn(3, L, 5, dtype=dtype)
    out.backward(grad.to(device))
    expected_grad = torch.einsum("ut,btm->bum", A, grad.double())
    torch.testing.assert_close(xs.grad.double().cpu(), expected_grad, **scaled_tolerance(dtype, expected_grad))


def test_bidirectional_inverse_has_no_overflow_at_L4096():
    """tinyBIG's walk counts overflow (NaN for L >= 133 in fp32); the DST-I form stays finite and
    matches the dense float64 computation where that one still fits."""
    x = torch.randn(2, 4096, 3)
    out = F.chain_propagate(x, "inverse_approx", bidirectional=True)
    assert torch.isfinite(out).all()
    L = 300
    x = torch.randn(2, L, 3, dtype=torch.float64)
    A = dense_chain(L, "inverse_approx", 1, True, True, 1.0, False)
    assert torch.isfinite(A).all()
    expected = torch.einsum("ut,bum->btm", A, x)
    torch.testing.assert_close(F.chain_propagate(x, "inverse_approx", bidirectional=True), expected,
                               rtol=1e-9, atol=1e-9)


def test_dst1_is_orthonormal_and_involutive():
    L = 11
    n = torch.arange(L, dtype=torch.float64)
    V = math.sqrt(2 / (L + 1)) * torch.sin(math.pi * (n[:, None] + 1) * (n[None, :] + 1) / (L + 1))
    x = torch.randn(2, L, 3, dtype=torch.float64)
    torch.testing.assert_close(chain_ops.dst1(x), torch.einsum("kn,bnm->bkm", V, x))
    torch.testing.assert_close(chain_ops.dst1(chain_ops.dst1(x)), x)


@pytest.mark.parametrize("backend_device", backend_device_params())
@pytest.mark.parametrize("taps, first", [([1.0, -2.0, 0.5], 0), ([0.3, 1.0, 0.3], -1), ([2.0], 5), ([1.0, 1.0], -9)])
def test_chain_filter_kernel_with_base(backend_device, taps, first):
    backend, device = backend_device
    x = torch.randn(2, 7, 9, dtype=torch.float64)
    base = torch.randn(2, 7, 9, dtype=torch.float64)
    from rpn2kernels.ops import propagation as ops

    out = ops.chain_filter(x.to(device), taps, first, base.to(device), -0.5, backend)
    L = 7
    expected = -0.5 * base.clone()
    for j, tap in enumerate(taps):
        for t in range(L):
            u = t - (first + j)
            if 0 <= u < L:
                expected[:, t] += tap * x[:, u]
    torch.testing.assert_close(out.cpu(), expected)


@pytest.mark.parametrize("backend_device", compiled_backend_params())
def test_chain_gradcheck_and_opcheck(backend_device):
    backend, device = backend_device
    x = torch.randn(2, 6, 3, dtype=torch.float64, device=device, requires_grad=True)
    base = torch.randn(2, 6, 3, dtype=torch.float64, device=device, requires_grad=True)
    prefix = "triton_" if backend == "triton" else ""
    chain_filter = getattr(torch.ops.rpn2kernels, f"{prefix}chain_filter")
    chain_scan = getattr(torch.ops.rpn2kernels, f"{prefix}chain_scan")
    assert torch.autograd.gradcheck(lambda a, b: chain_filter(a, [0.5, 1.0, -2.0], -1, b, 0.7), (x, base))
    assert torch.autograd.gradcheck(lambda a: chain_scan(a, True), (x,))
    torch.library.opcheck(chain_filter, (x, [0.5, 1.0, -2.0], -1, base, 0.7))
    torch.library.opcheck(chain_filter, (x, [1.0], 2, None, 0.0))
    torch.library.opcheck(chain_scan, (x, False))
    for variant, bi in (("multihop", True), ("exponential_approx", False), ("inverse_approx", False)):
        assert torch.autograd.gradcheck(
            lambda a: F.chain_propagate(a, variant, 2, bidirectional=bi, accumulative=True, backend=backend), (x,))
    # the bi-directional filters: odd_reflect (self-adjoint, f(S_sym) is symmetric) with 5 taps (one
    # image each side at L = 6) and 17 taps (images beyond one period)
    for taps in ([0.2, 1.0, 3.0, 1.0, 0.2], [0.1 * (1 + min(k, 16 - k)) for k in range(17)]):
        first = -(len(taps) // 2)
        assert torch.autograd.gradcheck(lambda a, b: chain_filter(a, taps, first, b, 0.7, True), (x, base))
        torch.library.opcheck(chain_filter, (x, taps, first, base, 0.7, True))
    with pytest.raises((RuntimeError, ValueError), match="odd_reflect needs an odd number of (centred )?symmetric taps"):
        chain_filter(x, [1.0, 2.0, 3.0], -1, None, 0.0, True)
    with pytest.raises((RuntimeError, ValueError), match="odd_reflect needs"):
        chain_filter(x, [1.0, 2.0, 1.0], 0, None, 0.0, True)


@pytest.mark.parametrize("backend_device", backend_device_params())
@pytest.mark.parametrize("L", [1, 2, 7])
def test_odd_reflected_filter_matches_the_extended_sequence(backend_device, L):
    """chain_filter(odd_reflect=True) against the filter on an explicitly reflected copy (built by
    index arithmetic here, independent of the kernels' image map), with taps reaching past several
    periods of the reflection at small L."""
    from rpn2kernels.ops import propagation as ops

    backend, device = backend_device
    x = torch.randn(2, L, 5, dtype=torch.float64)
    for half in (1, 3, 9):
        taps = [0.3 + 0.1 * min(k, 2 * half - k) for k in range(2 * half + 1)]
        period = 2 * (L + 1)
        ext = torch.zeros(2, L + 2 * half, 5, dtype=torch.float64)
        for p in range(-half, L + half):
            s = p % period
            if s < L:
                ext[:, p + half] = x[:, s]
            elif L < s < 2 * L + 1:
                ext[:, p + half] = -x[:, 2 * L - s]
        expected = reference.chain_filter(ext, taps, -half)[:, half:half + L]
        out = ops.chain_filter(x.to(device), taps, -half, None, 0.0, backend, odd_reflect=True)
        torch.testing.assert_close(out.cpu(), expected)


@pytest.mark.parametrize("backend_device", compiled_backend_params())
def test_chain_non_contiguous_empty_and_deterministic(backend_device):
    backend, device = backend_device
    x = torch.randn(4, 3, 10, device=device).transpose(1, 2)  # (4, 10, 3) non-contiguous
    for variant, bi in (("multihop", False), ("multihop", True), ("inverse_approx", False)):
        out = F.chain_propagate(x, variant, 2, bidirectional=bi, backend=backend)
        torch.testing.assert_close(out, F.chain_propagate(x.contiguous(), variant, 2, bidirectional=bi,
                                                          backend="reference"))
        assert torch.equal(out, F.chain_propagate(x, variant, 2, bidirectional=bi, backend=backend))
    empty = torch.randn(0, 5, 3, device=device)
    assert F.chain_propagate(empty, "multihop", 2, backend=backend).shape == (0, 5, 3)
    assert F.chain_propagate(torch.randn(2, 5, 0, device=device), "inverse_approx",
                             backend=backend).shape == (2, 5, 0)


def test_chain_bad_input():
    with pytest.raises(ValueError, match="variant must be one of"):
        F.chain_propagate(torch.randn(2, 3, 4), "cubic")
    with pytest.raises(ValueError, match=r"shape \(b, L, m\) or \(L, m\)"):
        F.chain_propagate(torch.randn(3))
    with pytest.raises(ValueError, match="hops must be an int >= 1"):
        F.chain_propagate(torch.randn(2, 3, 4), "multihop", 0)
    with pytest.raises(TypeError, match="floating-point"):
        F.chain_propagate(torch.ones(2, 3, 4, dtype=torch.int64))


@pytest.mark.parametrize("backend_device", backend_device_params())
def test_chain_scan_splits_long_wide_sequences(backend_device):
    """One sequence with more features than a CPU task block: the split must not change the sums."""
    backend, device = backend_device
    from rpn2kernels.ops import propagation as ops

    x = torch.randn(1, 50, 130, dtype=torch.float64)
    torch.testing.assert_close(ops.chain_scan(x.to(device), False, backend).cpu(), x.cumsum(1))
    torch.testing.assert_close(ops.chain_scan(x.to(device), True, backend).cpu(), x.flip(1).cumsum(1).flip(1))


@pytest.mark.parametrize("m", [1, 5, 16, 37, 64, 70, 130])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_chain_scan_cpu_isa_copies(isa, m, dtype):
    """Both copies of the CPU scan (running sums in registers: full blocks, 16-feature blocks, a tail)
    against cumsum, both directions, with L = 1 and a sequence longer than one task's block."""
    for L in (1, 9):
        x = torch.randn(3, L, m, dtype=dtype)
        forward = torch.ops.rpn2kernels.chain_scan(x, False)
        backward = torch.ops.rpn2kernels.chain_scan(x, True)
        torch.testing.assert_close(forward, x.cumsum(1), **scaled_tolerance(dtype, forward))
        torch.testing.assert_close(backward, x.flip(1).cumsum(1).flip(1), **scaled_tolerance(dtype, backward))


@pytest.mark.parametrize("m", [5, 64, 70, 130])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_chain_filter_cpu_isa_copies(isa, m, dtype):
    """Both copies of the CPU filter loop (baseline: 16-feature blocks; AVX2: 8 vector registers of
    features) against the reference, with full blocks, a tail block, zero taps, offsets and a base."""
    x = torch.randn(2, 11, m, dtype=dtype)
    base = torch.randn(2, 11, m, dtype=dtype)
    for taps, first in (([0.5, 0.0, 1.5, -2.0, 0.25], -2), ([1.0], 0), ([0.3, 0.7], 9)):
        out = torch.ops.rpn2kernels.chain_filter(x, taps, first, base, 0.5)
        expected = reference.chain_filter(x, taps, first, base, 0.5)
        torch.testing.assert_close(out, expected, **scaled_tolerance(dtype, expected))
