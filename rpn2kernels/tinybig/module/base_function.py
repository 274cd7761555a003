"""Processing-function lists of the tinyBIG namespace (tinyBIG: ``tinybig/module/base_function.py``
and ``config.instantiation_functions``).

tinyBIG keeps pre-/post-processing, output-processing and activation functions in plain Python
lists and resolves string names on every call. That loses trained state (defect 7.1 #2: a LayerNorm
in a list is not a sub-module, so it is neither trained, saved, moved nor switched to eval) and
re-creates modules per call (defect #3: ``'dropout'`` always in training mode, a fresh untrained
BatchNorm each call). Here every entry is resolved once, at construction, into an ``nn.Module`` that
lives in an ``nn.ModuleList`` of its owner.
"""
from __future__ import annotations

import functools
import importlib
from typing import Any, Callable, Iterable, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["function", "CallableModule", "LastDimLayerNorm", "instantiate_functions", "apply_functions",
           "get_obj_from_str"]


def get_obj_from_str(path: str) -> Any:
    """``'torch.nn.functional.sigmoid'`` -> the object it names (tinyBIG ``config.get_obj_from_str``)."""
    module, _, attr = path.rpartition(".")
    if not module:
        raise ValueError(f"expected a dotted path such as 'torch.nn.functional.sigmoid', got {path!r}")
    return getattr(importlib.import_module(module), attr)


class CallableModule(nn.Module):
    """Holds a plain callable so that it can sit in a ModuleList next to stateful modules."""

    def __init__(self, func: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.func = func

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.func(x)

    def extra_repr(self) -> str:
        return getattr(self.func, "__qualname__", repr(self.func))


class LastDimLayerNorm(nn.Module):
    """What tinyBIG's ``'layer_norm'`` computes: F.layer_norm over the last dimension, no affine."""

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, [x.size(-1)], eps=self.eps)


_LAZY_BATCH_NORM = {
    nn.BatchNorm1d: nn.LazyBatchNorm1d,
    nn.BatchNorm2d: nn.LazyBatchNorm2d,
    nn.BatchNorm3d: nn.LazyBatchNorm3d,
}


def _from_callable(obj: Any, device: str, **kwargs: Any) -> nn.Module:
    if isinstance(obj, nn.Module):
        return obj
    if isinstance(obj, type) and issubclass(obj, nn.Module):
        if obj in _LAZY_BATCH_NORM and "num_features" not in kwargs:
            # tinyBIG sizes the BatchNorm from x.size(-1) at call time; a lazy module keeps that
            # convenience while being created, trained and saved once.
            kwargs.setdefault("device", device)
            return _LAZY_BATCH_NORM[obj](**kwargs)
        if obj in _LAZY_BATCH_NORM:
            kwargs.setdefault("device", device)
        try:
            return obj(**kwargs)
        except TypeError as exc:
            raise ValueError(
                f"cannot instantiate {obj.__module__}.{obj.__qualname__} without parameters ({exc}); give it as "
                "an instance or as a function config with 'function_parameters'") from None
    if obj is F.dropout:
        # Honour module.training (tinyBIG's string 'dropout' always drops, defect #3).
        return nn.Dropout(p=kwargs.get("p", 0.5))
    if obj is F.layer_norm and "normalized_shape" not in kwargs:
        return LastDimLayerNorm(eps=kwargs.get("eps", 1e-5))
    if callable(obj):
        return CallableModule(functools.partial(obj, **kwargs) if kwargs else obj)
    raise TypeError(f"a processing function must be callable, a module, or a name, got {type(obj).__name__}")


def _from_name(name: str, device: str) -> nn.Module:
    # Same lookup rule as tinyBIG: bare names live in torch.nn.functional (case-insensitive).
    path = name if "." in name else f"torch.nn.functional.{name.lower()}"
    try:
        obj = get_obj_from_str(path)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(f"function {name!r} is not in torch.nn.functional; give the complete path, "
                         "such as 'torch.nn.functional.sigmoid'") from None
    return _from_callable(obj, device)


def _from_config(cfg: dict, device: str) -> nn.Module:
    if "function_class" not in cfg:
        raise ValueError(f"a function config needs a 'function_class' entry, got keys {sorted(cfg)}")
    params = dict(cfg.get("function_parameters") or {})
    obj = get_obj_from_str(cfg["function_class"])
    return _from_callable(obj, device, **params)


def instantiate_functions(functions: Any = None, function_configs: Any = None, device: str = "cpu") -> nn.ModuleList:
    """Resolve tinyBIG's ``*_functions`` / ``*_function_configs`` arguments into a ModuleList.

    Accepts what tinyBIG accepts: None, one callable / module / name, a list or tuple of them,
    one config dict (``{'function_class': ..., 'function_parameters': {...}}``), a list of configs,
    or a dict of named configs. Functions take precedence over configs, as in tinyBIG.
    """
    items: List[nn.Module] = []
    if functions is not None:
        seq: Iterable[Any] = functions if isinstance(functions, (list, tuple)) else [functions]
        for f in seq:
            if f is None:
                continue
            items.append(_from_name(f, device) if isinstance(f, str) else _from_callable(f, device))
    elif function_configs is not None:
        if isinstance(function_configs, dict) and "function_class" in function_configs:
            configs: Iterable[dict] = [function_configs]
        elif isinstance(function_configs, dict):
            configs = list(function_configs.values())
        else:
            configs = function_configs
        items.extend(_from_config(cfg, device) for cfg in configs)
    return nn.ModuleList(items)


def apply_functions(x: torch.Tensor, functions: Optional[Iterable[nn.Module]]) -> torch.Tensor:
    """tinyBIG ``function.func_x`` on a resolved list: apply in order."""
    if functions is None:
        return x
    for f in functions:
        x = f(x)
    return x


class function:
    """Mixin with tinyBIG's ``function`` attributes (``name``, ``device``, ``get_name``)."""

    def __init__(self, name: str = "base_function", device: str = "cpu", *args: Any, **kwargs: Any):
        self.name = name
        self.device = device

    def get_name(self) -> str:
        return self.name

    @staticmethod
    def func_x(x: torch.Tensor, functions: Any, device: str = "cpu") -> torch.Tensor:
        """Apply functions given in any tinyBIG form; resolves them per call, so owners should
        resolve once with :func:`instantiate_functions` and use :func:`apply_functions`."""
        if isinstance(functions, nn.ModuleList):
            return apply_functions(x, functions)
        return apply_functions(x, instantiate_functions(functions, device=device))
