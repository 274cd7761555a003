#pragma once
// Output buffers of the CPU kernels.
//
// A large tensor from at::empty is a fresh anonymous mapping (glibc serves every request above
// its largest mmap threshold, 32 MiB, with mmap, and returns it to the kernel on free), so the
// kernel's first write faults it in one 4 KiB page at a time. Measured on the 2-core VM: filling a
// fresh 256 MiB buffer takes 110-118 ms, against 13-16 ms to refill the same buffer and 22-36 ms
// when the mapping is advised for transparent huge pages first — the page faults, not the
// kernel, dominated a 1M-node SpMM pass. So outputs above that size are advised MADV_HUGEPAGE
// before anything touches them, as PyTorch does for every allocation under THP_MEM_ALLOC_ENABLE=1.
// The advice changes no value; where the kernel does not support it the call fails and is ignored.
// Opt-in (RPN2K_HUGE_PAGES=1): on this Firecracker VM, whose balloon reports freed order-11 blocks
// to the host, a fresh huge page sometimes costs host faults, and E2 interleaved with the other
// benchmark rows got slower (median 213 -> 380 ms) while G4 got faster (3.06 -> 1.6-2.1 s).
#include <ATen/ATen.h>

#include <cstdint>

namespace rpn2kernels {
namespace cpu {

// Smallest output (bytes) that is advised.
constexpr int64_t kHugePageAdviceBytes = int64_t(32) << 20;

// at::empty(sizes, options), advised for huge pages when it is large (see above).
at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options);
at::Tensor empty_output_like(const at::Tensor& like);

}  // namespace cpu
}  // namespace rpn2kernels
