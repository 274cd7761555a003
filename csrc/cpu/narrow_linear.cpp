// CPU kernel of rpn2kernels::narrow_linear: y = x·Wᵀ + b (functions.md §3, the identity
// reconciliation's inner product), register-tiled for shapes with one small dimension.
//
// Why a GEMM of our own: a GCN layer's dense products are x (N×m)·Wᵀ, G·W and Gᵀ·x with n = 16
// or 64 output features. The BLAS that torch ships (MKL) runs the n = 16 ones well below this
// 2-core AMD machine's rate (G1, medians interleaved: x·Wᵀ, G·W, Gᵀ·x 2.33, 6.02, 3.85 ms;
// this kernel 1.48, 1.93, 2.31 ms; docs/backends.md). One tile kernel covers all three
// products: C (rows × cols) = A·B with A read through arbitrary strides (element broadcast) and B
// row-major, C's tile of kRows × 2 vectors held in registers over the whole reduction.
//   forward  y  = x·Wᵀ   A = x,   B = Wᵀ (packed, m×n)      reduction over m
//   dx          = G·W    A = G,   B = W                     reduction over n
//   dW          = Gᵀ·x   A = Gᵀ (a strided view), B = x     reduction over N, column tiles outer
//                                                          (or xᵀ·G transposed, run_transposed, or
//                                                          reduction segments, run_segments)
// (the autograd formula calls this op for dx and dW, see rpn2kernels/ops/linear.py).
// Each output element is summed in k order by one task, or in shape-fixed segments summed in
// order: bitwise reproducible for any thread count.
// The hot loop exists twice, baseline and AVX2+FMA (narrow_gemm.inc, isa.h), picked at run time.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <memory>

#include "allocation.h"
#include "isa.h"
#if RPN2K_HAVE_AVX2_COPY
#include <immintrin.h>
#endif
#include "rpn2kernels/checks.h"
#include "rpn2kernels/linear_host.h"

namespace rpn2kernels {
namespace narrow {

// C[i, j] = Σ_k A[i·a_row + k·a_k] · B[k·ldb + j] (+ row_add[j]) for i < rows, j < cols, k < depth.
// b_zero_padded: B's rows hold zeros from column cols up to a multiple of kPaddedColumnBytes, so a
// partial column tile reads them in place instead of copying its B rows into a padded buffer.
template <typename T>
struct NarrowGemm {
  const T* a;
  int64_t a_row, a_k;
  const T* b;
  int64_t ldb;
  T* c;
  int64_t ldc;
  int64_t rows, cols, depth;
  const T* row_add;
  bool b_zero_padded;
};

// Reduction steps per pass of a register tile; bounds the zero-padded copy of a partial tile's B rows.
constexpr int64_t kNarrowChunk = 64;
// Reduction steps per pass when a row block walks B in place (no copy to bound). Each pass reloads
// and stores the tile's C block, and x·Wᵀ at n = 16 has a single column tile: 64-step passes cost
// it 12–17% against 512-step ones (A/B in one process at G1's shape; 256 and the whole reduction
// measure the same as 512, and at n = 64 within ±4%).
constexpr int64_t kInPlaceChunk = 512;
// Reduction steps per chunk of the transposed Gᵀ·x walk (run_transposed): 16 rows of x, ≈ 92 KB
// at G1's m = 1433, stay in L2 while every row block of the thread's columns consumes them.
constexpr int64_t kStreamChunk = 16;
// Row width of a packed Wᵀ, a multiple of every ISA copy's column tile (AVX2: 16 floats / 8 doubles).
constexpr int64_t kPaddedColumnBytes = 64;

namespace generic_isa {
// SSE2: 4 rows × 2 xmm accumulators + 2 B vectors + 1 broadcast of the 16 xmm registers.
constexpr int kVectorBytes = 16;
constexpr int kRows = 4;
#include "narrow_gemm.inc"
}  // namespace generic_isa

#if RPN2K_HAVE_AVX2_COPY
RPN2K_BEGIN_AVX2_COPY
constexpr int kVectorBytes = 32;
// 6 rows × 2 ymm accumulators + 2 B vectors + 1 broadcast = 15 of the 16 ymm registers.
constexpr int kRows = 6;
#include "narrow_gemm.inc"
RPN2K_END_AVX2_COPY
#endif

// Column tiles [lo, hi) of g, walking the reduction in chunks (the ISA's copy).
template <typename T>
void walk_col_tiles(const NarrowGemm<T>& g, int64_t lo, int64_t hi) {
#if RPN2K_HAVE_AVX2_COPY
  if (cpu::active_isa() == cpu::Isa::avx2) return avx2_isa::narrow_gemm_col_tiles<T>(g, lo, hi);
#endif
  generic_isa::narrow_gemm_col_tiles<T>(g, lo, hi);
}

// A small C over a long reduction (Gᵀ·x of a layer whose both sides are narrow, e.g. 64 → 64
// features over 65536 rows): splitting C's rows or columns among threads would make every thread
// stream the whole of A or B, once per row block. Instead the reduction is cut into segments,
// each computing all of C's tiles into its own partial C from one pass over its rows of A and B,
// and C = partial_0 + partial_1 + … in segment order. The segments depend on the shape only, so
// the result stays bitwise the same for any thread count.
constexpr int64_t kSegmentMinDepth = 1024;
constexpr int64_t kMaxSegments = 16;
constexpr int64_t kSegmentedOutputMax = 32768;

inline bool reduction_split(int64_t rows, int64_t cols, int64_t depth) {
  return rows * cols <= kSegmentedOutputMax && depth >= 2 * std::max(rows, cols) && depth >= 2 * kSegmentMinDepth;
}

template <typename T>
void run_segments(const NarrowGemm<T>& g, int64_t cols_per_tile) {
  const int64_t segments = std::min(kMaxSegments, g.depth / kSegmentMinDepth);
  const int64_t col_tiles = (g.cols + cols_per_tile - 1) / cols_per_tile;
  std::unique_ptr<T[]> partial(new T[(segments - 1) * g.rows * g.cols]);
  at::parallel_for(0, segments, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t s = lo; s < hi; ++s) {
      const int64_t k_lo = g.depth * s / segments, k_hi = g.depth * (s + 1) / segments;
      NarrowGemm<T> part = g;
      part.a = g.a + k_lo * g.a_k;
      part.b = g.b + k_lo * g.ldb;
      part.depth = k_hi - k_lo;
      if (s > 0) {
        part.c = partial.get() + (s - 1) * g.rows * g.cols;
        part.ldc = g.cols;
        part.row_add = nullptr;
      }
      walk_col_tiles(part, 0, col_tiles);
    }
  });
  at::parallel_for(0, g.rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, g.cols * segments)),
                   [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      T* c = g.c + i * g.ldc;
      for (int64_t s = 1; s < segments; ++s) {
        const T* p = partial.get() + (s - 1) * g.rows * g.cols + i * g.cols;
        for (int64_t j = 0; j < g.cols; ++j) c[j] += p[j];
      }
    }
  });
}

