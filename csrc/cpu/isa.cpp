// Run-time ISA choice for the CPU kernels with AVX2+FMA copies (see isa.h).
#include "isa.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace rpn2kernels {
namespace cpu {
namespace {

bool cpu_has_avx2_fma() {
#if RPN2K_HAVE_AVX2_COPY
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

Isa best_isa() { return cpu_has_avx2_fma() ? Isa::avx2 : Isa::generic; }

bool parse(const char* name, Isa* out) {
  if (std::strcmp(name, "auto") == 0) {
    *out = best_isa();
    return true;
  }
  for (Isa isa : {Isa::generic, Isa::avx2}) {
    if (std::strcmp(name, isa_name(isa)) == 0 && isa_supported(isa)) {
      *out = isa;
      return true;
    }
  }
  return false;
}

// The initial choice honours RPN2K_CPU_ISA; an unknown or unsupported value keeps the best ISA
// (the Python side reports it, see rpn2kernels/_extension.py).
Isa initial_isa() {
  Isa isa = best_isa();
  if (const char* env = std::getenv("RPN2K_CPU_ISA")) parse(env, &isa);
  return isa;
}

std::atomic<int>& active() {
  static std::atomic<int> value{static_cast<int>(initial_isa())};
  return value;
}

}  // namespace

Isa active_isa() { return static_cast<Isa>(active().load(std::memory_order_relaxed)); }

bool isa_supported(Isa isa) { return isa == Isa::generic || (isa == Isa::avx2 && cpu_has_avx2_fma()); }

const char* isa_name(Isa isa) { return isa == Isa::avx2 ? "avx2" : "generic"; }

bool set_active_isa(const char* name) {
  Isa isa;
  if (!parse(name, &isa)) return false;
  active().store(static_cast<int>(isa), std::memory_order_relaxed);
  return true;
}

}  // namespace cpu
}  // namespace rpn2kernels
