#pragma once
// Output buffers of the CPU kernels.
//
// A large tensor from at::empty is a fresh anonymous mapping (glibc serves large requests with
// mmap and returns them to the kernel on free, under a threshold that adapts up to 32 MiB), so
// the kernel's first write faults it in one 4 KiB page at a time. Measured on the 2-core VM:
// filling a fresh 256 MiB buffer takes 110-118 ms, against 13-16 ms to refill the same buffer —
// the page faults, not the kernel, dominated a 1M-node SpMM pass, and a 16 MB chain output
// faulted in some iterations and not in others.
//
// So outputs of kCachedOutputBytes or more come from a small cache of freed output blocks, the CPU
// counterpart of PyTorch's CUDA caching allocator: a training loop frees and asks for the same
// sizes every step, and a reused block is already mapped. Free blocks are kept up to a byte cap
// (RPN2K_OUTPUT_CACHE_MB, default kDefaultOutputCacheMiB; 0 turns the cache off) and the oldest are
// returned to the system beyond it; empty_output_cache() returns them all.
//
// With RPN2K_HUGE_PAGES=1 a new block of kHugePageAdviceBytes or more is also advised
// MADV_HUGEPAGE before anything touches it (as PyTorch does for every allocation under
// THP_MEM_ALLOC_ENABLE=1): the 256 MiB fill then takes 22-36 ms. Opt-in: on this Firecracker VM,
// whose balloon reports freed order-11 blocks to the host, a fresh huge page sometimes costs host
// faults. Neither changes a value.
#include <ATen/ATen.h>

#include <cstdint>

namespace rpn2kernels {
namespace cpu {

// Smallest output (bytes) served from the cache of freed output blocks.
constexpr int64_t kCachedOutputBytes = int64_t(1) << 20;
// Free bytes the cache keeps unless RPN2K_OUTPUT_CACHE_MB says otherwise.
constexpr int64_t kDefaultOutputCacheMiB = 1024;
// Smallest new block (bytes) that is advised for huge pages under RPN2K_HUGE_PAGES=1.
constexpr int64_t kHugePageAdviceBytes = int64_t(32) << 20;

// A contiguous CPU tensor like at::empty(sizes, options), its storage from the output cache when
// it is large (see above). Resizable, and filled like at::empty under deterministic algorithms.
at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options);
at::Tensor empty_output_like(const at::Tensor& like);

struct OutputCacheInfo {
  int64_t free_blocks;   // blocks held for reuse
  int64_t free_bytes;    // their bytes
  int64_t hits;          // requests served by a held block
  int64_t misses;        // requests that needed a new block
};
OutputCacheInfo output_cache_info();
// Returns every held block to the system.
void empty_output_cache();

}  // namespace cpu
}  // namespace rpn2kernels