// Gᵀ·x computed as C' = xᵀ·G (cols × rows) into a scratch block and transposed into C: the
// register tile then broadcasts x's elements and loads G's rows as its B vectors (whole tiles,
// aligned), and each thread walks its columns of x chunk by chunk (row blocks innermost) instead
// of column strips of 64 rows. The direct column-tile walk loads every B vector unaligned from a
// different row of x. A/B in one process at G1 (16 × 1433 over 2708 rows, 2 threads): 1.51
// against 1.69 ms and 1.66 against 1.84 ms. Taken when A = Gᵀ has unit stride along C's rows and
// C's rows fill whole column tiles of C' (C' = (Gᵀ·x)ᵀ has them as its columns).
template <typename T>
bool transposed_walk_applies(const NarrowGemm<T>& g, int64_t cols_per_tile) {
  return g.a_row == 1 && g.row_add == nullptr && g.rows % cols_per_tile == 0;
}

template <typename T>
void run_transposed(const NarrowGemm<T>& g, int64_t rows_per_tile) {
  std::unique_ptr<T[]> scratch(new T[g.cols * g.rows]);
  const NarrowGemm<T> t{g.b, 1, g.ldb, g.a, g.a_k, scratch.get(), g.rows, g.cols, g.rows, g.depth, nullptr, false};
  const int64_t row_blocks = (t.rows + rows_per_tile - 1) / rows_per_tile;
  at::parallel_for(0, row_blocks, 1, [&](int64_t lo, int64_t hi) {
#if RPN2K_HAVE_AVX2_COPY
    if (cpu::active_isa() == cpu::Isa::avx2) return avx2_isa::narrow_gemm_row_blocks_chunks_outer<T>(t, lo, hi);
#endif
    generic_isa::narrow_gemm_row_blocks_chunks_outer<T>(t, lo, hi);
  });
  at::parallel_for(0, g.rows, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      for (int64_t j = 0; j < g.cols; ++j) g.c[i * g.ldc + j] = scratch[j * g.rows + i];
    }
  });
}

