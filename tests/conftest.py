"""Test session set-up. Runs before any rpn2kernels or Triton import.

- Without a GPU, Triton kernels run in the interpreter on CPU tensors (TRITON_INTERPRET=1 must be
  set before triton is imported).
- In CI (CI=true) the compiled extension is required: a failed build fails the import instead of
  dropping to reference-only mode.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
if os.environ.get("CI", "").lower() == "true":
    os.environ.setdefault("RPN2K_REQUIRE_EXT", "1")

torch.manual_seed(0)
