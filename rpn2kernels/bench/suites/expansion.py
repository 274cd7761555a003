"""Expansion family: E1, E2, E3 of bench.md (κ fused with the identity-reconciled linear map).

Implementations of every case, run side by side:

- ``ours``: :func:`rpn2kernels.functional.expand_linear` with the compiled ``cpu`` backend (on CUDA
  the device default, resolved once and recorded). A missing backend raises — never a silent
  fallback to the reference, which would benchmark the reference against itself.
- ``reference``: :func:`rpn2kernels.reference.expansion.expand_linear` (materialises κ(x)).
- ``tinybig``: tinyBIG 0.2.1's algorithm transcribed line by line (functions.md §2.4–2.7, §7.1 #16):
  a default-dtype buffer ``torch.ones(size=[b, m, d+1]).to(device)`` (zeros for Fibonacci, 2·ones for
  Lucas — tinyBIG's own initial values) filled per degree with ``.clone()``d reads, ``[:, :, 1:]``
  sliced and ``.contiguous().view(b, -1)``; Taylor through ``einsum('ba,bc->bac')`` blocks and a
  growing ``torch.cat``; B-spline by Cox–de Boor on the (m, t+2d+1) grid tensor; RBF on a centre
  tensor. The head then builds W from the flat (1, n·D) parameter by the identity reconciliation
  ``w[0:1, :].view(n, D).to(device)`` and calls ``F.linear(κ, W, bias=b)``. One channel, no remainder,
  no output processing: those are not part of the op under test. Laguerre keeps tinyBIG's P_1 =
  x + 1 + α (§7.1 #21): the cost is the same, the values are not, so that one is not value-checked.
- ``peer``: the materialise-then-``F.linear`` KAN layer. Chebyshev/polynomials ChebyKAN-style (T_k by
  the three-term recurrence with torch ops into a list, ``torch.stack``, ``F.linear``; no ``tanh``,
  so the values match); RBF FastKAN-style (one broadcast ``exp`` over a centre tensor); B-spline
  efficient-KAN-style (its ``b_splines`` Cox–de Boor, which is also what tinyBIG copied). For E2 the
  peer is the materialised reference (no KAN library does ordered Taylor monomials), so no separate
  row is timed.
- ``floor``: the three dense GEMMs alone — ``F.linear(K, W)`` with a pre-materialised K (B×D) that
  requires grad, so forward is K·Wᵀ and backward G·W and Gᵀ·K, and nothing else.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

from ..runner import Case, Impl, Prepared, Target

QUICK_NOTE = ("--quick shapes: E1/E3 B=1024, m=n=128 (full: B=4096, m=n=256); E2 B=64, m=256, n=64, "
              "D=65,792 (full: m=784, D=615,440); 1 warm-up round and 5 runs (full: 3 and 10)")

#: E3: every other basis of the family at E1's shape. Degree 3 everywhere; for the RBFs the degree is
#: the number of centres K = 3 (D = 3m like E1); the B-spline has degree 3 on intervals=2, K = 5
#: (D = 5m: its smallest cubic grid is K = 4, and 2 intervals keep the support realistic).
E3_BASES = {
    "legendre": {},
    "jacobi": {"alpha": 1.0, "beta": 1.0},
    "gegenbauer": {"alpha": 1.0},
    "hermite": {},
    "laguerre": {"alpha": 1.0},
    "bessel": {},
    "reverse_bessel": {},
    "fibonacci": {},
    "lucas": {},
    "gaussian_rbf": {"lo": -1.0, "hi": 1.0, "epsilon": 1.0},
    "inverse_quadratic_rbf": {"lo": -1.0, "hi": 1.0, "epsilon": 1.0},
    "bspline": {"lo": -1.0, "hi": 1.0, "intervals": 2},
}
DEGREE = 3

SHAPES = {  # (B, m, n)
    "full": {"E1": (4096, 256, 256), "E2": (64, 784, 64)},
    "quick": {"E1": (1024, 128, 128), "E2": (64, 256, 64)},
    "tiny": {"E1": (64, 16, 8), "E2": (8, 12, 4)},
}


# ------------------------------------------------------------------------------------------------
# ours


def resolve_ours_backend(device: torch.device) -> str:
    """The backend "ours" runs on: ``cpu`` on CPU, the device default on CUDA. Raises a clear error
    when it is unavailable (or would be the reference) instead of timing the reference twice."""
    try:
        import rpn2kernels  # noqa: F401
        from rpn2kernels import backends
    except Exception as error:
        raise RuntimeError(f"the expansion benchmark needs rpn2kernels importable: {error}") from error
    wanted = "cpu" if device.type == "cpu" else None
    try:
        chosen = backends.select_backend("expand_linear", device, torch.float32, wanted)
    except backends.BackendUnavailable as error:
        raise RuntimeError(
            f"the expansion benchmark measures the compiled kernels, which cannot run here: {error}. "
            "Build the extension (`pip install --no-build-isolation -e .`).") from error
    if chosen == "reference":
        raise RuntimeError(f"the {device.type} default backend of expand_linear resolved to 'reference' "
                           "(RPN2K_BACKEND set, or no compiled kernels); the benchmark refuses to time it as ours")
    return chosen


def _ours(basis: str, degree: int, kw: Dict, backend: str) -> Impl:
    from rpn2kernels import functional

    def setup(inp):
        x, w, b = inp["x"], inp["weight"], inp["bias"]
        return Prepared(lambda: functional.expand_linear(x, w, b, basis, degree, backend=backend, **kw),
                        {"x": x, "weight": w, "bias": b}, params=("weight", "bias"))

    return Impl("ours", f"rpn2kernels.functional.expand_linear(backend={backend!r})", setup, role="ours")


def _reference(basis: str, degree: int, params: List[float]) -> Impl:
    from rpn2kernels.reference import expansion as reference

    def setup(inp):
        x, w, b = inp["x"], inp["weight"], inp["bias"]
        return Prepared(lambda: reference.expand_linear(x, w, b, basis, degree, params),
                        {"x": x, "weight": w, "bias": b}, params=("weight", "bias"))

    return Impl("reference", "rpn2kernels.reference.expansion.expand_linear (materialises κ(x))", setup,
                role="reference")


# ------------------------------------------------------------------------------------------------
# tinyBIG-equivalent: the expansion classes' forward bodies, transcribed


def _tinybig_polynomial(x: torch.Tensor, basis: str, d: int, params: Sequence[float], device) -> torch.Tensor:
    # tinybig/expansion/recursive_expansion.py:364-369, 518-527; orthogonal_polynomial_expansion.py
    if basis == "fibonacci":
        expansion = torch.zeros(size=[x.size(0), x.size(1), d + 1]).to(device)
        if d > 0:
            expansion[:, :, 1] = torch.ones(size=[x.size(0), x.size(1)]).to(device)
    elif basis == "lucas":
        expansion = 2 * torch.ones(size=[x.size(0), x.size(1), d + 1]).to(device)
        if d > 0:
            expansion[:, :, 1] = x
    else:
        expansion = torch.ones(size=[x.size(0), x.size(1), d + 1]).to(device)
        if d > 0:
            if basis == "jacobi":
                alpha, beta = params
                expansion[:, :, 1] = ((alpha - beta) + (alpha + beta + 2) * x) / 2
            elif basis == "gegenbauer":
                expansion[:, :, 1] = 2 * params[0] * x
            elif basis == "laguerre":
                expansion[:, :, 1] = x + 1.0 + params[0]  # tinyBIG's P_1 (functions.md §7.1 #21)
            elif basis in ("bessel", "reverse_bessel"):
                expansion[:, :, 1] = x + 1
            else:  # chebyshev, legendre, hermite
                expansion[:, :, 1] = x
    for n in range(2, d + 1):
        if basis == "chebyshev":
            expansion[:, :, n] = 2 * x * expansion[:, :, n - 1].clone() - expansion[:, :, n - 2].clone()
        elif basis == "jacobi":
            alpha, beta = params
            coeff_1 = 2 * n * (n + alpha + beta) * (2 * n + alpha + beta - 2)
            coeff_2 = (2 * n + alpha + beta - 1) * (2 * n + alpha + beta) * (2 * n + alpha + beta - 2)
            coeff_3 = (2 * n + alpha + beta - 1) * (alpha ** 2 - beta ** 2)
            coeff_4 = 2 * (n + alpha - 1) * (n + beta - 1) * (2 * n + alpha + beta)
            expansion[:, :, n] = ((coeff_2 / coeff_1) * x + coeff_3 / coeff_1) * expansion[:, :, n - 1].clone() \
                - (coeff_4 / coeff_1) * expansion[:, :, n - 2].clone()
        elif basis == "hermite":
            expansion[:, :, n] = x * expansion[:, :, n - 1].clone() - (n - 1) * expansion[:, :, n - 2].clone()
        elif basis == "laguerre":
            alpha = params[0]
            expansion[:, :, n] = (2 * n - 1 + alpha - x) / n * expansion[:, :, n - 1].clone() \
                - (n - 1 + alpha) / n * expansion[:, :, n - 2].clone()
        elif basis == "legendre":
            expansion[:, :, n] = (2 * n - 1) / n * x * expansion[:, :, n - 1].clone() \
                - (n - 1) / n * expansion[:, :, n - 2].clone()
        elif basis == "gegenbauer":
            alpha = params[0]
            expansion[:, :, n] = (n - 1 + alpha) / n * 2 * x * expansion[:, :, n - 1].clone() \
                - (n - 2 + 2 * alpha) / n * expansion[:, :, n - 2].clone()
        elif basis == "bessel":
            expansion[:, :, n] = (2 * n - 1) * x * expansion[:, :, n - 1].clone() + expansion[:, :, n - 2].clone()
        elif basis == "reverse_bessel":
            expansion[:, :, n] = (2 * n - 1) * expansion[:, :, n - 1].clone() + x * x * expansion[:, :, n - 2].clone()
        elif basis in ("fibonacci", "lucas"):
            expansion[:, :, n] = x * expansion[:, :, n - 1].clone() + expansion[:, :, n - 2].clone()
        else:
            raise ValueError(basis)
    return expansion[:, :, 1:].contiguous().view(x.size(0), -1)


def _tinybig_taylor(x: torch.Tensor, d: int, device) -> torch.Tensor:
    # tinybig/expansion/polynomial_expansion.py:155-161
    x_powers = torch.ones(size=[x.size(0), 1]).to(device)
    expansion = torch.Tensor([]).to(device)
    for i in range(1, d + 1):
        x_powers = torch.einsum('ba,bc->bac', x_powers.clone(), x).view(x_powers.size(0), x_powers.size(1) * x.size(1))
        expansion = torch.cat((expansion, x_powers), dim=1)
    return expansion


def _tinybig_bspline_grid(m: int, params: Sequence[float], d: int, device) -> torch.Tensor:
    # tinybig/expansion/recursive_expansion.py:190-191 (built on the first call, then cached on the object)
    lo, hi, t = params[0], params[1], int(params[2])
    h = (hi - lo) / t
    return torch.Tensor((torch.arange(-d, t + d + 1) * h + lo).expand(m, -1).contiguous()).to(device)


def _cox_de_boor(x: torch.Tensor, grid: torch.Tensor, d: int) -> torch.Tensor:
    # tinybig/expansion/recursive_expansion.py:222-228 (= efficient-KAN's KANLinear.b_splines)
    x = x.unsqueeze(-1)
    bases = ((x >= grid[:, :-1]) & (x < grid[:, 1:])).to(x.dtype)
    for k in range(1, d + 1):
        bases = (((x - grid[:, : -(k + 1)]) / (grid[:, k:-1] - grid[:, : -(k + 1)]) * bases[:, :, :-1]) +
                 ((grid[:, k + 1:] - x) / (grid[:, k + 1:] - grid[:, 1:(-k)]) * bases[:, :, 1:]))
    return bases


def _rbf_centres(params: Sequence[float], count: int, device) -> torch.Tensor:
    # tinybig/expansion/rbf_expansion.py:128 (cached on the object after the first call)
    return torch.Tensor(torch.linspace(params[0], params[1], count)).to(device)


def _rbf(x: torch.Tensor, basis: str, base: torch.Tensor, epsilon: float) -> torch.Tensor:
    # tinybig/expansion/rbf_expansion.py:155 and :257 (FastKAN's RadialBasisFunction is the same op)
    if basis == "gaussian_rbf":
        return torch.exp(-((x[..., None] - base) * epsilon) ** 2).view(x.size(0), -1)
    return (1 / (1 + ((x[..., None] - base) * epsilon) ** 2)).view(x.size(0), -1)


def _tinybig(basis: str, degree: int, params: List[float], m: int, n: int, D: int, device) -> Impl:
    # Structure-derived caches (grid, centres) are built once, as tinyBIG does on its first forward.
    grid = _tinybig_bspline_grid(m, params, degree, device) if basis == "bspline" else None
    base = _rbf_centres(params, degree, device) if basis in ("gaussian_rbf", "inverse_quadratic_rbf") else None

    def kappa(x):
        if basis == "taylor":
            return _tinybig_taylor(x, degree, device)
        if basis == "bspline":
            return _cox_de_boor(x, grid, degree).contiguous().view(x.size(0), -1)
        if base is not None:
            return _rbf(x, basis, base, params[2])
        return _tinybig_polynomial(x, basis, degree, params, device)

    def setup(inp):
        x, b = inp["x"], inp["bias"]
        # tinyBIG's parameter is the flat (channels, l) = (1, n·D) tensor; it shares the weight's
        # storage here so no extra memory is allocated and its storage is recognised as a parameter.
        w = inp["weight"].detach().reshape(1, -1).requires_grad_()

        def forward():
            kappa_x = kappa(x)
            w_chunk = w[0:1, :]                       # base_head.calculate_phi_w
            phi_w = w_chunk.view(n, D).to(device)     # identity_reconciliation.forward
            return F.linear(kappa_x, phi_w, bias=b)  # base_head.calculate_inner_product

        def grads():
            out = {"x": x.grad, "bias": b.grad}
            if w.grad is not None:
                out["weight"] = w.grad.view(n, D)
            return {k: v for k, v in out.items() if v is not None}

        return Prepared(forward, {"x": x, "w": w, "bias": b}, params=("w", "bias"), canonical_grads=grads)

    checked = basis != "laguerre"
    return Impl("tinybig", f"tinyBIG 0.2.1 {basis} expansion + identity reconciliation + F.linear (transcribed)",
                setup, check=checked,
                check_note="" if checked else "tinyBIG's Laguerre P_1 = x+1+α differs by design (§7.1 #21)")


# ------------------------------------------------------------------------------------------------
# peer: materialise the basis, then F.linear


def _peer_polynomial_terms(x: torch.Tensor, basis: str, degree: int, params: Sequence[float]) -> List[torch.Tensor]:
    """[P_1, …, P_degree] by the three-term recurrence (functions.md §2.5), ChebyKAN-layer style."""
    if basis == "jacobi":
        a, b = params
        p0, p1 = torch.ones_like(x), ((a - b) + (a + b + 2) * x) / 2
    elif basis == "gegenbauer":
        p0, p1 = torch.ones_like(x), 2 * params[0] * x
    elif basis == "laguerre":
        p0, p1 = torch.ones_like(x), 1 + params[0] - x
    elif basis in ("bessel", "reverse_bessel"):
        p0, p1 = torch.ones_like(x), x + 1
    elif basis == "fibonacci":
        p0, p1 = torch.zeros_like(x), torch.ones_like(x)
    elif basis == "lucas":
        p0, p1 = 2 * torch.ones_like(x), x
    else:
        p0, p1 = torch.ones_like(x), x
    terms = [p0, p1]
    for k in range(2, degree + 1):
        q1, q2 = terms[-1], terms[-2]
        if basis == "chebyshev":
            terms.append(2 * x * q1 - q2)
        elif basis == "legendre":
            terms.append(((2 * k - 1) * x * q1 - (k - 1) * q2) / k)
        elif basis == "jacobi":
            a, b = params
            s = 2 * k + a + b
            c1 = 2 * k * (k + a + b) * (s - 2)
            terms.append(((s - 1) * s * (s - 2) / c1 * x + (s - 1) * (a * a - b * b) / c1) * q1
                         - 2 * (k + a - 1) * (k + b - 1) * s / c1 * q2)
        elif basis == "gegenbauer":
            a = params[0]
            terms.append((2 * (k - 1 + a) * x * q1 - (k - 2 + 2 * a) * q2) / k)
        elif basis == "hermite":
            terms.append(x * q1 - (k - 1) * q2)
        elif basis == "laguerre":
            a = params[0]
            terms.append(((2 * k - 1 + a - x) * q1 - (k - 1 + a) * q2) / k)
        elif basis == "bessel":
            terms.append((2 * k - 1) * x * q1 + q2)
        elif basis == "reverse_bessel":
            terms.append((2 * k - 1) * q1 + x * x * q2)
        else:  # fibonacci, lucas
            terms.append(x * q1 + q2)
    return terms[1:]


def _peer(basis: str, degree: int, params: List[float], m: int, device) -> Impl:
    grid = _tinybig_bspline_grid(m, params, degree, device) if basis == "bspline" else None
    base = _rbf_centres(params, degree, device) if basis in ("gaussian_rbf", "inverse_quadratic_rbf") else None

    def basis_matrix(x):
        if grid is not None:
            return _cox_de_boor(x, grid, degree).reshape(x.size(0), -1)
        if base is not None:
            return _rbf(x, basis, base, params[2])
        return torch.stack(_peer_polynomial_terms(x, basis, degree, params), dim=-1).reshape(x.size(0), -1)

    def setup(inp):
        x, w, b = inp["x"], inp["weight"], inp["bias"]
        return Prepared(lambda: F.linear(basis_matrix(x), w, b), {"x": x, "weight": w, "bias": b},
                        params=("weight", "bias"))

    style = ("efficient-KAN b_splines" if grid is not None else "FastKAN RBF" if base is not None
             else "ChebyKAN-style recurrence + torch.stack")
    return Impl("peer", f"materialised basis ({style}) + F.linear", setup)


# ------------------------------------------------------------------------------------------------
# floor: the three dense GEMMs alone


def _floor(basis: str, degree: int, params: List[float]) -> Impl:
    from rpn2kernels.reference import expansion as reference

    def setup(inp):
        with torch.no_grad():
            K = reference.expand(inp["x"].detach(), basis, degree, params)
        K.requires_grad_()
        w = inp["weight"]
        return Prepared(lambda: F.linear(K, w), {"K": K, "weight": w}, params=("weight",))

    return Impl("floor", "F.linear(K, W) on a pre-materialised K: X_K·Wᵀ, G·W, Gᵀ·X_K and nothing else",
                setup, role="floor", check=False, check_note="the floor computes K·Wᵀ without κ or bias")


# ------------------------------------------------------------------------------------------------
# Cases


def _make_inputs(B: int, m: int, n: int, D: int, seed: int):
    def make(device: torch.device) -> Dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        # x in (-1, 1): inside every basis's natural domain and the B-spline/RBF grids, so no case is
        # flattered by zero features; W scaled like an initialised layer (1/√D).
        x = (torch.rand(B, m, generator=g) * 2 - 1).to(device).requires_grad_()
        w = (torch.randn(n, D, generator=g) / D ** 0.5).to(device).requires_grad_()
        b = (torch.randn(n, generator=g) * 0.1).to(device).requires_grad_()
        grad_out = torch.randn(B, n, generator=g).to(device)
        return {"x": x, "weight": w, "bias": b, "grad_out": grad_out}

    return make


def _case(cid: str, basis: str, kw: Dict, shape, backend: str, device, seed: int) -> Case:
    from rpn2kernels.basis import basis_arguments, expansion_width

    B, m, n = shape
    basis, degree, params = basis_arguments(basis, DEGREE if basis != "taylor" else 2, **kw)
    D = expansion_width(basis, degree, params, m)
    impls = [_ours(basis, degree, kw, backend), _reference(basis, degree, params),
             _tinybig(basis, degree, params, m, n, D, device)]
    if basis != "taylor":
        impls.append(_peer(basis, degree, params, m, device))
    impls.append(_floor(basis, degree, params))
    meta = {"basis": basis, "degree": degree, "params": params, "B": B, "m": m, "n": n, "D": D,
            "dtype": "float32", "backend": backend}
    if basis == "taylor":
        weight_bytes = n * D * 4
        return Case(
            name=f"{cid}-{basis}", id=cid,
            description=f"Taylor degree {degree} (tinyBIG block layout, D = m + m² = {D}), B={B}, m={m}, n={n}, fwd+bwd",
            make_inputs=_make_inputs(B, m, n, D, seed), impls=impls, bound="bandwidth",
            work=4.0 * weight_bytes, secondary_work=3 * 2.0 * B * D * n,
            work_note="bytes: three passes over W (fwd, dx, dW) + writing dW, 4·n·D·4 (bench.md: the floor is "
                      "'three GEMM passes over the weight plus allocating dW'); secondary_work: the FLOP of the "
                      "three dense GEMMs, 3·2·B·D·n, which the fused degree-2 identity also performs "
                      "(b·n·m² MAC per pass). The peer is the materialised reference, so it is not timed twice",
            targets=[
                Target(f"{cid}.tinybig_speedup", "≥ 3× tinyBIG-equivalent", "speedup", "tinybig", 3.0),
                Target(f"{cid}.saved_vs_tinybig", "saved bytes ≥ 20× smaller than tinyBIG-equivalent",
                       "saved_fraction", "tinybig", 1 / 20),
            ],
            meta={**meta, "peer": "reference (materialised)"})
    targets = [Target(f"{cid}.floor", "within 1.3× of the three dense GEMMs alone", "floor", "floor", 1.3)]
    if cid == "E1":
        targets += [
            Target(f"{cid}.peer_speedup", "≥ 1.5× the peer (materialise + F.linear, ChebyKAN style)", "speedup",
                   "peer", 1.5),
            Target(f"{cid}.tinybig_speedup", "≥ 2× tinyBIG-equivalent", "speedup", "tinybig", 2.0),
            Target(f"{cid}.saved_vs_peer", "saved bytes ≤ 1/3 of the peer", "saved_fraction", "peer", 1 / 3),
        ]
    else:
        targets += [
            Target(f"{cid}.tinybig_speedup", "≥ 2× tinyBIG-equivalent", "speedup", "tinybig", 2.0),
            Target(f"{cid}.saved_vs_tinybig", f"saved bytes ≤ 1/degree (1/{degree}) of tinyBIG-equivalent",
                   "saved_fraction", "tinybig", 1 / degree),
        ]
    return Case(
        name=f"{cid}-{basis}", id=cid,
        description=f"{basis} degree {degree} params {params} (K = {D // m}, D = {D}), B={B}, m={m}, n={n}, fwd+bwd",
        make_inputs=_make_inputs(B, m, n, D, seed), impls=impls, bound="compute",
        work=3 * 2.0 * B * D * n,
        work_note="FLOP of the three dense GEMMs (X_K·Wᵀ, G·W, Gᵀ·X_K), 3·2·B·D·n; the expansion's elementwise "
                  "work is not counted, so the fraction is of useful GEMM work",
        targets=targets, meta=meta)


def cases(quick: bool, device: Optional[torch.device] = None, tiny: bool = False,
          bases: Optional[Sequence[str]] = None) -> List[Case]:
    """E1, E2 and E3 (one case per basis). ``tiny`` is for the runner's unit test; ``bases`` keeps
    only cases of those bases (``chebyshev`` = E1, ``taylor`` = E2)."""
    device = torch.device(device or "cpu")
    backend = resolve_ours_backend(device)
    shapes = SHAPES["tiny" if tiny else "quick" if quick else "full"]
    wanted = [("E1", "chebyshev", {}), ("E2", "taylor", {})] + [("E3", b, kw) for b, kw in E3_BASES.items()]
    out = []
    for seed, (cid, basis, kw) in enumerate(wanted):
        if bases is not None and basis not in bases:
            continue
        shape = shapes["E2"] if cid == "E2" else shapes["E1"]
        out.append(_case(cid, basis, kw, shape, backend, device, seed))
    return out


def suite_info(device: torch.device) -> Dict[str, object]:
    return {
        "ours_backend": resolve_ours_backend(device),
        "peers": {
            "ChebyKAN-style layer": "transcribed here (recurrence + torch.stack + F.linear, no tanh); no package",
            "FastKAN RBF / efficient-KAN B-spline": "transcribed here; no package",
            "tinyBIG": "0.2.1 algorithm transcribed in rpn2kernels/bench/suites/expansion.py (not installed)",
        },
        "E3_parameters": {b: {"degree": DEGREE, **kw} for b, kw in E3_BASES.items()},
        "bspline_note": "degree 3 on intervals=2 -> K = 5 features per attribute (D = 5m); the RBFs use K = 3 "
                        "centres and the polynomials degree 3 (D = 3m, as E1)",
    }


__all__ = ["cases", "suite_info", "QUICK_NOTE", "E3_BASES", "SHAPES", "resolve_ours_backend"]
