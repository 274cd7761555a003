#pragma once
// Instruction-set choice of the CPU kernels that have hand-vectorised variants. The extension is
// compiled for the baseline ISA (x86-64 SSE2) so that it loads on any machine; kernels whose hot
// loop is compute-bound carry a second copy of that loop compiled for AVX2+FMA (the same source
// included twice under different `#pragma GCC target`s) and pick one at run time from CPUID.
// RPN2K_CPU_ISA=generic (or rpn2kernels._C.cpu_isa("generic")) forces the baseline copy, so both
// copies are testable on one machine.
#include <cstdint>

// The AVX2 copies are built with GCC's target pragmas on x86-64; elsewhere only the baseline exists.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RPN2K_HAVE_AVX2_COPY 1
#else
#define RPN2K_HAVE_AVX2_COPY 0
#endif

// Opens and closes a file's AVX2+FMA copy: the code between them compiles for AVX2+FMA inside
// namespace avx2_isa (used as `#if RPN2K_HAVE_AVX2_COPY` / RPN2K_BEGIN_AVX2_COPY / the ISA's
// constants and `#include "<loops>.inc"` / RPN2K_END_AVX2_COPY / `#endif`).
#define RPN2K_BEGIN_AVX2_COPY \
  _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma\")") namespace avx2_isa {
#define RPN2K_END_AVX2_COPY \
  }                         \
  _Pragma("GCC pop_options")

namespace rpn2kernels {
namespace cpu {

enum class Isa : int { generic = 0, avx2 = 1 };

// The ISA the dispatching kernels use now: the best supported one unless forced.
Isa active_isa();
// Whether this CPU (and this build) can run the ISA's copy of the kernels.
bool isa_supported(Isa isa);
const char* isa_name(Isa isa);
// Selects the copy to run; returns false (changing nothing) when the name is unknown or unsupported.
// "auto" returns to the best supported one.
bool set_active_isa(const char* name);

}  // namespace cpu
}  // namespace rpn2kernels
