"""The autograd modes the kernel backends do not implement, refused instead of answered wrongly.

* Double backward. Inside a registered backward, grad mode is on exactly when the caller asked for
  a graph of the gradient (``create_graph=True``: gradient penalties, Hessian-vector products,
  MAML). A backward built from kernel ops without autograd would then return gradients that
  silently do not depend on their inputs (PyTorch only warns), so such a backward refuses.
* Forward-mode AD (``torch.func.jvp``, ``torch.autograd.forward_ad``). Custom ops have no
  forward-AD formula, and PyTorch passes a dual tensor through one as if its tangent were zero.
  Functions linear in their input (propagation, PageRank, chains; ``narrow_linear`` is bilinear)
  run the op on the primal and on the tangent and pair the results (``through_linear``); the
  others refuse dual inputs on the kernel backends, and so does every registered backward handed a
  dual gradient.

Both errors name the backend that supports the mode: ``reference``, whose ops are plain autograd.
"""
from __future__ import annotations

import torch
import torch.autograd.forward_ad as forward_ad


def refuse_double_backward(op: str, backend: str, what: str = "") -> None:
    """Raise if the running backward is asked to build a graph (``create_graph=True``)."""
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():
        detail = f" {what}" if what else ""
        raise NotImplementedError(
            f"{op}: double backward (create_graph=True){detail} is not implemented on backend {backend!r}; "
            "use backend='reference', whose backward is plain autograd")


def refuse_forward_ad(function: str, backend: str, *tensors) -> None:
    """Raise if forward-mode AD is running through any of ``tensors`` (a dual tensor with a tangent)."""
    if backend == "reference" or torch.compiler.is_compiling():
        return
    for t in tensors:
        if isinstance(t, torch.Tensor) and forward_ad.unpack_dual(t).tangent is not None:
            raise NotImplementedError(
                f"{function}: forward-mode AD (torch.func.jvp, torch.autograd.forward_ad) is not implemented on "
                f"backend {backend!r} (a custom op would pass the tangent as zero); use backend='reference'")


def through_linear(fn, x: torch.Tensor, backend: str) -> torch.Tensor:
    """fn(x) for fn linear in x; under forward-mode AD, the dual of fn(primal) and fn(tangent)."""
    if backend == "reference" or torch.compiler.is_compiling():
        return fn(x)
    primal, tangent = forward_ad.unpack_dual(x)
    if tangent is None:
        return fn(x)
    return forward_ad.make_dual(fn(primal), fn(tangent))
