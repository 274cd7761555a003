#include "allocation.h"

#include <ATen/Context.h>
#include <ATen/EmptyTensor.h>
#include <ATen/native/TensorFactories.h>
#include <c10/core/Allocator.h>
#include <c10/util/accumulate.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

#if defined(__linux__)
#include <pthread.h>
#include <sys/mman.h>
#endif

namespace rpn2kernels {
namespace cpu {

namespace {

constexpr size_t kHugePage = size_t(2) << 20;
// Block sizes are whole granules, so requests that differ by a few bytes share blocks.
constexpr size_t kGranule = size_t(64) << 10;
// A held block serves a request at most this fraction larger than the block needs (1/8): a
// slightly bigger block is still a hit, a much bigger one would strand memory.
constexpr size_t kSlackShift = 3;

// Whether new large blocks are advised now (RPN2K_HUGE_PAGES=1, on Linux).
bool huge_page_advice_enabled() {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const char* flag = std::getenv("RPN2K_HUGE_PAGES");
  return flag != nullptr && std::strcmp(flag, "1") == 0;
#else
  return false;
#endif
}

// Free bytes the cache may hold: RPN2K_OUTPUT_CACHE_MB, read at every allocation and release so a
// process can change it. nullopt when it is not a whole number of MiB >= 0.
c10::optional<size_t> cache_capacity_bytes() {
  const char* flag = std::getenv("RPN2K_OUTPUT_CACHE_MB");
  if (flag == nullptr || *flag == '\0') return size_t(kDefaultOutputCacheMiB) << 20;
  char* end = nullptr;
  const long long mib = std::strtoll(flag, &end, 10);
  if (end == flag || *end != '\0' || mib < 0) return c10::nullopt;
  return static_cast<size_t>(mib) << 20;
}

size_t block_bytes(size_t request) { return (request + kGranule - 1) / kGranule * kGranule; }

struct Block {
  void* data;
  size_t bytes;
  bool mapped;  // a mapping of its own (munmap), else from posix_memalign (free)
};

// Freed output blocks kept for reuse, oldest first. One instance for the process, never destroyed
// (a tensor may be freed during static destruction).
class OutputCache final : public c10::Allocator {
 public:
  // Besides empty_output's requests, serves a resize_ of such an output, of any size: only blocks
  // of kCachedOutputBytes or more are held.
  c10::DataPtr allocate(size_t n) override {
    if (n == 0) return c10::DataPtr(nullptr, c10::Device(c10::DeviceType::CPU));
    const bool cacheable = n >= static_cast<size_t>(kCachedOutputBytes);
    Block* block = cacheable ? take(block_bytes(n)) : nullptr;
    if (block == nullptr) block = new_block(cacheable ? block_bytes(n) : n);
    return {block->data, block, &OutputCache::release, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  OutputCacheInfo info() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {static_cast<int64_t>(free_.size()), static_cast<int64_t>(free_bytes_), hits_, misses_};
  }

  void empty() {
    std::vector<Block*> evicted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      evicted.swap(free_);
      free_bytes_ = 0;
    }
    for (Block* block : evicted) destroy(block);
  }

  // After fork() the child owns a copy of the free list but maybe a locked mutex (another thread
  // held it at the fork): start the child with a fresh one.
  void reset_lock_in_child() { new (&mutex_) std::mutex(); }

 private:
  static void release(void* ctx) { instance().give_back(static_cast<Block*>(ctx)); }

  Block* take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t best = free_.size();
    for (size_t i = 0; i < free_.size(); ++i) {
      const size_t have = free_[i]->bytes;
      if (have >= bytes && have - bytes <= (bytes >> kSlackShift) &&
          (best == free_.size() || have < free_[best]->bytes)) {
        best = i;
      }
    }
    if (best == free_.size()) {
      ++misses_;
      return nullptr;
    }
    ++hits_;
    Block* block = free_[best];
    free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(best));
    free_bytes_ -= block->bytes;
    return block;
  }

