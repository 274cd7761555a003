"""Builds rpn2kernels._C: the C++ CPU kernels always, the CUDA kernels when asked for or possible.

Environment (as in pyg-lib):
  FORCE_CUDA=1            build the CUDA kernels (needs nvcc and a CUDA build of torch; no GPU needed)
  FORCE_ONLY_CPU=1        never build the CUDA kernels
  TORCH_CUDA_ARCH_LIST    e.g. "8.0;9.0+PTX"; default: the arches of the installed torch, +PTX on the newest
  MAX_JOBS                parallel compile jobs (ninja)
  RPN2K_DEBUG=1           -O0 -g
"""
import glob
import os

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def want_cuda() -> bool:
    if os.getenv("FORCE_ONLY_CPU", "0") == "1":
        return False
    if os.getenv("FORCE_CUDA", "0") == "1":
        return True
    return torch.version.cuda is not None and CUDA_HOME is not None and torch.cuda.is_available()


def default_arch_list() -> str:
    """The installed torch's own arches, with +PTX on the newest so newer GPUs can JIT."""
    arches = sorted({a.split("_")[1] for a in torch.cuda.get_arch_list() if a.startswith("sm_")}, key=int)
    if not arches:
        return "8.0;9.0+PTX"
    return ";".join(f"{a[:-1]}.{a[-1]}" for a in arches[:-1]) + f";{arches[-1][:-1]}.{arches[-1][-1]}+PTX"


def extension():
    debug = os.getenv("RPN2K_DEBUG", "0") == "1"
    sources = ["csrc/ops.cpp"] + sorted(glob.glob("csrc/cpu/*.cpp"))
    cxx = ["-O0", "-g"] if debug else ["-O3"]
    cxx += ["-std=c++20", "-fopenmp"]
    define_macros = [("Py_LIMITED_API", "0x03090000")]
    include_dirs = [os.path.join(ROOT, "csrc", "include")]
    if want_cuda():
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", default_arch_list())
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        nvcc = ["-O0", "-g", "-G"] if debug else ["-O3", "--use_fast_math"]
        nvcc += ["-std=c++20", "--expt-relaxed-constexpr", "-lineinfo"]
        define_macros.append(("RPN2K_WITH_CUDA", None))
        return CUDAExtension("rpn2kernels._C", sources, include_dirs=include_dirs, define_macros=define_macros,
                             extra_compile_args={"cxx": cxx, "nvcc": nvcc}, extra_link_args=["-fopenmp"],
                             py_limited_api=True)
    return CppExtension("rpn2kernels._C", sources, include_dirs=include_dirs, define_macros=define_macros,
                        extra_compile_args={"cxx": cxx}, extra_link_args=["-fopenmp"], py_limited_api=True)


setup(
    packages=find_packages(include=["rpn2kernels", "rpn2kernels.*"]),
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension.with_options(no_python_abi_suffix=True, use_ninja=True)},
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
