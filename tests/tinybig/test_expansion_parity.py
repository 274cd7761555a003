"""rpn2kernels.tinybig.expansion against tinyBIG 0.2.1 itself (test-only oracle).

tinyBIG is imported through tests/tinybig/_tinybig_oracle.py; without it these tests skip with the
install command (and fail under CI=true). The transcribed reference remains the primary oracle
(tests/ops); this file checks that the namespace is a drop-in for tinyBIG's classes: same
constructor signatures, names, D, values and input gradients, except the documented differences
(docs/tinybig-differences.md), which are asserted explicitly.
"""
from __future__ import annotations

import inspect

import pytest
import torch

import rpn2kernels.tinybig as rtb
from rpn2kernels.reference.expansion import expand as reference_expand

try:
    from ._tinybig_oracle import tinybig_or_skip
except ImportError:  # tests/ collected without packages (rootdir-relative imports)
    from _tinybig_oracle import tinybig_or_skip

B, M = 5, 4


@pytest.fixture(scope="module")
def tb():
    return tinybig_or_skip()


def _x(seed: int, lo: float = -1.0, hi: float = 1.0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(B, M, generator=g, dtype=torch.float64) * (hi - lo) + lo).to(dtype)


# (class name, constructor keywords) — several degrees and parameters per family.
CASES = [
    ("chebyshev_expansion", {"d": 0}),
    ("chebyshev_expansion", {}),
    ("chebyshev_expansion", {"d": 1}),
    ("chebyshev_expansion", {"d": 5}),
    ("legendre_expansion", {"d": 1}),
    ("legendre_expansion", {"d": 3}),
    ("legendre_expansion", {"d": 6}),
    ("jacobi_expansion", {}),
    ("jacobi_expansion", {"d": 4, "alpha": 0.5, "beta": 2.0}),
    ("jacobi_expansion", {"d": 3, "alpha": -0.5, "beta": 0.25}),
    ("gegenbauer_expansion", {}),
    ("gegenbauer_expansion", {"d": 4, "alpha": 0.25}),
    ("gegenbauer_expansion", {"d": 5, "alpha": 2.0}),
    ("hermite_expansion", {}),
    ("hermite_expansion", {"d": 5}),
    ("bessel_expansion", {}),
    ("bessel_expansion", {"d": 4}),
    ("reverse_bessel_expansion", {}),
    ("reverse_bessel_expansion", {"d": 4}),
    ("fibonacci_expansion", {"d": 1}),
    ("fibonacci_expansion", {}),
    ("fibonacci_expansion", {"d": 5}),
    ("lucas_expansion", {"d": 1}),
    ("lucas_expansion", {}),
    ("lucas_expansion", {"d": 5}),
    ("gaussian_rbf_expansion", {}),
    ("gaussian_rbf_expansion", {"base_range": (-2, 3), "num_interval": 4, "epsilon": 0.7}),
    ("gaussian_rbf_expansion", {"num_interval": 1, "epsilon": 2.0}),
    ("gaussian_rbf_expansion", {"num_interval": 0}),
    ("inverse_quadratic_rbf_expansion", {}),
    ("inverse_quadratic_rbf_expansion", {"base_range": (-2, 3), "num_interval": 4, "epsilon": 0.7}),
    ("bspline_expansion", {}),
    ("bspline_expansion", {"grid_range": (-1, 1), "t": 4, "d": 2}),
    ("bspline_expansion", {"grid_range": (-2, 1), "t": 3, "d": 1}),
    ("bspline_expansion", {"t": 6, "d": 4}),
    ("taylor_expansion", {"d": 1}),
    ("taylor_expansion", {}),
    ("taylor_expansion", {"d": 3}),
    ("identity_expansion", {}),
    ("reciprocal_expansion", {}),
]
# Laguerre is a deliberate difference (defect #21): value parity is replaced by test_laguerre_*.
CLASS_NAMES = sorted({name for name, _ in CASES} | {"laguerre_expansion"})
RECURRENCE_FAMILIES = {
    f"{f}_expansion" for f in ("chebyshev", "legendre", "jacobi", "gegenbauer", "hermite", "laguerre", "bessel",
                               "reverse_bessel", "fibonacci", "lucas")}
