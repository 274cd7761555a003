"""`python -m rpn2kernels.info`: versions, compiled backends, CUDA arch list, Triton, and the
backend every op family would use on each device."""
from __future__ import annotations

import os
import platform

import torch

from . import _extension, backends, memory


def report() -> str:
    lines = [
        f"rpn2kernels     {__import__('rpn2kernels').__version__}",
        f"python          {platform.python_version()}",
        f"torch           {torch.__version__} (CUDA {torch.version.cuda or 'none'})",
    ]
    ok, why = backends.triton_status()
    if ok:
        import triton

        lines.append(f"triton          {triton.__version__}"
                     + (" (TRITON_INTERPRET=1: kernels run in the CPU interpreter)" if backends.triton_interpreting() else ""))
    else:
        lines.append(f"triton          unavailable: {why}")
    lines.append(f"extension       {'loaded' if _extension.extension_loaded() else 'NOT loaded: ' + str(_extension.LOAD_ERROR)}")
    lines.append(f"cpu kernels     {'compiled' if _extension.has_kernel('expand_linear', 'CPU') else 'missing'}")
    if _extension.extension_loaded():
        isa = _extension.cpu_isa()
        lines.append(f"cpu vector isa  {isa}" + ("" if isa == "avx2" else
                                                  " (the AVX2+FMA loops are off: no AVX2/FMA, or RPN2K_CPU_ISA=generic)"))
        cache_mib = os.environ.get("RPN2K_OUTPUT_CACHE_MB") or f"{memory.DEFAULT_OUTPUT_CACHE_MIB} (default)"
        lines.append(f"output cache    RPN2K_OUTPUT_CACHE_MB={cache_mib}, RPN2K_HUGE_PAGES="
                     f"{os.environ.get('RPN2K_HUGE_PAGES') or '(unset)'} (docs/backends.md, 'Large outputs')")
    lines.append(f"cuda kernels    {'compiled' if _extension.cuda_compiled() else 'not compiled'}")
    if torch.cuda.is_available():
        lines.append(f"cuda device     {torch.cuda.get_device_name()} (arch list {torch.cuda.get_arch_list()})")
    else:
        lines.append("cuda device     none")
    env = os.environ.get(backends.ENV_VAR)
    lines.append(f"{backends.ENV_VAR}   {env or '(unset)'}")
    lines.append("")
    lines.append(f"{'op family':<16}{'cpu tensors':<14}{'cuda fp32/64':<14}{'cuda fp16/bf16':<14}")
    for family in sorted(backends.CUDA_DEFAULTS):
        cpu_default = backends.default_backend(family, torch.device('cpu'))
        if family == "narrow_linear" and cpu_default == "cpu":
            cpu_default = "cpu/torch*"
        lines.append(f"{family:<16}{cpu_default:<14}"
                     f"{backends.default_backend(family, torch.device('cuda')):<14}"
                     f"{backends.default_backend(family, torch.device('cuda'), torch.bfloat16):<14}")
    lines.append("* narrow_linear on CPU tensors: the compiled kernel where it measured faster than torch's GEMM "
                 "(AVX2+FMA, a side of <= 32 features, x of >= 4 MiB), torch's GEMM elsewhere")
    lines.append("")
    for device in ("cpu",) + (("cuda",) if torch.cuda.is_available() else ()):
        avail = backends.available_backends(torch.device(device))
        lines.append(f"backends usable on {device} float32: {', '.join(avail)}")
    return "\n".join(lines)


def main() -> None:
    print(report())


if __name__ == "__main__":
    main()
