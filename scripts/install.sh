#!/usr/bin/env bash
# Sets up rpn2kernels on a fresh machine: torch, the build/test/benchmark dependencies, then the
# package itself with its compiled extension (C++ CPU kernels; CUDA kernels too with FORCE_CUDA=1).
#
# torch: an existing install (any torch >= 2.11, e.g. the CUDA build of a GPU server) is kept.
# Without one, torch==2.13.0 is installed: on the CPU-only development/CI machines that resolves to
# the local CPU wheel. Never let pip resolve an unpinned torch here: that pulls a multi-GB CUDA build.
set -euo pipefail
PYTHON=${PYTHON:-python}
cd "$(dirname "$0")/.."

if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  "$PYTHON" -m pip install "torch==2.13.0"
fi
"$PYTHON" -c "import torch, sys; v = tuple(int(p) for p in torch.__version__.split('+')[0].split('.')[:2]); \
sys.exit(0 if v >= (2, 11) else 'rpn2kernels needs torch >= 2.11, found ' + torch.__version__)"

# Build, Triton, tests and benchmarks. None of these depends on torch, so none can replace it.
"$PYTHON" -m pip install ninja numpy "triton>=3.6" pytest pytest-benchmark scipy matplotlib \
  pyyaml scikit-learn tqdm sympy requests
# tinyBIG 0.2.1: a test-only oracle, installed without its dependency list (which would pull torch
# and torchvision); its real runtime needs are installed above.
"$PYTHON" -m pip install --no-deps "tinybig==0.2.1"
# PyG: the benchmark's graph peer (GCNConv, GATConv, APPNP). Pure Python; --no-deps for the same
# reason, its runtime needs listed explicitly.
"$PYTHON" -m pip install xxhash psutil aiohttp fsspec jinja2 pyparsing
"$PYTHON" -m pip install --no-deps "torch-geometric==2.8.1"

# --no-build-isolation: build against the torch installed above instead of a fresh one.
"$PYTHON" -m pip install --no-build-isolation -v -e . 2>&1 | tail -n 3
"$PYTHON" -m rpn2kernels.info