NO_GRAD_PARITY = {"reciprocal_expansion"}  # tinyBIG's in-place clamp cannot run on a leaf that requires grad


def _case_id(case):
    name, kw = case
    return name.replace("_expansion", "") + "".join(f"-{k}={v}" for k, v in kw.items())


def _pair(tb, name, kw):
    return getattr(rtb.expansion, name)(**kw), getattr(tb.expansion, name)(**kw)


def _assert_close(ours, theirs):
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("x_range", [(-1.0, 1.0), (-3.0, 3.0)], ids=["unit", "wide"])
def test_forward_matches_tinybig(tb, case, x_range):
    name, kw = case
    ours, theirs = _pair(tb, name, kw)
    x = _x(1, *x_range)
    expected = theirs(x.clone())
    got = ours(x)
    assert got.dtype == torch.float32 and got.shape == expected.shape == (B, ours.calculate_D(M))
    _assert_close(got, expected)


@pytest.mark.parametrize("case", [c for c in CASES if c[0] not in NO_GRAD_PARITY], ids=_case_id)
def test_input_gradient_matches_tinybig(tb, case):
    name, kw = case
    ours, theirs = _pair(tb, name, kw)
    x = _x(2)
    upstream = torch.randn(B, ours.calculate_D(M), generator=torch.Generator().manual_seed(3))
    grads = []
    for module in (ours, theirs):
        leaf = x.clone().requires_grad_(True)
        out = module(leaf)
        # A constant expansion (Fibonacci d = 1) may come back detached: its gradient is zero.
        grads.append(torch.autograd.grad(out, leaf, upstream, allow_unused=True)[0] if out.requires_grad else None)
    grads = [torch.zeros_like(x) if g is None else g for g in grads]
    _assert_close(grads[0], grads[1])


@pytest.mark.parametrize("name", CLASS_NAMES)
def test_calculate_D_matches_tinybig(tb, name):
    for kw in [kw for n, kw in CASES if n == name] or [{}]:
        ours, theirs = _pair(tb, name, kw)
        for m in (1, 4, 7):
            assert ours.calculate_D(m) == theirs.calculate_D(m), (name, kw, m)


@pytest.mark.parametrize("name", CLASS_NAMES)
def test_constructor_signature_name_and_base(tb, name):
    ours_cls, theirs_cls = getattr(rtb.expansion, name), getattr(tb.expansion, name)

    def params(cls):
        return [(p.name, p.kind, p.default) for p in inspect.signature(cls.__init__).parameters.values()]

    assert params(ours_cls) == params(theirs_cls)
    ours, theirs = ours_cls(), theirs_cls()
    assert ours.get_name() == theirs.get_name() == ours.name
    assert ours.device == theirs.device == "cpu"
    assert isinstance(ours, rtb.expansion.transformation) and isinstance(ours, torch.nn.Module)
    assert type(ours).__name__ == type(theirs).__name__ == name


def test_bspline_half_open_intervals_at_knots(tb):
    # h = 0.5: every knot is exact in binary, so both sides compare against identical values and the
    # half-open rule (kept behaviour #23) decides each knot; outside [lo − d·h, hi + d·h) all is 0.
    kw = {"grid_range": (-1, 1), "t": 4, "d": 2}
    ours, theirs = _pair(tb, "bspline_expansion", kw)
    knots = torch.arange(-2, 7) * 0.5 - 1.0  # -2.0 … 2.0
    x = torch.cat([knots, torch.tensor([-2.0001, 2.0, 2.5, -7.0])]).reshape(-1, 1).repeat(1, M).float()
    got = ours(x)
    _assert_close(got, theirs(x.clone()))
    outside = (x[:, 0] < -2.0) | (x[:, 0] >= 2.0)
    assert torch.all(got[outside] == 0)


