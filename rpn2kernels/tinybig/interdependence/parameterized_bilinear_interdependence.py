"""Parameterised bilinear interdependences of the tinyBIG namespace
(tinyBIG: ``tinybig/interdependence/parameterized_bilinear_interdependence.py``; functions.md §5.9).

Instance type: A = X·W·Xᵀ ∈ R^{b×b} with W ∈ R^{m×m} (l = m² for the full W); attribute type:
A = Xᵀ·W·X ∈ R^{m×m} with W ∈ R^{b×b}. The fabricated variants build W from fewer parameters with
tinyBIG's reconciliation formulas (functions.md §3.1): ``lowrank_`` (W = U·V), ``hm_``, ``lphm_``,
``dual_lphm_`` (W = reshape(vec(A) ⊗ vec(B), (n, D)) — tinyBIG's semantics, the default here —
or the paper's A ⊗ B with the extra keyword ``semantics="kronecker"``), and
``random_matrix_adaption_`` (W = diag(λ1)·R1·diag(λ2)·R2ᵀ).

``forward`` never forms the b×b matrix: with W = P·Qᵀ (P = W, Q = I for a full W; the factors for
low-rank and random-matrix W), E = (X·P)(X·Q)ᵀ, so Eᵀ·K = (X·Q)·((X·P)ᵀ·K). With tinyBIG's
attention post-processing (``operator_based_normalize_matrix`` with softmax, mode 'column' or
'row') it runs the masked softmax over chunks of targets (flash-attention order). Any other
post-processing acts on A itself, so forward then builds A as tinyBIG does.

tinyBIG's bilinear heads pass ``mask_zero=True`` to that normaliser, whose keyword is
``mask_zeros``: a TypeError, so no bilinear head runs in tinyBIG (defect 7.1 #1). Here the
misspelled keyword is read as ``mask_zeros`` — the evident intent (masked column softmax ×√n).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from ..module.base_interdependence import interdependence
from ._functional import is_softmax, normalizer_spec, softmax_attention

__all__ = [
    "parameterized_bilinear_interdependence", "lowrank_parameterized_bilinear_interdependence",
    "hm_parameterized_bilinear_interdependence", "lphm_parameterized_bilinear_interdependence",
    "dual_lphm_parameterized_bilinear_interdependence",
    "random_matrix_adaption_parameterized_bilinear_interdependence",
]

SEMANTICS = ("tinybig", "kronecker")


# ---------------------------------------------------------------------------------------------
# W fabrications (tinyBIG's reconciliation formulas; the full reconciliation classes are not part of
# this namespace yet). Each gives calculate_l(n, D), W = forward(n, D, w) and factors(n, D, w) -> (P, Q)
# with W = P·Qᵀ (Q None: W = P).

class _fabrication(nn.Module):
    name = 'fabrication'

    def calculate_l(self, n: int, D: int) -> int:
        raise NotImplementedError

    def _check(self, n: int, D: int, w: Tensor) -> Tensor:
        if w.ndim != 2 or w.numel() != self.calculate_l(n=n, D=D):
            raise ValueError(f"{type(self).__name__}: w must have shape (1, {self.calculate_l(n=n, D=D)}), "
                             f"got {tuple(w.shape)}")
        return w.reshape(-1)

    def factors(self, n: int, D: int, w: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        return self.forward(n=n, D=D, w=w), None

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={getattr(self, k)!r}" for k in ("p", "q", "r", "semantics") if hasattr(self, k))


class _lorr_fabrication(_fabrication):
    """W = U·V, U = reshape(w[:n r], (n, r)), V = reshape(w[n r:], (r, D)) (tinyBIG lorr_reconciliation)."""

    def __init__(self, r: int = 2):
        super().__init__()
        self.r = r

    def calculate_l(self, n, D):
        return self.r * (n + D)

    def factors(self, n, D, w):
        w = self._check(n, D, w)
        U, V = torch.split(w, [self.r * n, self.r * D])
        return U.reshape(n, self.r), V.reshape(self.r, D).t()

    def forward(self, n, D, w, device='cpu', *args, **kwargs):
        P, Q = self.factors(n, D, w)
        return P @ Q.t()


class _kronecker_family(_fabrication):
    """W from a small A (p×q) and B (s×t): tinyBIG reshape(vec(A) ⊗ vec(B), (n, D)) or A ⊗ B."""

    def __init__(self, p: int, q: Optional[int] = None, r: Optional[int] = None, semantics: str = 'tinybig'):
        super().__init__()
        if semantics not in SEMANTICS:
            raise ValueError(f"semantics must be one of {SEMANTICS}, got {semantics!r}")
        self.p, self.q = p, (q if q is not None else p)
        if r is not None:
            self.r = r
        self.semantics = semantics

    def _sizes(self, n, D):
        if n % self.p != 0 or D % self.q != 0:
            raise ValueError(f'The input dimensions {n} and {D} cannot be divided by parameter p {self.p} and q {self.q}')
        return n // self.p, D // self.q

    def _blocks(self, n, D, w) -> Tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(self, n, D, w, device='cpu', *args, **kwargs):
        A, B = self._blocks(n, D, self._check(n, D, w))
        if self.semantics == 'kronecker':
            return torch.kron(A, B)
        return torch.outer(A.reshape(-1), B.reshape(-1)).reshape(n, D)


class _hm_fabrication(_kronecker_family):
    def calculate_l(self, n, D):
        s, t = self._sizes(n, D)
        return self.p * self.q + s * t

    def _blocks(self, n, D, w):
        s, t = self._sizes(n, D)
        A, B = torch.split(w, [self.p * self.q, s * t])
        return A.reshape(self.p, self.q), B.reshape(s, t)


class _lphm_fabrication(_kronecker_family):
    def calculate_l(self, n, D):
        s, t = self._sizes(n, D)
        return self.p * self.q + self.r * (s + t)

    def _blocks(self, n, D, w):
        s, t = self._sizes(n, D)
        A, S, T = torch.split(w, [self.p * self.q, s * self.r, t * self.r])
        return A.reshape(self.p, self.q), S.reshape(s, self.r) @ T.reshape(self.r, t)


class _dual_lphm_fabrication(_kronecker_family):
    def calculate_l(self, n, D):
        s, t = self._sizes(n, D)
        return self.r * (self.p + self.q + s + t)

    def _blocks(self, n, D, w):
        s, t = self._sizes(n, D)
        P, Q, S, T = torch.split(w, [self.p * self.r, self.q * self.r, s * self.r, t * self.r])
        return (P.reshape(self.p, self.r) @ Q.reshape(self.r, self.q),
                S.reshape(s, self.r) @ T.reshape(self.r, t))


class _random_matrix_adaption_fabrication(_fabrication):
    """W = diag(λ1)·A·diag(λ2)·Bᵀ, λ1 = w[:n], λ2 = w[n:], A (n×r), B (D×r) fixed N(0, 1).

    tinyBIG draws A and B at the first call and keeps them as plain attributes; here they are drawn
    at construction as persistent buffers (saved, moved by ``.to()``; defect 7.1 #15)."""

    def __init__(self, n: int, D: int, r: int = 2):
        super().__init__()
        self.r = r
        self.register_buffer('A', torch.randn(n, r))
        self.register_buffer('B', torch.randn(D, r))

    def calculate_l(self, n, D):
        return n + self.r

    def factors(self, n, D, w):
        w = self._check(n, D, w)
        # redrawn when the sizes change, as in tinyBIG (e.g. after a hybrid reassigns b or m)
        if self.A.shape != (n, self.r):
            self.A = torch.randn(n, self.r, device=self.A.device)
        if self.B.shape != (D, self.r):
            self.B = torch.randn(D, self.r, device=self.B.device)
        lambda_1, lambda_2 = torch.split(w, [n, self.r])
        A, B = self.A.to(w.dtype), self.B.to(w.dtype)
        return lambda_1[:, None] * A * lambda_2[None, :], B

    def forward(self, n, D, w, device='cpu', *args, **kwargs):
        P, Q = self.factors(n, D, w)
        return P @ Q.t()


# ---------------------------------------------------------------------------------------------

class parameterized_bilinear_interdependence(interdependence):
    """A = X·W·Xᵀ (instance) or Xᵀ·W·X (attribute), W = reshape(w, (d, d)) (tinyBIG
    ``parameterized_bilinear_interdependence``); applied without forming A (module docstring)."""

    def __init__(
        self,
        b: int, m: int,
        interdependence_type: str = 'instance',
        name: str = 'parameterized_bilinear_interdependence',
        require_parameters: bool = True,
        require_data: bool = True,
        device: str = 'cpu', *args, **kwargs
    ):
        super().__init__(b=b, m=m, name=name, interdependence_type=interdependence_type, require_data=require_data,
                         require_parameters=require_parameters, device=device, *args, **kwargs)
        self.parameter_fabrication = None

    def calculate_b_prime(self, b: int = None):
        return b if b is not None else self.b

    def calculate_m_prime(self, m: int = None):
        return m if m is not None else self.m

    def _d(self) -> int:
        """Side of W: m (instance type) or b (attribute type)."""
        return self.m if self.is_instance_interdependence() else self.b

    def calculate_l(self):
        d = self._d()
        if self.parameter_fabrication is None:
            return d ** 2
        return self.parameter_fabrication.calculate_l(n=d, D=d)

    def _check_w(self, w: Tensor):
        if w is None or w.ndim != 2 or w.numel() != self.calculate_l():
            raise ValueError(f"{type(self).__name__}: w must have shape (1, {self.calculate_l()}), got "
                             f"{None if w is None else tuple(w.shape)}")

    def calculate_W(self, w: Tensor) -> Tensor:
        """The d×d bilinear weight W (d = m for the instance type, b for the attribute type)."""
        self._check_w(w)
        d = self._d()
        if self.parameter_fabrication is None:
            return w.reshape(d, d)
        return self.parameter_fabrication(n=d, D=d, w=w)

    def _factors(self, w: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        self._check_w(w)
        d = self._d()
        if self.parameter_fabrication is None:
            return w.reshape(d, d), None
        return self.parameter_fabrication.factors(n=d, D=d, w=w)

    def calculate_A(self, x: torch.Tensor = None, w: torch.nn.Parameter = None, device: str = 'cpu', *args, **kwargs):
        cached = self._cached_A()
        if cached is not None:
            return cached
        if x is None or x.ndim != 2:
            raise ValueError(f"{type(self).__name__}.calculate_A needs the builder input x (2-D)")
        x = self.pre_process(x=x, device=device)
        W = self.calculate_W(w)
        A = torch.matmul(x.t(), torch.matmul(W.to(x.dtype), x))
        A = self.post_process(x=A, device=device)
        return self._cache_A(A)

    # ------------------------------------------------------------------------------------------
    def _attention_spec(self):
        """None (no post-processing), a normaliser spec for the chunked softmax, or NotImplemented."""
        post = list(self.postprocess_functions)
        if not post:
            return None
        if len(post) != 1:
            return NotImplemented
        spec = normalizer_spec(post[0])
        if spec is None or not is_softmax(spec['operator']) or spec['mode'] not in ('row', 'column'):
            return NotImplemented
        return spec

    def _left_right(self, X: Tensor, w: Tensor) -> Tuple[Tensor, Tensor]:
        """(left, right) with A = left·rightᵀ, for the builder's X given as rows of the A axis."""
        P, Q = self._factors(w)
        P = P.to(X.dtype)
        return X @ P, (X if Q is None else X @ Q.to(X.dtype))

    def _apply_instance(self, x, w, data, device):
        spec = self._attention_spec()
        if spec is NotImplemented or data.ndim != 2 or x is None:
            return NotImplemented
        X = self.pre_process(x.t()).t()  # tinyBIG pre-processes the builder input Xᵀ
        if X.shape[0] != data.shape[0]:
            raise ValueError(f"A has {X.shape[0]} rows but the data has {data.shape[0]} instances")
        left, right = self._left_right(X, w)
        left, right = left.to(data.dtype), right.to(data.dtype)
        if spec is None:
            return right @ (left.t() @ data)
        return softmax_attention(left, right, data, spec['rescale_factor'], spec['mask_zeros'], spec['mode'],
                                 spec['operator'])

    def _apply_attribute(self, x, w, data, device):
        spec = self._attention_spec()
        if spec is NotImplemented or x is None:
            return NotImplemented
        X = self.pre_process(x)
        if X.shape[1] != data.shape[-1]:
            raise ValueError(f"A has {X.shape[1]} rows but the data has {data.shape[-1]} attributes")
        left, right = self._left_right(X.t(), w)
        left, right = left.to(data.dtype), right.to(data.dtype)
        flat = data.reshape(-1, data.shape[-1])
        if spec is None:
            z = (flat @ left) @ right.t()
        else:
            z = softmax_attention(left, right, flat.t(), spec['rescale_factor'], spec['mask_zeros'], spec['mode'],
                                  spec['operator']).t()
        return z.reshape(*data.shape[:-1], z.shape[-1])


class lowrank_parameterized_bilinear_interdependence(parameterized_bilinear_interdependence):
    """W = U·V with U ∈ R^{d×r}, V ∈ R^{r×d} (l = 2·r·d); attention logits in rank r."""

    def __init__(self, r: int = 2, name: str = 'lowrank_parameterized_bilinear_interdependence', *args, **kwargs):
        super().__init__(name=name, *args, **kwargs)
        self.r = r
        self.parameter_fabrication = _lorr_fabrication(r=self.r)


def _check_divisible(obj, p, q):
    d = obj._d()
    assert d % p == 0 and d % q == 0, f"W's side {d} must be divisible by p = {p} and q = {q}"


class hm_parameterized_bilinear_interdependence(parameterized_bilinear_interdependence):
    """W from A (p×q) and B (s×t), s = d/p, t = d/q (l = pq + st). Keyword ``semantics``:
    ``'tinybig'`` (default, W = reshape(vec A ⊗ vec B, (d, d))) or ``'kronecker'`` (W = A ⊗ B)."""

    def __init__(self, p: int, q: int = None, name: str = 'hm_parameterized_bilinear_interdependence', *args,
                 **kwargs):
        semantics = kwargs.pop('semantics', 'tinybig')
        super().__init__(name=name, *args, **kwargs)
        self.p = p
        self.q = q if q is not None else p
        _check_divisible(self, self.p, self.q)
        self.parameter_fabrication = _hm_fabrication(p=self.p, q=self.q, semantics=semantics)


class lphm_parameterized_bilinear_interdependence(parameterized_bilinear_interdependence):
    """As HM with B = S·T (S ∈ R^{s×r}, T ∈ R^{r×t}); l = pq + r(s + t). Keyword ``semantics`` as HM."""

    def __init__(self, r: int, p: int, q: int = None, name: str = 'lphm_parameterized_bilinear_interdependence',
                 *args, **kwargs):
        semantics = kwargs.pop('semantics', 'tinybig')
        super().__init__(name=name, *args, **kwargs)
        self.r = r
        self.p = p
        self.q = q if q is not None else p
        _check_divisible(self, self.p, self.q)
        self.parameter_fabrication = _lphm_fabrication(p=self.p, q=self.q, r=self.r, semantics=semantics)


class dual_lphm_parameterized_bilinear_interdependence(parameterized_bilinear_interdependence):
    """As HM with A = P·Q and B = S·T (rank r each); l = r(p + q + s + t). Keyword ``semantics`` as HM."""

    def __init__(self, r: int, p: int, q: int = None,
                 name: str = 'dual_lphm_parameterized_bilinear_interdependence', *args, **kwargs):
        semantics = kwargs.pop('semantics', 'tinybig')
        super().__init__(name=name, *args, **kwargs)
        self.r = r
        self.p = p
        self.q = q if q is not None else p
        _check_divisible(self, self.p, self.q)
        self.parameter_fabrication = _dual_lphm_fabrication(p=self.p, q=self.q, r=self.r, semantics=semantics)


class random_matrix_adaption_parameterized_bilinear_interdependence(parameterized_bilinear_interdependence):
    """W = diag(λ1)·R1·diag(λ2)·R2ᵀ with fixed N(0, 1) matrices R1, R2 ∈ R^{d×r} (l = d + r), stored as
    the persistent buffers ``parameter_fabrication.A`` and ``.B`` (tinyBIG draws them lazily)."""

    def __init__(self, r: int = 2, name: str = 'random_matrix_adaption_parameterized_bilinear_interdependence',
                 *args, **kwargs):
        super().__init__(name=name, *args, **kwargs)
        self.r = r
        d = self._d()
        self.parameter_fabrication = _random_matrix_adaption_fabrication(n=d, D=d, r=self.r)
