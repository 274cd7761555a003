"""The autocast policy of the public functions (torch.autocast, mixed precision).

The ops are custom ops with no autocast rule in the dispatcher, so under ``torch.autocast`` their
inputs would arrive in whatever mix of dtypes the autocast layers around them produced (a bf16
``nn.Linear`` output beside an fp32 weight), and the reference backend's own torch ops would cast
differently from the kernels. Each public function therefore applies one policy itself, then runs
with autocast disabled so every backend computes in the same dtype:

* CPU: the compiled kernels compute in float32 or float64, so bfloat16/float16 inputs are upcast
  to float32 (autocast's "fp32" policy: the output is float32, the next autocast layer recasts).
* CUDA (and other accelerators): ``"gemm"`` ops (``expand_linear``, ``narrow_linear``) cast their
  float inputs to the autocast dtype, as ``F.linear`` does — the kernels accumulate in float32;
  ``"promote"`` ops (expansion, propagation, attention, chains) run in the widest float dtype of
  their inputs, as torch's promote list does.

float64 tensors are never cast, as in torch.autocast.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional, Tuple

import torch
from torch import Tensor

_LOW = (torch.float16, torch.bfloat16)
_CASTABLE = (torch.float16, torch.bfloat16, torch.float32)


def _device_type(tensors) -> Optional[str]:
    for t in tensors:
        if isinstance(t, Tensor):
            return t.device.type
    return None


def _target_dtype(kind: str, device: str, tensors) -> Optional[torch.dtype]:
    dtypes = {t.dtype for t in tensors if isinstance(t, Tensor) and t.dtype in _CASTABLE}
    if not dtypes:
        return None
    if device == "cpu":
        return torch.float32 if dtypes & set(_LOW) else None
    if kind == "gemm":
        return torch.get_autocast_dtype(device)
    if len(dtypes) == 1:
        return None
    return torch.float32  # mixed fp16/bf16/fp32: the widest is fp32 (fp16 and bf16 promote to it)


@contextlib.contextmanager
def autocast_policy(kind: str, *tensors) -> Iterator[Tuple]:
    """Yields ``tensors`` cast by the policy of ``kind`` ("gemm" or "promote") when autocast is on for
    their device, with autocast disabled inside the block; otherwise yields them unchanged. None and
    non-tensor arguments pass through, so argument validation still sees them."""
    device = _device_type(tensors)
    if device is None or not torch.amp.is_autocast_available(device) or not torch.is_autocast_enabled(device):
        yield tensors
        return
    target = _target_dtype(kind, device, tensors)
    if target is not None:
        tensors = tuple(t.to(target) if isinstance(t, Tensor) and t.dtype in _CASTABLE else t for t in tensors)
    with torch.autocast(device, enabled=False):
        yield tensors