def test_laguerre_is_fixed_and_differs_from_tinybig(tb):
    x = _x(4)
    ours = rtb.expansion.laguerre_expansion(d=2, alpha=1.0)(x).view(B, M, 2)
    theirs = tb.expansion.laguerre_expansion(d=2, alpha=1.0)(x.clone()).view(B, M, 2)
    # Correct generalised Laguerre, α = 1: L_1 = 2 − x, L_2 = 3 − 3x + x²/2.
    _assert_close(ours[..., 0], 2 - x)
    _assert_close(ours[..., 1], 3 - 3 * x + x * x / 2)
    # tinyBIG's P_1 = x + 1 + α propagates: L_1 = 2 + x, L_2 = 3 + x − x²/2 (defect #21).
    _assert_close(theirs[..., 0], 2 + x)
    _assert_close(theirs[..., 1], 3 + x - x * x / 2)
    assert not torch.allclose(ours, theirs)


@pytest.mark.parametrize("alpha", [0.0, 1.0, 2.5])
def test_laguerre_matches_closed_form(alpha):
    scipy_special = pytest.importorskip("scipy.special")
    d = 5
    x = _x(5, -1.0, 3.0, torch.float64)
    got = rtb.expansion.laguerre_expansion(d=d, alpha=alpha)(x).view(B, M, d)
    for k in range(1, d + 1):
        expected = torch.from_numpy(scipy_special.eval_genlaguerre(k, alpha, x.numpy()))
        torch.testing.assert_close(got[..., k - 1], expected, rtol=1e-10, atol=1e-10)


def test_reciprocal_leaves_input_unchanged_and_matches_tinybig(tb):
    x = torch.tensor([[0.0, 5e-7, -5e-7, 1e-6], [-1e-6, 2e-6, -2e-6, 0.5], [-0.25, 3.0, -0.0, 1e-7]])
    before = x.clone()
    got = rtb.expansion.reciprocal_expansion()(x)
    assert torch.equal(x, before)
    theirs_input = x.clone()
    expected = tb.expansion.reciprocal_expansion()(theirs_input)
    assert not torch.equal(theirs_input, before)  # tinyBIG clamps the caller's tensor (defect #18)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_reciprocal_gradient_zero_on_clamped_entries():
    x = torch.tensor([[0.0, 5e-7, 0.5, -2.0]], requires_grad=True)
    rtb.expansion.reciprocal_expansion()(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([[0.0, 0.0, -4.0, -0.25]]))


@pytest.mark.parametrize("case", CASES + [("laguerre_expansion", {"d": 3, "alpha": 0.5})], ids=_case_id)
def test_float64_input_keeps_float64(tb, case):
    name, kw = case
    x64 = _x(6, dtype=torch.float64)
    got = getattr(rtb.expansion, name)(**kw)(x64)
    assert got.dtype == torch.float64
    theirs = getattr(tb.expansion, name)(**kw)(x64.clone())
    if name in RECURRENCE_FAMILIES:
        # tinyBIG's float32 work buffer silently rounds float64 inputs (defect #16).
        assert theirs.dtype == torch.float32
    ref = _reference64(name, kw, x64)
    if ref is not None:
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def _reference64(name, kw, x):
    """The transcribed reference on the same float64 input, or None for the basic expansions."""
    family = name[: -len("_expansion")]
    if family in ("identity", "reciprocal"):
        return None
    if kw.get("d") == 0 or kw.get("num_interval") == 0:
        return x.new_zeros(B, 0)  # the reference (like the kernels) takes degree >= 1 only
    if family == "taylor":
        return reference_expand(x, "taylor", kw.get("d", 2), [])
    if family == "bspline":
        lo, hi = kw.get("grid_range", (-1, 1))
        return reference_expand(x, "bspline", kw.get("d", 3), [lo, hi, kw.get("t", 5)])
    if family in ("gaussian_rbf", "inverse_quadratic_rbf"):
        lo, hi = kw.get("base_range", (-1, 1))
        return reference_expand(x, family, kw.get("num_interval", 10), [lo, hi, kw.get("epsilon", 1.0)])
    params = {"jacobi": ["alpha", "beta"], "gegenbauer": ["alpha"], "laguerre": ["alpha"]}.get(family, [])
    return reference_expand(x, family, kw.get("d", 2), [kw.get(p, 1.0) for p in params])