// Rows of A stream sequentially (x·Wᵀ, G·W) unless C has fewer rows than columns and the reduction
// is longer than C's rows (Gᵀ·x), which walks B's rows instead, or C is small and the reduction long
// (above). The row-block walk reads the whole of B once per block of kRows rows: for Gᵀ·x with at
// least as many input features as rows (N ≤ m, once sent there) that was 3–6 passes over x, and dW
// took 3× MKL's time (N=4096, m=4096/8192, 16/32 outputs: MKL ÷ kernel 0.29–0.38, now 1.4–2.0).
template <typename T>
void run(const NarrowGemm<T>& g) {
#if RPN2K_HAVE_AVX2_COPY
  const bool avx2 = cpu::active_isa() == cpu::Isa::avx2;
  const int64_t rows_per_tile = avx2 ? avx2_isa::kRows : generic_isa::kRows;
  const int64_t cols_per_tile = avx2 ? avx2_isa::kTileCols<T> : generic_isa::kTileCols<T>;
#else
  const int64_t rows_per_tile = generic_isa::kRows, cols_per_tile = generic_isa::kTileCols<T>;
#endif
  if (reduction_split(g.rows, g.cols, g.depth)) return run_segments(g, cols_per_tile);
  const bool by_columns = g.rows < g.cols && g.depth > g.rows;
  if (by_columns && transposed_walk_applies(g, cols_per_tile)) return run_transposed(g, rows_per_tile);
  const int64_t row_blocks = (g.rows + rows_per_tile - 1) / rows_per_tile;
  const int64_t col_tiles = (g.cols + cols_per_tile - 1) / cols_per_tile;
  // ≈ 64k multiply-adds per parallel chunk.
  const int64_t per_unit = std::max<int64_t>(1, (by_columns ? g.rows * cols_per_tile : rows_per_tile * g.cols) * g.depth);
  const int64_t grain = std::max<int64_t>(1, 65536 / per_unit);
  at::parallel_for(0, by_columns ? col_tiles : row_blocks, grain, [&](int64_t lo, int64_t hi) {
    if (by_columns) return walk_col_tiles(g, lo, hi);
#if RPN2K_HAVE_AVX2_COPY
    if (avx2) return avx2_isa::narrow_gemm_row_blocks<T>(g, lo, hi);
#endif
    generic_isa::narrow_gemm_row_blocks<T>(g, lo, hi);
  });
}

// Wᵀ (depth × cols) of an (cols × depth) weight, rows zero-padded to kPaddedColumnBytes: the
// forward's B, read by every row block (a partial column tile, e.g. n = 7 output classes, would
// otherwise copy its B rows into a padded buffer once per row block and chunk: 3–4× the time of
// n = 16 before this). Returned as a (depth, cols) view with the padded row stride.
template <typename T>
at::Tensor pack_transposed(const at::Tensor& weight) {
  const int64_t cols = weight.size(0), depth = weight.size(1);
  constexpr int64_t per_row = kPaddedColumnBytes / static_cast<int64_t>(sizeof(T));
  const int64_t ld = (cols + per_row - 1) / per_row * per_row;
  // Written once, padding included (the packed B of a Gᵀ·x over a non-contiguous x is as large
  // as x, so no separate zero fill).
  at::Tensor packed = at::empty({depth, ld}, weight.options());
  const T* w = weight.data_ptr<T>();
  T* p = packed.data_ptr<T>();
  const int64_t w_row = weight.stride(0), w_k = weight.stride(1);
  at::parallel_for(0, depth, 4096 / std::max<int64_t>(1, cols), [&](int64_t lo, int64_t hi) {
    for (int64_t k = lo; k < hi; ++k) {
      for (int64_t j = 0; j < cols; ++j) p[k * ld + j] = w[j * w_row + k * w_k];
      for (int64_t j = cols; j < ld; ++j) p[k * ld + j] = T(0);
    }
  });
  return packed.narrow(1, 0, cols);
}

at::Tensor narrow_linear_cpu(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias) {
  check_narrow_linear(x, weight, bias);
  check_cpu_backend(x, "x");
  const int64_t rows = x.size(0), depth = x.size(1), cols = weight.size(0);
  // B = Wᵀ must have unit stride along out_features; a transposed view (the backward's G·W and
  // Gᵀ·x) already has, an ordinary (n, m) weight is packed (n·m elements, small by assumption).
  const bool pack = !(weight.stride(0) == 1 || cols <= 1);
  const at::Tensor add = (bias.has_value() && bias->defined()) ? bias->contiguous() : at::Tensor();
  at::Tensor out = cpu::empty_output({rows, cols}, x.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rpn2kernels_narrow_linear_cpu", [&] {
    const at::Tensor b = pack ? pack_transposed<scalar_t>(weight) : weight.t();
    NarrowGemm<scalar_t> g{x.data_ptr<scalar_t>(), x.stride(0), x.stride(1),
                           b.data_ptr<scalar_t>(), depth > 1 ? b.stride(0) : cols,
                           out.data_ptr<scalar_t>(), cols, rows, cols, depth,
                           add.defined() ? add.data_ptr<scalar_t>() : nullptr, pack};
    run(g);
  });
  return out;
}

}  // namespace narrow

TORCH_LIBRARY_IMPL(rpn2kernels, CPU, m) { m.impl("narrow_linear", &narrow::narrow_linear_cpu); }

}  // namespace rpn2kernels
