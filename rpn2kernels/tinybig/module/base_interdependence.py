"""``interdependence``: base class of the interdependence functions ξ of the tinyBIG namespace
(tinyBIG: ``tinybig/module/base_interdependence.py``; functions.md §1.3, §5.1).

An attribute interdependence builds A ∈ R^{m×m′} from the batch X ∈ R^{b×m} and is applied as
data·A; an instance interdependence builds A ∈ R^{b×b′} from Xᵀ and is applied as Aᵀ·data
(z_v = Σ_u A[u, v]·data_u). ``calculate_A`` returns A as in tinyBIG; ``forward`` applies the
operator without building A wherever the subclass has a structured application (chain filters,
graph SpMM, factorised bilinear forms, edge attention) and falls back to tinyBIG's dense product
otherwise.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from .base_function import function, instantiate_functions, apply_functions

__all__ = ["interdependence", "INSTANCE_TYPES", "ATTRIBUTE_TYPES"]

INSTANCE_TYPES = ('row', 'left', 'instance', 'instance_interdependence')
ATTRIBUTE_TYPES = ('column', 'right', 'attribute', 'attribute_interdependence')


class interdependence(nn.Module, function):
    """ξ: builds an attribute (m×m′) or instance (b×b′) interdependence matrix and applies it.

    Same constructor keywords, attributes and methods as tinyBIG's ``interdependence``.
    Differences (docs/tinybig-differences.md):

    * ``interdependence_type`` also accepts ``'row'`` (instance) and ``'column'`` (attribute),
      which tinyBIG's setter rejects although its other code paths test for them (7.1 #25).
    * pre-/post-processing functions are resolved once into registered sub-modules (7.1 #2, #3).
    * the cached matrix ``A`` is a non-persistent buffer: it follows ``.to()`` and is not saved.
    * ``forward`` applies the operator in the data's dtype on the data's device without forming
      A where the subclass can (the ``device=`` argument is accepted and does not move data);
      a data-independent instance interdependence does not need ``x``; instance
      interdependences also accept data of shape (batch, b, F) and act on its middle axis (the
      (batch, L, m) layout of chain heads), attribute ones act on the last axis.
    """

    #: constructor keywords (besides b, m, name, type, flags, device) that :meth:`to_config` records
    _config_keys: Tuple[str, ...] = ()

    def __init__(
        self,
        b: int, m: int,
        name: str = 'base_interdependency',
        interdependence_type: str = 'attribute',
        require_data: bool = True,
        require_parameters: bool = False,
        preprocess_functions=None,
        postprocess_functions=None,
        preprocess_function_configs=None,
        postprocess_function_configs=None,
        device: str = 'cpu',
        *args, **kwargs
    ):
        nn.Module.__init__(self)
        function.__init__(self, name=name, device=device)
        self.interdependence_type = interdependence_type
        self.b = b
        self.m = m
        self.require_data = require_data
        self.require_parameters = require_parameters
        self.preprocess_functions = instantiate_functions(preprocess_functions, preprocess_function_configs, device)
        self.postprocess_functions = instantiate_functions(postprocess_functions, postprocess_function_configs, device)
        self._function_configs = {
            "preprocess_function_configs": preprocess_function_configs if preprocess_functions is None else None,
            "postprocess_function_configs": postprocess_function_configs if postprocess_functions is None else None,
        }
        self.register_buffer('A', None, persistent=False)

    # ------------------------------------------------------------------------------------------
    @property
    def interdependence_type(self):
        return self._interdependence_type

    @interdependence_type.setter
    def interdependence_type(self, value):
        allowed_values = list(INSTANCE_TYPES + ATTRIBUTE_TYPES)
        if value not in allowed_values:
            raise ValueError(f"Invalid value for interdependence_type {value!r}. Allowed values are: {allowed_values}")
        self._interdependence_type = value

    def is_instance_interdependence(self) -> bool:
        return self.interdependence_type in INSTANCE_TYPES

    def is_attribute_interdependence(self) -> bool:
        return self.interdependence_type in ATTRIBUTE_TYPES

    def check_A_shape_validity(self, A: torch.Tensor):
        if A is None:
            raise ValueError("A must be provided")
        if self.is_instance_interdependence():
            assert self.b is not None
            assert A.shape == (self.b, self.calculate_b_prime(b=self.b))
        else:
            assert self.m is not None
            assert A.shape == (self.m, self.calculate_m_prime(m=self.m))

    def get_A(self):
        if self.A is None:
            warnings.warn("The A matrix is None...")
            return None
        return self.A

    def get_b(self):
        return self.b

    def get_m(self):
        return self.m

    def pre_process(self, x: torch.Tensor, device='cpu', *args, **kwargs):
        return apply_functions(x, self.preprocess_functions)

    def post_process(self, x: torch.Tensor, device='cpu', *args, **kwargs):
        from ..interdependence._functional import apply_post

        return apply_post(x, self.postprocess_functions)

    def to_config(self) -> Dict[str, Any]:
        params: Dict[str, Any] = {"b": self.b, "m": self.m, "name": self.name,
                                  "interdependence_type": self.interdependence_type,
                                  "require_data": self.require_data, "require_parameters": self.require_parameters,
                                  "device": self.device}
        params.update({k: getattr(self, k) for k in self._config_keys})
        params.update({k: v for k, v in self._function_configs.items() if v is not None})
        return {"function_class": f"{type(self).__module__}.{type(self).__name__}", "function_parameters": params}

    def calculate_l(self):
        return 0

    def calculate_b_prime(self, b: int = None):
        b = b if b is not None else self.b
        if not self.is_instance_interdependence():
            warnings.warn("The interdependence_type is not about the instances, its b dimension will not be changed...")
        return b

    def calculate_m_prime(self, m: int = None):
        m = m if m is not None else self.m
        if not self.is_attribute_interdependence():
            warnings.warn("The interdependence_type is not about the attributes, its m dimension will not be changed...")
        return m

    # ------------------------------------------------------------------------------------------
    def calculate_A(self, x: torch.Tensor = None, w: torch.nn.Parameter = None, device: str = 'cpu', *args, **kwargs):
        """A (m×m′ attribute, b×b′ instance); x is the builder input: X (b×m) for the attribute
        type, Xᵀ (m×b) for the instance type, as tinyBIG's forward passes it."""
        raise NotImplementedError(f"{type(self).__name__} must implement calculate_A(x, w, device)")

    def _cache_A(self, A: torch.Tensor) -> torch.Tensor:
        if not self.require_data and not self.require_parameters and self.A is None:
            self.A = A
        return A

    def _cached_A(self) -> Optional[torch.Tensor]:
        if not self.require_data and not self.require_parameters and self.A is not None:
            return self.A
        return None

    # Structured applications: subclasses return the result, or NotImplemented for the dense path.
    def _apply_instance(self, x, w, data, device):
        """Aᵀ·data over the instance axis (axis −2 of a 2-D (b, F) or 3-D (batch, b, F) tensor)."""
        return NotImplemented

    def _apply_attribute(self, x, w, data, device):
        """data·A over the last axis."""
        return NotImplemented

    def forward(self, x: torch.Tensor = None, w: torch.nn.Parameter = None, kappa_x: torch.Tensor = None,
                device: str = 'cpu', *args, **kwargs):
        """ξ applied to ``kappa_x`` (or to ``x`` when kappa_x is None): Aᵀ·data for the instance
        type, data·A for the attribute type, with A built from x (and w)."""
        if self.require_data and (x is None or x.ndim != 2):
            raise ValueError(f"{type(self).__name__} requires the data batch x of shape (b, m), got "
                             f"{None if x is None else tuple(x.shape)}")
        if self.require_parameters and (w is None or w.ndim != 2):
            raise ValueError(f"{type(self).__name__} requires the parameter row w of shape (1, l), got "
                             f"{None if w is None else tuple(w.shape)}")
        data = kappa_x if kappa_x is not None else x
        if data is None:
            raise ValueError(f"{type(self).__name__}.forward needs the data to apply the interdependence to "
                             "(x or kappa_x)")
        if self.is_instance_interdependence():
            if data.ndim not in (2, 3):
                raise ValueError(f"instance interdependence data must have shape (b, F) or (batch, b, F), "
                                 f"got {tuple(data.shape)}")
            out = self._apply_instance(x, w, data, device)
            if out is NotImplemented:
                A = self.calculate_A(x.transpose(0, 1) if x is not None else None, w, device=device)
                out = self._dense_instance(A, data)
            return out
        if data.ndim < 2:
            raise ValueError(f"attribute interdependence data must have at least 2 dims, got {tuple(data.shape)}")
        out = self._apply_attribute(x, w, data, device)
        if out is NotImplemented:
            A = self.calculate_A(x, w, device=device)
            out = self._dense_attribute(A, data)
        return out

    @staticmethod
    def _dense_instance(A: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        if A.size(0) != data.size(-2):
            raise ValueError(f"A has {A.size(0)} rows but the data has {data.size(-2)} instances")
        A = A.to(device=data.device, dtype=data.dtype)
        if A.is_sparse or data.is_sparse:
            if data.ndim == 3:
                batch, b, f = data.shape
                flat = data.permute(1, 0, 2).reshape(b, batch * f)
                return torch.sparse.mm(A.t(), flat).reshape(-1, batch, f).permute(1, 0, 2)
            return torch.sparse.mm(A.t(), data)
        return torch.matmul(A.t(), data)

    @staticmethod
    def _dense_attribute(A: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        if A.size(0) != data.size(-1):
            raise ValueError(f"A has {A.size(0)} rows but the data has {data.size(-1)} attributes")
        A = A.to(device=data.device, dtype=data.dtype)
        if A.is_sparse or data.is_sparse:
            flat = data.reshape(-1, data.size(-1))
            return torch.sparse.mm(flat, A).reshape(*data.shape[:-1], A.size(1))
        return torch.matmul(data, A)

    def extra_repr(self) -> str:
        return ", ".join([f"name={self.name!r}", f"b={self.b}", f"m={self.m}",
                          f"interdependence_type={self.interdependence_type!r}"]
                         + [f"{k}={getattr(self, k)!r}" for k in self._config_keys])
