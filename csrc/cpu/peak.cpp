// Multiply-add peak probe (peak.h). Twelve independent accumulators per thread cover the FMA
// latency × throughput product of current x86 cores (4 cycles × 2 units), so the loop is bound by
// the FMA ports, not by its dependency chains; the operands stay in registers.
#include "peak.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>

#include "isa.h"

namespace rpn2kernels {
namespace cpu {
namespace {

constexpr int kChains = 12;

// One ISA's loop: `iterations` steps of a = a·b + c on kChains vectors of kVectorBytes, held in
// named variables (an array of vectors is kept on the stack by GCC, and its store-load round trip
// would bound the loop instead of the multiply-add units).
#define RPN2K_PEAK_STEP(a) a = a * b + c;
#define RPN2K_PEAK_LOOP(kVectorBytes)                                                                      \
  typedef float V __attribute__((vector_size(kVectorBytes)));                                             \
  float chains(int64_t iterations) {                                                                       \
    V a0 = V{} + 2.00f, a1 = V{} + 2.01f, a2 = V{} + 2.02f, a3 = V{} + 2.03f, a4 = V{} + 2.04f;            \
    V a5 = V{} + 2.05f, a6 = V{} + 2.06f, a7 = V{} + 2.07f, a8 = V{} + 2.08f, a9 = V{} + 2.09f;            \
    V a10 = V{} + 2.10f, a11 = V{} + 2.11f;                                                                \
    const V b = V{} + 0.999f, c = V{} + 0.001f; /* → 1, never a fixed point the compiler folds */         \
    for (int64_t it = 0; it < iterations; ++it) {                                                          \
      RPN2K_PEAK_STEP(a0) RPN2K_PEAK_STEP(a1) RPN2K_PEAK_STEP(a2) RPN2K_PEAK_STEP(a3)                      \
      RPN2K_PEAK_STEP(a4) RPN2K_PEAK_STEP(a5) RPN2K_PEAK_STEP(a6) RPN2K_PEAK_STEP(a7)                      \
      RPN2K_PEAK_STEP(a8) RPN2K_PEAK_STEP(a9) RPN2K_PEAK_STEP(a10) RPN2K_PEAK_STEP(a11)                    \
    }                                                                                                      \
    const V sum = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11));          \
    return sum[0];                                                                                         \
  }                                                                                                        \
  constexpr int64_t kLanes = kVectorBytes / 4;

namespace generic_isa {
RPN2K_PEAK_LOOP(16)
}  // namespace generic_isa

#if RPN2K_HAVE_AVX2_COPY
RPN2K_BEGIN_AVX2_COPY
RPN2K_PEAK_LOOP(32)
RPN2K_END_AVX2_COPY
#endif

// Seconds for every thread to run `iterations` steps, and the lanes per step.
double run_all_threads(int64_t iterations, int64_t* lanes, std::atomic<float>* sink) {
  const int threads = at::get_num_threads();
  const auto start = std::chrono::steady_clock::now();
  at::parallel_for(0, threads, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
#if RPN2K_HAVE_AVX2_COPY
      if (active_isa() == Isa::avx2) {
        sink->store(avx2_isa::chains(iterations));
        continue;
      }
#endif
      sink->store(generic_isa::chains(iterations));
    }
  });
  *lanes = generic_isa::kLanes;
#if RPN2K_HAVE_AVX2_COPY
  if (active_isa() == Isa::avx2) *lanes = avx2_isa::kLanes;
#endif
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

double multiply_add_peak_gflops(double seconds) {
  std::atomic<float> sink{0.0f};  // keeps the loops' results observable
  int64_t lanes = 0, iterations = 1 << 16;
  double elapsed = run_all_threads(iterations, &lanes, &sink);
  while (elapsed < seconds / 8 && iterations < (int64_t(1) << 40)) {
    iterations *= 2;
    elapsed = run_all_threads(iterations, &lanes, &sink);
  }
  // best of three at the calibrated length: the limit is the fastest, noise only slows it
  double best = elapsed;
  for (int r = 0; r < 3; ++r) best = std::min(best, run_all_threads(iterations, &lanes, &sink));
  const double flop = 2.0 * kChains * lanes * static_cast<double>(iterations) * at::get_num_threads();
  return flop / best / 1e9;
}

}  // namespace cpu
}  // namespace rpn2kernels
