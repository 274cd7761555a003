"""Suite registry: name -> module exposing ``cases(quick: bool, device=..., **kwargs) -> list[Case]``
and ``QUICK_NOTE`` (what --quick changes, recorded in the JSON).

Modules are imported on demand so one suite's missing peer (e.g. torch-geometric) cannot stop the
others from running.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import List

SUITES = {
    "expansion": "rpn2kernels.bench.suites.expansion",
    "propagation": "rpn2kernels.bench.suites.propagation",
}


def names() -> List[str]:
    return list(SUITES)


def module_name(name: str) -> str:
    if name not in SUITES:
        raise KeyError(f"unknown benchmark suite {name!r}; known: {', '.join(SUITES)}")
    return SUITES[name]


def get(name: str) -> ModuleType:
    return importlib.import_module(module_name(name))


__all__ = ["SUITES", "names", "module_name", "get"]
