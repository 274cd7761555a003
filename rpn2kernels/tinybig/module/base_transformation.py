"""``transformation``: base class of the expansion (and compression) functions of the tinyBIG
namespace (tinyBIG: ``tinybig/module/base_transformation.py``)."""
from __future__ import annotations

from typing import Any, Dict, Tuple

import torch
from torch import nn

from .base_function import apply_functions, function, instantiate_functions

__all__ = ["transformation"]


class transformation(nn.Module, function):
    """κ: R^m -> R^D with optional pre-/post-processing functions.

    Same constructor keywords and methods as tinyBIG's ``transformation``. Differences: the
    processing functions are resolved once into registered sub-modules (``nn.ModuleList``, empty
    when none are given), so their parameters train, save, move with ``.to()`` and follow
    ``train()``/``eval()`` (docs/tinybig-differences.md).
    """

    #: constructor keywords (besides name and device) that :meth:`to_config` records
    _config_keys: Tuple[str, ...] = ()

    def __init__(
        self,
        name: str = "base_transformation",
        preprocess_functions: Any = None,
        postprocess_functions: Any = None,
        preprocess_function_configs: Any = None,
        postprocess_function_configs: Any = None,
        device: str = "cpu",
        *args: Any,
        **kwargs: Any,
    ):
        nn.Module.__init__(self)
        function.__init__(self, name=name, device=device)
        self.preprocess_functions = instantiate_functions(preprocess_functions, preprocess_function_configs, device)
        self.postprocess_functions = instantiate_functions(postprocess_functions, postprocess_function_configs, device)
        # Kept so that to_config can reproduce a config-built object.
        self._function_configs = {
            "preprocess_function_configs": preprocess_function_configs if preprocess_functions is None else None,
            "postprocess_function_configs": postprocess_function_configs if postprocess_functions is None else None,
        }

    def get_name(self) -> str:
        return self.name

    def pre_process(self, x: torch.Tensor, device: str = "cpu", *args: Any, **kwargs: Any) -> torch.Tensor:
        return apply_functions(x, self.preprocess_functions)

    def post_process(self, x: torch.Tensor, device: str = "cpu", *args: Any, **kwargs: Any) -> torch.Tensor:
        return apply_functions(x, self.postprocess_functions)

    def calculate_D(self, m: int) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement calculate_D(m)")

    def forward(self, x: torch.Tensor, device: str = "cpu", *args: Any, **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x, device)")

    # __call__ is nn.Module's: it ends in forward(*args, **kwargs) exactly like tinyBIG's override,
    # and additionally runs hooks and works under torch.compile.

    def to_config(self) -> Dict[str, Any]:
        params: Dict[str, Any] = {"name": self.name, "device": self.device}
        params.update({k: getattr(self, k) for k in self._config_keys})
        params.update({k: v for k, v in self._function_configs.items() if v is not None})
        return {"function_class": f"{type(self).__module__}.{type(self).__name__}", "function_parameters": params}

    def extra_repr(self) -> str:
        return ", ".join([f"name={self.name!r}"] + [f"{k}={getattr(self, k)!r}" for k in self._config_keys])
