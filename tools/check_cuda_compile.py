"""Compile-check CUDA sources with nvcc against the installed torch's headers, without a GPU.

    python tools/check_cuda_compile.py [FILE.cu ...]        # default: every csrc/cuda/*.cu

A CPU build of torch ships the c10/cuda headers but not the generated
``c10/cuda/impl/cuda_cmake_macros.h``; a one-line stand-in is written to a temporary include directory
placed *after* torch's own, so a CUDA build of torch still uses its real header. Sources must include
``c10/cuda/CUDAStream.h`` / ``CUDAGuard.h`` rather than ``ATen/cuda/CUDAContext.h`` (which needs the
cuSPARSE/cuBLAS headers of a CUDA torch). Flags mirror setup.py's CUDA build and torch's
BuildExtension, so what compiles here compiles in ``FORCE_CUDA=1 pip wheel .``.

Prints one line per file with its compile time; exits non-zero, with nvcc's output, if any file fails.
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from typing import List, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Same content as the header a CUDA build of torch generates (CUDA torch wheels are shared builds).
CMAKE_MACROS_STANDIN = """#pragma once
// Stand-in written by tools/check_cuda_compile.py: CPU builds of torch do not ship this generated file.
#define C10_CUDA_BUILD_SHARED_LIBS
"""

# torch.utils.cpp_extension.COMMON_NVCC_FLAGS, which BuildExtension adds to every .cu file.
TORCH_NVCC_FLAGS = [
    "-D__CUDA_NO_HALF_OPERATORS__",
    "-D__CUDA_NO_HALF_CONVERSIONS__",
    "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-D__CUDA_NO_HALF2_OPERATORS__",
]

DEFAULT_GENCODE = "arch=compute_90,code=sm_90"
# setup.py's standard (torch >= 2.11 headers still compile under it, with C++20-extension warnings).
DEFAULT_STD = "c++20"


def find_nvcc() -> Optional[str]:
    """nvcc from $CUDA_HOME / $CUDA_PATH, /usr/local/cuda, then PATH; None if absent."""
    candidates = []
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(os.path.join(os.environ[var], "bin", "nvcc"))
    candidates.append("/usr/local/cuda/bin/nvcc")
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return shutil.which("nvcc")


def default_sources() -> List[str]:
    return sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")))


def nvcc_command(nvcc: str, source: str, obj: str, standin_dir: str, gencode: str, std: str) -> List[str]:
    import torch
    from torch.utils.cpp_extension import include_paths

    includes = [os.path.join(ROOT, "csrc", "include")] + list(include_paths())
    includes.append(sysconfig.get_paths()["include"])
    includes.append(standin_dir)  # last: a real cuda_cmake_macros.h in a CUDA torch wins
    abi = int(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", True))
    return (
        [nvcc, "-c", source, "-o", obj]
        + [f"-I{d}" for d in includes]
        + TORCH_NVCC_FLAGS
        + [
            f"-std={std}",
            "--expt-relaxed-constexpr",
            "-O3",
            "--use_fast_math",
            "-lineinfo",
            "-DRPN2K_WITH_CUDA",
            "-DPy_LIMITED_API=0x03090000",
            "-DTORCH_EXTENSION_NAME=_C",
            f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
            "-Xcompiler",
            "-fPIC",
            "-gencode",
            gencode,
        ]
    )


def check(sources: Sequence[str], gencode: str = DEFAULT_GENCODE, nvcc: Optional[str] = None,
          verbose: bool = False, std: str = DEFAULT_STD) -> int:
    """Compile every source; returns the number of failures (printing nvcc's output for each)."""
    nvcc = nvcc or find_nvcc()
    if nvcc is None:
        print("nvcc missing: set CUDA_HOME or put nvcc on PATH", file=sys.stderr)
        return len(sources) or 1
    failures = 0
    with tempfile.TemporaryDirectory(prefix="rpn2k-nvcc-") as tmp:
        standin_dir = os.path.join(tmp, "include")
        os.makedirs(os.path.join(standin_dir, "c10", "cuda", "impl"))
        with open(os.path.join(standin_dir, "c10", "cuda", "impl", "cuda_cmake_macros.h"), "w") as f:
            f.write(CMAKE_MACROS_STANDIN)
        for source in sources:
            source = os.path.abspath(source)
            obj = os.path.join(tmp, os.path.basename(source) + ".o")
            cmd = nvcc_command(nvcc, source, obj, standin_dir, gencode, std)
            if verbose:
                print(" ".join(cmd))
            start = time.perf_counter()
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            elapsed = time.perf_counter() - start
            name = os.path.relpath(source, ROOT)
            if proc.returncode == 0:
                print(f"ok    {name}  {elapsed:.1f} s")
                if verbose and proc.stdout.strip():
                    print(proc.stdout)
            else:
                failures += 1
                print(f"FAIL  {name}  {elapsed:.1f} s (nvcc exit {proc.returncode})")
                print(proc.stdout)
    return failures


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="CUDA sources (default: csrc/cuda/*.cu)")
    parser.add_argument("--gencode", default=DEFAULT_GENCODE, help=f"nvcc -gencode value (default {DEFAULT_GENCODE})")
    parser.add_argument("--std", default=DEFAULT_STD, help=f"C++ standard (default {DEFAULT_STD}, as setup.py)")
    parser.add_argument("--nvcc", default=None, help="path of nvcc (default: CUDA_HOME, /usr/local/cuda, PATH)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the nvcc command and its warnings")
    args = parser.parse_args(argv)
    sources = args.files or default_sources()
    if not sources:
        print("no CUDA sources to check", file=sys.stderr)
        return 1
    missing = [s for s in sources if not os.path.isfile(s)]
    if missing:
        print(f"no such file: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 1 if check(sources, args.gencode, args.nvcc, args.verbose, args.std) else 0


if __name__ == "__main__":
    sys.exit(main())
