// CPU kernel of rpn2kernels::narrow_linear: y = x·Wᵀ + b (functions.md §3, the identity
// reconciliation's inner product), register-tiled for shapes with one small dimension.
//
// Why a GEMM of our own: a GCN layer's dense products are x (N×m)·Wᵀ, G·W and Gᵀ·x with n = 16
// or 64 output features. The BLAS that torch ships (MKL) runs the n = 16 ones well below this
// 2-core AMD machine's rate (G1, min of 40–60 runs: x·Wᵀ, G·W, Gᵀ·x 1.5–1.9, 3.8–4.8, 2.6–3.6 ms;
// this kernel 1.2, 1.7, 1.9–2.4 ms; docs/backends.md). One tile kernel covers all three
// products: C (rows × cols) = A·B with A read through arbitrary strides (element broadcast) and B
// row-major, C's tile of kRows × 2 vectors held in registers over the whole reduction.
//   forward  y  = x·Wᵀ   A = x,   B = Wᵀ (packed, m×n)      reduction over m
//   dx          = G·W    A = G,   B = W                     reduction over n
//   dW          = Gᵀ·x   A = Gᵀ (a strided view), B = x     reduction over N, column tiles outer
// (the autograd formula calls this op for dx and dW, see rpn2kernels/ops/linear.py).
// Each output element is summed by one task in k order: bitwise reproducible for any thread count.
// The hot loop exists twice, baseline and AVX2+FMA (narrow_gemm.inc, isa.h), picked at run time.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

#include "isa.h"
#if RPN2K_HAVE_AVX2_COPY
#include <immintrin.h>
#endif
#include "rpn2kernels/checks.h"
#include "rpn2kernels/linear_host.h"

namespace rpn2kernels {
namespace narrow {

// C[i, j] = Σ_k A[i·a_row + k·a_k] · B[k·ldb + j] (+ row_add[j]) for i < rows, j < cols, k < depth.
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
};

// Reduction steps per pass of a register tile; bounds the zero-padded copy of a partial tile's B rows.
constexpr int64_t kNarrowChunk = 64;

namespace generic_isa {
// SSE2: 4 rows × 2 xmm accumulators + 2 B vectors + 1 broadcast of the 16 xmm registers.
constexpr int kVectorBytes = 16;
constexpr int kRows = 4;
#include "narrow_gemm.inc"
}  // namespace generic_isa

#if RPN2K_HAVE_AVX2_COPY
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2_isa {
constexpr int kVectorBytes = 32;
// 6 rows × 2 ymm accumulators + 2 B vectors + 1 broadcast = 15 of the 16 ymm registers.
constexpr int kRows = 6;
#include "narrow_gemm.inc"
}  // namespace avx2_isa
#pragma GCC pop_options
#endif

// Rows of A stream sequentially (x·Wᵀ, G·W) unless C has few rows and a long reduction over a
// wide B (Gᵀ·x), which walks B's rows instead.
template <typename T>
void run(const NarrowGemm<T>& g) {
  const bool by_columns = g.rows < g.cols && g.depth > g.cols;
#if RPN2K_HAVE_AVX2_COPY
  const bool avx2 = cpu::active_isa() == cpu::Isa::avx2;
  const int64_t rows_per_tile = avx2 ? avx2_isa::kRows : generic_isa::kRows;
  const int64_t cols_per_tile = avx2 ? avx2_isa::kTileCols<T> : generic_isa::kTileCols<T>;
#else
  const int64_t rows_per_tile = generic_isa::kRows, cols_per_tile = generic_isa::kTileCols<T>;
#endif
  const int64_t row_blocks = (g.rows + rows_per_tile - 1) / rows_per_tile;
  const int64_t col_tiles = (g.cols + cols_per_tile - 1) / cols_per_tile;
  // ≈ 64k multiply-adds per parallel chunk.
  const int64_t per_unit = std::max<int64_t>(1, (by_columns ? g.rows * cols_per_tile : rows_per_tile * g.cols) * g.depth);
  const int64_t grain = std::max<int64_t>(1, 65536 / per_unit);
  at::parallel_for(0, by_columns ? col_tiles : row_blocks, grain, [&](int64_t lo, int64_t hi) {
#if RPN2K_HAVE_AVX2_COPY
    if (avx2) {
      return by_columns ? avx2_isa::narrow_gemm_col_tiles<T>(g, lo, hi) : avx2_isa::narrow_gemm_row_blocks<T>(g, lo, hi);
    }
#endif
    by_columns ? generic_isa::narrow_gemm_col_tiles<T>(g, lo, hi) : generic_isa::narrow_gemm_row_blocks<T>(g, lo, hi);
  });
}

at::Tensor narrow_linear_cpu(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias) {
  check_narrow_linear(x, weight, bias);
  check_cpu_backend(x, "x");
  const int64_t rows = x.size(0), depth = x.size(1), cols = weight.size(0);
  // B = Wᵀ must have unit stride along out_features; a transposed view (the backward's G·W and
  // Gᵀ·x) already has, an ordinary (n, m) weight is packed (n·m elements, small by assumption).
  const at::Tensor b = (weight.stride(0) == 1 || cols <= 1) ? weight.t() : weight.t().contiguous();
  const at::Tensor add = (bias.has_value() && bias->defined()) ? bias->contiguous() : at::Tensor();
  at::Tensor out = at::empty({rows, cols}, x.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rpn2kernels_narrow_linear_cpu", [&] {
    NarrowGemm<scalar_t> g{x.data_ptr<scalar_t>(), x.stride(0), x.stride(1),
                           b.data_ptr<scalar_t>(), depth > 1 ? b.stride(0) : cols,
                           out.data_ptr<scalar_t>(), cols, rows, cols, depth,
                           add.defined() ? add.data_ptr<scalar_t>() : nullptr};
    run(g);
  });
  return out;
}

}  // namespace narrow

TORCH_LIBRARY_IMPL(rpn2kernels, CPU, m) { m.impl("narrow_linear", &narrow::narrow_linear_cpu); }

}  // namespace rpn2kernels
