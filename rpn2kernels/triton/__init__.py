"""Triton kernels, one module per op family (raw launchers; rpn2kernels.ops registers them as ops).

Nothing is imported here on purpose: importing a kernel module imports triton, which must happen
after TRITON_INTERPRET is set (CPU runs) and must not be forced on installs without triton.
"""
