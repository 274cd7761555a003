"""The one rule for ops whose backward is not itself differentiable on the kernel backends.

Inside a registered backward, grad mode is on exactly when the caller asked for a graph of the
gradient (``create_graph=True``: gradient penalties, Hessian-vector products, MAML). A backward
built from kernel ops without autograd would then return gradients that silently do not depend
on their inputs (PyTorch only warns), so such a backward refuses instead and names the backend
that supports it.
"""
from __future__ import annotations

import torch


def refuse_double_backward(op: str, backend: str, what: str = "") -> None:
    """Raise if the running backward is asked to build a graph (``create_graph=True``)."""
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():
        detail = f" {what}" if what else ""
        raise NotImplementedError(
            f"{op}: double backward (create_graph=True){detail} is not implemented on backend {backend!r}; "
            "use backend='reference', whose backward is plain autograd")