  // Runs in a tensor's deleter, so it never throws: a capacity made invalid since the allocation
  // frees the block.
  void give_back(Block* block) {
    const size_t capacity = cache_capacity_bytes().value_or(0);
    std::vector<Block*> evicted;
    if (block->bytes > capacity || block->bytes < static_cast<size_t>(kCachedOutputBytes)) {
      evicted.push_back(block);
    } else {
      std::lock_guard<std::mutex> lock(mutex_);
      free_.push_back(block);
      free_bytes_ += block->bytes;
      size_t oldest = 0;
      while (free_bytes_ > capacity) {
        free_bytes_ -= free_[oldest]->bytes;
        evicted.push_back(free_[oldest++]);
      }
      free_.erase(free_.begin(), free_.begin() + static_cast<std::ptrdiff_t>(oldest));
    }
    for (Block* old : evicted) destroy(old);  // outside the lock: free() may unmap
  }

  static Block* new_block(size_t bytes) {
#if defined(__linux__)
    // A large block is a mapping of its own, 2 MiB-aligned so that huge pages can back all of it,
    // and its advice ends with it: from malloc it could land in a heap range that kept an earlier
    // block's advice.
    if (bytes >= static_cast<size_t>(kHugePageAdviceBytes)) {
      void* region = mmap(nullptr, bytes + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      TORCH_CHECK(region != MAP_FAILED, "rpn2kernels: could not map an output of ", bytes, " bytes");
      const uintptr_t begin = reinterpret_cast<uintptr_t>(region);
      const uintptr_t aligned = (begin + kHugePage - 1) & ~uintptr_t(kHugePage - 1);
      if (aligned > begin) munmap(region, aligned - begin);
      const uintptr_t tail = aligned + bytes, end = begin + bytes + kHugePage;
      if (end > tail) munmap(reinterpret_cast<void*>(tail), end - tail);
      void* data = reinterpret_cast<void*>(aligned);
#if defined(MADV_HUGEPAGE)
      // Where the kernel does not support the advice the call fails and is ignored.
      if (huge_page_advice_enabled()) (void)madvise(data, bytes, MADV_HUGEPAGE);
#endif
      return new Block{data, bytes, true};
    }
#endif
    void* data = nullptr;  // 64-byte aligned like PyTorch's CPU allocator
    TORCH_CHECK(posix_memalign(&data, 64, bytes) == 0 && data != nullptr, "rpn2kernels: could not allocate an output of ",
                bytes, " bytes");
    return new Block{data, bytes, false};
  }

  static void destroy(Block* block) {
#if defined(__linux__)
    if (block->mapped) {
      munmap(block->data, block->bytes);
    } else
#endif
    {
      std::free(block->data);
    }
    delete block;
  }

 public:
  static OutputCache& instance() {
    static OutputCache* cache = [] {
      auto* created = new OutputCache();
#if defined(__linux__)
      pthread_atfork(nullptr, nullptr, [] { instance().reset_lock_in_child(); });
#endif
      return created;
    }();
    return *cache;
  }

 private:
  std::mutex mutex_;
  std::vector<Block*> free_;  // oldest first
  size_t free_bytes_ = 0;
  int64_t hits_ = 0;
  int64_t misses_ = 0;
};

}  // namespace

at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  const int64_t bytes =
      c10::multiply_integers(sizes) * static_cast<int64_t>(c10::elementSize(options.dtype().toScalarType()));
  const c10::optional<size_t> capacity = cache_capacity_bytes();
  TORCH_CHECK(capacity.has_value(), "rpn2kernels: RPN2K_OUTPUT_CACHE_MB must be a whole number of MiB >= 0, got '",
              std::getenv("RPN2K_OUTPUT_CACHE_MB"), "'");
  if (bytes < kCachedOutputBytes || *capacity == 0) return at::empty(sizes, options);
  at::Tensor out(at::detail::empty_generic(sizes, &OutputCache::instance(), c10::DispatchKeySet(c10::DispatchKey::CPU),
                                           options.dtype().toScalarType(), c10::nullopt));
  // What at::empty does, so a kernel that missed an element shows NaN there, not stale data.
  if (C10_UNLIKELY(at::globalContext().deterministicAlgorithms() &&
                   at::globalContext().deterministicFillUninitializedMemory())) {
    at::native::fill_empty_deterministic_(out);
  }
  return out;
}

at::Tensor empty_output_like(const at::Tensor& like) { return empty_output(like.sizes(), like.options()); }

OutputCacheInfo output_cache_info() { return OutputCache::instance().info(); }

void empty_output_cache() { OutputCache::instance().empty(); }

}  // namespace cpu
}  // namespace rpn2kernels
