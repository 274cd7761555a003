#include "allocation.h"

#include <cstdlib>
#include <cstring>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace rpn2kernels {
namespace cpu {

namespace {

// Whether outputs are advised now (RPN2K_HUGE_PAGES=1, on Linux).
bool huge_page_advice_enabled() {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const char* flag = std::getenv("RPN2K_HUGE_PAGES");
  return flag != nullptr && std::strcmp(flag, "1") == 0;
#else
  return false;
#endif
}

void advise_huge_pages(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
  if (bytes < kHugePageAdviceBytes || !huge_page_advice_enabled()) return;
  // Only whole 2 MiB pages inside the allocation: the advice applies to the mapping's pages, and
  // the ends may share a mapping with other data.
  constexpr uintptr_t kHugePage = uintptr_t(2) << 20;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t last = (begin + static_cast<uintptr_t>(bytes)) & ~(kHugePage - 1);
  if (last > first) (void)madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)t;
#endif
}

}  // namespace

at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor out = at::empty(sizes, options);
  advise_huge_pages(out);
  return out;
}

at::Tensor empty_output_like(const at::Tensor& like) {
  return empty_output(like.sizes(), like.options());
}

}  // namespace cpu
}  // namespace rpn2kernels