def test_degree_zero_gives_empty_expansion():
    x = _x(7)
    for cls in (rtb.expansion.chebyshev_expansion, rtb.expansion.hermite_expansion, rtb.expansion.taylor_expansion):
        e = cls(d=0)
        assert e.calculate_D(M) == 0 and e(x).shape == (B, 0)
    assert rtb.expansion.gaussian_rbf_expansion(num_interval=0)(x).shape == (B, 0)


def test_processing_functions_match_tinybig(tb):
    # Stateless processing functions: same values as tinyBIG's per-call resolution.
    x = _x(8)
    for kw in ({"postprocess_functions": "layer_norm"},
               {"preprocess_functions": [torch.nn.functional.tanh], "postprocess_functions": "sigmoid"},
               {"preprocess_functions": torch.nn.functional.relu}):
        ours, theirs = _pair(tb, "chebyshev_expansion", {"d": 3, **kw})
        _assert_close(ours(x), theirs(x.clone()))


def test_processing_modules_are_registered():
    # Defect #2: in tinyBIG these live in plain lists, invisible to parameters(), state_dict(), .to(), eval().
    norm = torch.nn.LayerNorm(M * 3)
    e = rtb.expansion.legendre_expansion(d=3, postprocess_functions=[norm, "dropout"])
    assert any(p is norm.weight for p in e.parameters())
    assert "postprocess_functions.0.weight" in e.state_dict()
    x = _x(9)
    e.eval()
    assert not e.postprocess_functions[1].training
    torch.testing.assert_close(e(x), norm(rtb.expansion.legendre_expansion(d=3)(x)))  # eval: dropout is identity
    e.to(torch.float64)
    assert norm.weight.dtype == torch.float64 and e(x.double()).dtype == torch.float64


def test_processing_function_configs_and_lazy_batchnorm():
    e = rtb.expansion.chebyshev_expansion(
        d=2, postprocess_function_configs=[{"function_class": "torch.nn.BatchNorm1d"},
                                           {"function_class": "torch.nn.Dropout", "function_parameters": {"p": 0.2}}])
    out = e(_x(10))
    assert out.shape == (B, M * 2)
    bn = e.postprocess_functions[0]
    assert bn.num_features == M * 2 and int(bn.num_batches_tracked) == 1  # one BatchNorm, trained state kept
    assert e.postprocess_functions[1].p == 0.2


def test_buffers_built_at_construction_follow_the_module():
    # Defect #15: knots and centres exist before the first forward and move with .to().
    bs = rtb.expansion.bspline_expansion(grid_range=(-1, 1), t=4, d=2)
    torch.testing.assert_close(bs.grid, torch.arange(-2, 7) * 0.5 - 1.0)
    rbf = rtb.expansion.gaussian_rbf_expansion(base_range=(-2, 3), num_interval=4)
    torch.testing.assert_close(rbf.base, torch.linspace(-2, 3, 4))
    assert bs.to(torch.float64).grid.dtype == torch.float64
    assert dict(bs.state_dict()) == {} and dict(rbf.state_dict()) == {}  # derived, so not checkpointed


def test_rbf_accepts_evenly_spaced_base_only():
    x = _x(11)
    e = rtb.expansion.gaussian_rbf_expansion(num_interval=5, base=torch.linspace(-2, 2, 5))
    assert e.base_range == (-2.0, 2.0)
    torch.testing.assert_close(e(x), rtb.expansion.gaussian_rbf_expansion(base_range=(-2, 2), num_interval=5)(x))
    with pytest.raises(ValueError, match="evenly spaced"):
        rtb.expansion.gaussian_rbf_expansion(num_interval=3, base=[0.0, 0.1, 1.0])
    with pytest.raises(ValueError, match="num_interval"):
        rtb.expansion.gaussian_rbf_expansion(num_interval=3, base=torch.linspace(0, 1, 4))


def test_bad_input_shape_is_reported():
    with pytest.raises(ValueError, match=r"\(b, m\)"):
        rtb.expansion.chebyshev_expansion()(torch.zeros(2, 3, 4))
