"""Import tinyBIG 0.2.1 as a test-only oracle (README "tinyBIG 0.2.1 as a test-only oracle").

tinyBIG is never a dependency of rpn2kernels; parity tests use it when it is installed with

    pip install --no-deps tinybig==0.2.1
    pip install numpy scipy scikit-learn pyyaml tqdm matplotlib requests sympy

``--no-deps`` because its declared requirements would pull torchvision/torchtext and a CUDA torch.
Its package ``__init__`` still imports those two (data loaders only) and
``tinybig.data.time_series_dataloader``, which uses a Python-3.12-only f-string; the stubs below
stand in for exactly those modules so that the computational parts can be imported.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
from typing import Optional

TINYBIG_VERSION = "0.2.1"
INSTALL_HINT = ("pip install --no-deps tinybig==0.2.1 && "
                "pip install numpy scipy scikit-learn pyyaml tqdm matplotlib requests sympy")

_STUB_ROOTS = ("torchvision", "torchtext")
_STUB_EXACT = ("tinybig.data.time_series_dataloader",)

_cached = None


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


class _StubModule(types.ModuleType):
    """Every attribute is a placeholder class, so ``from torchvision.datasets import MNIST`` succeeds;
    using one raises, which makes an accidental dependency on a stub loud."""

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        module_name = self.__name__

        def _unavailable(*args, **kwargs):
            raise RuntimeError(f"{module_name}.{attr} is a stub installed by the tinyBIG test oracle")

        placeholder = type(attr, (), {"__init__": _unavailable, "__module__": module_name})
        setattr(self, attr, placeholder)
        return placeholder


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, roots=(), exact=()):
        self.roots, self.exact = tuple(roots), tuple(exact)
        self.created = []

    def find_spec(self, fullname, path=None, target=None):
        if fullname in self.exact or fullname.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        self.created.append(spec.name)
        return module

    def exec_module(self, module):
        pass


def _import_with_stubs():
    # torchvision/torchtext: consulted last, so a real installation always wins.
    fallback = _StubFinder(roots=_STUB_ROOTS)
    # The time-series loader exists on disk but is a SyntaxError before 3.12, so it must be
    # intercepted before the path finder sees it.
    front = _StubFinder(exact=_STUB_EXACT if sys.version_info < (3, 12) else ())
    sys.meta_path.insert(0, front)
    sys.meta_path.append(fallback)
    try:
        tinybig = importlib.import_module("tinybig")
    finally:
        sys.meta_path.remove(front)
        sys.meta_path.remove(fallback)
        # tinyBIG already holds the names it imported; keeping stub torchvision/torchtext in
        # sys.modules would make other code believe they are installed.
        for name in fallback.created:
            sys.modules.pop(name, None)
    return tinybig


def load_tinybig() -> Optional[types.ModuleType]:
    """The imported ``tinybig`` package, or None when it is not installed (outside CI only).

    Raises when tinyBIG is installed but cannot be imported or has another version — a broken
    oracle must not turn into silently skipped parity tests — and, with ``CI=true``, when it is
    missing altogether.
    """
    global _cached
    if _cached is not None:
        return _cached
    if "tinybig" not in sys.modules and importlib.util.find_spec("tinybig") is None:
        if _in_ci():
            raise RuntimeError(f"CI=true but the tinyBIG oracle is not installed; install it with: {INSTALL_HINT}")
        return None
    tinybig = sys.modules.get("tinybig") or _import_with_stubs()
    version = getattr(tinybig, "__version__", None)
    if version != TINYBIG_VERSION:
        raise RuntimeError(f"parity tests are pinned to tinyBIG {TINYBIG_VERSION}, found {version}; "
                           f"install it with: {INSTALL_HINT}")
    _cached = tinybig
    return tinybig


def tinybig_or_skip() -> types.ModuleType:
    """For tests and fixtures: the tinyBIG package, or a pytest skip that says how to install it."""
    import pytest

    tinybig = load_tinybig()
    if tinybig is None:
        pytest.skip(f"tinyBIG {TINYBIG_VERSION} (test-only oracle) is not installed: {INSTALL_HINT}")
    return tinybig
