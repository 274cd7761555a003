#!/usr/bin/env bash
# One call on a lent GPU machine (see docs/install.md, "Checking on a GPU"): builds the CUDA
# extension, runs every CUDA-device and Triton-on-GPU test, then the benchmark suites on CUDA.
# Everything it learns goes under $OUT (logs, the built extension, bench JSON/PNG), so a phase that
# runs out of time still leaves the earlier phases' results.
#
#   PHASES="build test tiles bench"   which phases to run (default: build test bench)
#   BENCH_SUITES="expansion propagation"
#   PREBUILT=path/to/_C.so       skip the build and use this extension (built by an earlier call)
#   TEST_TIMEOUT / BENCH_TIMEOUT seconds per phase
set -uo pipefail
OUT=${OUT:-/tmp/rpn2k-gpu-out}
mkdir -p "$OUT"
PHASES=${PHASES:-"build test bench"}
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
log() { echo "=== $(date +%T) $*" | tee -a "$OUT/session.log"; }

{
  nvidia-smi -L; nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.limit --format=csv
  $PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
  nproc
} 2>&1 | tee -a "$OUT/session.log"

if [[ " $PHASES " == *" build "* ]]; then
  if [ -n "${PREBUILT:-}" ]; then
    cp "$PREBUILT" rpn2kernels/_C.so
    log "using prebuilt extension $PREBUILT"
  else
    log "build"
    start=$(date +%s)
    FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} \
      $PY setup.py build_ext --inplace >"$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
    log "build done in $(( $(date +%s) - start )) s"
    cp rpn2kernels/_C*.so "$OUT/_C.so"
  fi
  RPN2K_REQUIRE_EXT=1 $PY -m rpn2kernels.info 2>&1 | tee -a "$OUT/session.log"
fi

if [[ " $PHASES " == *" test "* ]]; then
  log "tests"
  # tests/triton run on the GPU when one is present; in tests/ops and tests/nn the CUDA-device
  # parameters carry "cuda" in their ids.
  timeout "${TEST_TIMEOUT:-330}" $PY -m pytest -q -p no:cacheprovider -n "${TEST_WORKERS:-16}" --timeout 300 \
    -rfE --tb=short ${TEST_ARGS:-tests/triton tests/ops tests/nn -k "cuda or triton"} \
    >"$OUT/tests.log" 2>&1
  log "tests rc=$?"
  grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/tests.log" | tail -60
fi

if [[ " $PHASES " == *" tiles "* ]]; then
  log "expansion tile sweep"
  PYTHONPATH=. timeout "${TILES_TIMEOUT:-200}" $PY scripts/gpu_expansion_tiles.py --out "$OUT" >"$OUT/tiles.log" 2>&1
  log "tiles rc=$?"
  tail -25 "$OUT/tiles.log"
fi

if [[ " $PHASES " == *" bench "* ]]; then
  for suite in ${BENCH_SUITES:-expansion propagation}; do
    log "bench $suite"
    timeout "${BENCH_TIMEOUT:-400}" $PY -m rpn2kernels.bench --suite "$suite" --device cuda --out "$OUT" \
      ${BENCH_ARGS:-} >"$OUT/bench-$suite.log" 2>&1
    log "bench $suite rc=$?"
    tail -45 "$OUT/bench-$suite.log"
  done
fi
