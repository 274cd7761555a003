// CPU kernels of the expansion family (functions.md §2.4–2.7, §2.14).
//
// expand_linear never materialises κ(x) for the whole batch: rows are processed in tiles whose
// expansion (tile × D) stays in cache and feeds one multithreaded GEMM (blocked recompute), so the
// memory is O(tile·D), not O(B·D). Backward recomputes the tile's expansion for dW and contracts
// dK = G·W with the derivative recurrence for dx, so nothing but the inputs is saved.
// Taylor of degree 2 uses the bilinear identity (§2.4) and never forms x⊗x at all.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>


#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <type_traits>
#include <vector>

#include "allocation.h"
#include "exp_vector.h"
#include "isa.h"
#include "rpn2kernels/expansion_host.h"
#include "rpn2kernels/expansion_math.h"

namespace rpn2kernels {
namespace expansion {
namespace {

// Bytes of the expansion buffer of one call: large enough that the GEMMs it feeds run at full
// speed (small inner dimensions and repeated rank-k updates of dW cost more than the buffer saves),
// bounded so the memory is O(buffer), never O(B·D).
constexpr int64_t kBufferBytes = int64_t(8) << 20;
constexpr int64_t kMinTileRows = 256;
constexpr int64_t kMinBlockColumns = 256;
// Below this m the Taylor-2 identity loses to tile materialisation (n tiny GEMMs).
constexpr int64_t kTaylor2FusedMinM = 64;


int64_t tile_rows(int64_t B, int64_t width, int64_t element_size) {
  const int64_t by_budget = kBufferBytes / std::max<int64_t>(1, width * element_size);
  return std::max<int64_t>(1, std::min<int64_t>(B, std::max(kMinTileRows, by_budget)));
}

// The expansion buffer, kept per thread across calls: a fresh multi-MB allocation per call costs
// more in page faults than the expansion itself. Never used by two calls at once: a slot belongs
// to one call (or one parallel task of it) on its thread until that returns.
at::Tensor workspace(int64_t numel, const at::TensorOptions& options, int slot = 0) {
  thread_local at::Tensor bytes[2];
  const int64_t needed = numel * static_cast<int64_t>(c10::elementSize(c10::typeMetaToScalarType(options.dtype())));
  if (!bytes[slot].defined() || bytes[slot].numel() < needed) bytes[slot] = at::empty({needed}, options.dtype(at::kByte));
  return bytes[slot].narrow(0, 0, needed).view(c10::typeMetaToScalarType(options.dtype()));
}

// Attributes per backward block: about kBufferBytes of expansion over all B rows, at least
// kMinBlockColumns columns, and a multiple of 64 columns where m allows it (GEMMs on ragged column
// counts such as 510 run markedly slower than on 384 or 512).
int64_t attribute_block(int64_t m, int64_t K, int64_t B, int64_t element_size) {
  const int64_t columns = std::max(kMinBlockColumns, kBufferBytes / (element_size * std::max<int64_t>(1, B)));
  int64_t attrs = std::max<int64_t>(1, columns / K);
  const int64_t align = 64 / std::gcd<int64_t>(K, 64);
  if (attrs >= align) attrs -= attrs % align;
  return std::min(m, attrs);
}

int64_t grain_rows(int64_t work_per_row) { return std::max<int64_t>(1, 4096 / std::max<int64_t>(1, work_per_row)); }

// The polynomial families run attribute-chunk by attribute-chunk with the recurrence coefficients
// hoisted out of the element loop, so the compiler vectorises across attributes; other bases
// call for_each_feature per element.
constexpr int64_t kAttributeChunk = 64;

template <typename T>
std::vector<RecurrenceCoefficients<T>> coefficient_table(const BasisSpec& spec) {
  std::vector<RecurrenceCoefficients<T>> table(static_cast<size_t>(std::max<int64_t>(spec.features, 1) + 1));
  for (int64_t k = 2; k <= spec.features; ++k) table[k] = recurrence_coefficients<T>(spec, k);
  return table;
}

// P_1 … P_K of one row's attributes into out (interleaved, K per attribute).
template <typename T>
void polynomial_row(const BasisSpec& spec, const RecurrenceCoefficients<T>* coeff, const T* x, int64_t attrs,
                    T* out) {
  const int64_t K = spec.features;
  const InitialTerms<T> init = initial_terms<T>(spec);
  T p_prev[kAttributeChunk], p_cur[kAttributeChunk];
  for (int64_t c0 = 0; c0 < attrs; c0 += kAttributeChunk) {
    const int64_t len = std::min(kAttributeChunk, attrs - c0);
    const T* xc = x + c0;
    T* oc = out + c0 * K;
    for (int64_t i = 0; i < len; ++i) {
      p_prev[i] = init.p0;
      p_cur[i] = init.u * xc[i] + init.v;
      oc[i * K] = p_cur[i];
    }
    for (int64_t k = 2; k <= K; ++k) {
      const RecurrenceCoefficients<T> r = coeff[k];
      for (int64_t i = 0; i < len; ++i) {
        const T xi = xc[i];
        const T next = (r.a * xi + r.b) * p_cur[i] + (r.c + r.e * xi * xi) * p_prev[i];
        p_prev[i] = p_cur[i];
        p_cur[i] = next;
        oc[i * K + k - 1] = next;
      }
    }
  }
}

// dx_i = Σ_k g[i*K + k - 1]·P'_k(x_i) for one row, through the differentiated recurrence.
template <typename T>
void polynomial_row_backward(const BasisSpec& spec, const RecurrenceCoefficients<T>* coeff, const T* g, const T* x,
                             int64_t attrs, T* dx) {
  const int64_t K = spec.features;
  const InitialTerms<T> init = initial_terms<T>(spec);
  T p_prev[kAttributeChunk], p_cur[kAttributeChunk], d_prev[kAttributeChunk], d_cur[kAttributeChunk];
  T acc[kAttributeChunk];
  for (int64_t c0 = 0; c0 < attrs; c0 += kAttributeChunk) {
    const int64_t len = std::min(kAttributeChunk, attrs - c0);
    const T* xc = x + c0;
    const T* gc = g + c0 * K;
    for (int64_t i = 0; i < len; ++i) {
      p_prev[i] = init.p0;
      p_cur[i] = init.u * xc[i] + init.v;
      d_prev[i] = T(0);
      d_cur[i] = init.u;
      acc[i] = gc[i * K] * init.u;
    }
    for (int64_t k = 2; k <= K; ++k) {
      const RecurrenceCoefficients<T> r = coeff[k];
      for (int64_t i = 0; i < len; ++i) {
        const T xi = xc[i];
        const T lead = r.a * xi + r.b, tail = r.c + r.e * xi * xi;
        const T p_next = lead * p_cur[i] + tail * p_prev[i];
        const T d_next = r.a * p_cur[i] + lead * d_cur[i] + 2 * r.e * xi * p_prev[i] + tail * d_prev[i];
        p_prev[i] = p_cur[i];
        p_cur[i] = p_next;
        d_prev[i] = d_cur[i];
        d_cur[i] = d_next;
        acc[i] += gc[i * K + k - 1] * d_next;
      }
    }
    for (int64_t i = 0; i < len; ++i) dx[c0 + i] = acc[i];
  }
}

bool is_rbf(Basis b) { return b == Basis::GaussianRBF || b == Basis::InverseQuadraticRBF; }

namespace generic_isa {
constexpr int kVectorBytes = 16;
#include "exp_vector.inc"
}  // namespace generic_isa

#if RPN2K_HAVE_AVX2_COPY
RPN2K_BEGIN_AVX2_COPY
constexpr int kVectorBytes = 32;
#include "exp_vector.inc"
RPN2K_END_AVX2_COPY
#endif

// p[i] = e^p[i] for i < n (the ISA's copy).
template <typename T>
void exp_in_place(T* p, int64_t n) {
#if RPN2K_HAVE_AVX2_COPY
  if (cpu::active_isa() == cpu::Isa::avx2) return avx2_isa::exp_inplace<T>(p, n);
#endif
  generic_isa::exp_inplace<T>(p, n);
}

// RBF features of one row, centre by centre so the attribute loop vectorises. The Gaussian writes
// its exponents −ε²(x − μ_k)² first, then exponentiates the row in place while it is in L1.
template <typename T>
void rbf_row(const BasisSpec& spec, const T* x, int64_t attrs, T* out) {
  const int64_t K = spec.features;
  const RbfGrid<T> grid = rbf_grid<T>(spec);
  const T eps2 = grid.eps2;
  const bool gaussian = spec.basis == Basis::GaussianRBF;
  for (int64_t k = 0; k < K; ++k) {
    const T centre = grid.centre(k);
    if (gaussian) {
      for (int64_t i = 0; i < attrs; ++i) {
        const T d = x[i] - centre;
        out[i * K + k] = -eps2 * d * d;
      }
    } else {
      for (int64_t i = 0; i < attrs; ++i) {
        const T d = x[i] - centre;
        out[i * K + k] = T(1) / (T(1) + eps2 * d * d);
      }
    }
  }
  if (gaussian) exp_in_place(out, attrs * K);
}

// dx_i = Σ_k g[i*K + k]·φ'_k(x_i) from the features φ (already computed): φ' = −2ε²(x − μ)·φ for
// the Gaussian, −2ε²(x − μ)·φ² for the inverse quadratic — no transcendental in backward.
template <typename T>
void rbf_row_backward(const BasisSpec& spec, const T* g, const T* phi, const T* x, int64_t attrs, T* dx) {
  const int64_t K = spec.features;
  const RbfGrid<T> grid = rbf_grid<T>(spec);
  const bool gaussian = spec.basis == Basis::GaussianRBF;
  for (int64_t i = 0; i < attrs; ++i) {
    T acc = T(0);
    for (int64_t k = 0; k < K; ++k) {
      const T f = phi[i * K + k];
      acc += g[i * K + k] * (x[i] - grid.centre(k)) * (gaussian ? f : f * f);
    }
    dx[i] = T(-2) * grid.eps2 * acc;
  }
}

// B-spline rows, a chunk of attributes at a time: the span-local Cox–de Boor triangle of
// expansion_math.h (bspline_span) evaluated lane-wise across attributes so it vectorises, then the
// d+1 non-zero values written into the K columns of each attribute (the rest are zero). The span
// is found by truncation of the masked position (≥ 0), which vectorises where floor does not.
template <typename T>
struct BSplineLanes {
  T t[kAttributeChunk];
  T undefined[kAttributeChunk];    // bspline_undefined(x): 0 for finite x, else NaN
  int32_t first[kAttributeChunk];  // feature index of n[0]; K when x is outside the support
  T n[kMaxBSplineDegree + 1][kAttributeChunk];
  T lower[kMaxBSplineDegree + 1][kAttributeChunk];

  void evaluate(const BasisSpec& spec, const T* x, int64_t len, bool with_lower) {
    const int d = static_cast<int>(spec.degree);
    const int32_t K = static_cast<int32_t>(spec.features);
    const T support = static_cast<T>(K + d);
    const BSplineGrid<T> grid = bspline_grid<T>(spec);
    using Bits = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
    for (int64_t i = 0; i < len; ++i) {
      // Masks and arithmetic instead of selects: GCC will not if-convert a float select under its
      // default -ftrapping-math, and a global -fno-trapping-math slowed the chain filters 1.5×.
      const T u = grid.position(x[i]);
      undefined[i] = bspline_undefined(x[i]);
      const int32_t inside = (u >= T(0)) & (u < support);  // 0 for NaN
      const T inside_u = std::bit_cast<T>(std::bit_cast<Bits>(u) & -static_cast<Bits>(inside));
      const int32_t span = static_cast<int32_t>(inside_u);  // in [0, K + d): truncation is floor
      t[i] = inside_u - static_cast<T>(span);
      first[i] = K + inside * (span - d - K);
      n[0][i] = T(1);
    }
    for (int k = 1; k <= d; ++k) {
      if (k == d && with_lower) {
        for (int r = 0; r < d; ++r) std::copy(n[r], n[r] + len, lower[r]);
      }
      const T inv_k = T(1) / T(k);
      for (int64_t i = 0; i < len; ++i) n[k][i] = t[i] * inv_k * n[k - 1][i];
      for (int r = k - 1; r >= 1; --r) {
        for (int64_t i = 0; i < len; ++i) {
          n[r][i] = ((t[i] + T(k - r)) * n[r - 1][i] + (T(r + 1) - t[i]) * n[r][i]) * inv_k;
        }
      }
      for (int64_t i = 0; i < len; ++i) n[0][i] = (T(1) - t[i]) * inv_k * n[0][i];
    }
  }

  // Whether all d+1 columns first .. first+d of lane i lie inside [0, K): the common case, taken
  // without a per-value bounds check.
  bool interior(int64_t i, int d, int64_t K) const { return first[i] >= 0 && first[i] + d < K; }

  bool finite(int64_t i) const { return undefined[i] == T(0); }
};

template <typename T>
void bspline_row(const BasisSpec& spec, const T* x, int64_t attrs, T* out) {
  const int64_t K = spec.features;
  const int d = static_cast<int>(spec.degree);
  BSplineLanes<T> lanes;
  for (int64_t c0 = 0; c0 < attrs; c0 += kAttributeChunk) {
    const int64_t len = std::min(kAttributeChunk, attrs - c0);
    lanes.evaluate(spec, x + c0, len, false);
    T* oc = out + c0 * K;
    std::fill(oc, oc + len * K, T(0));
    for (int64_t i = 0; i < len; ++i) {
      if (lanes.interior(i, d, K)) {
        T* dst = oc + i * K + lanes.first[i];
        for (int r = 0; r <= d; ++r) dst[r] = lanes.n[r][i];
        continue;
      }
      if (!lanes.finite(i)) {
        std::fill(oc + i * K, oc + (i + 1) * K, lanes.undefined[i]);
        continue;
      }
      for (int r = 0; r <= d; ++r) {
        const int64_t j = lanes.first[i] + r;
        if (j >= 0 && j < K) oc[i * K + j] = lanes.n[r][i];
      }
    }
  }
}

// dx_i = Σ_j g[i*K + j]·B'_{j,d}(x_i) with B'_{j,d} = (B_{j,d-1} − B_{j+1,d-1})/h.
template <typename T>
void bspline_row_backward(const BasisSpec& spec, const T* g, const T* x, int64_t attrs, T* dx) {
  const int64_t K = spec.features;
  const int d = static_cast<int>(spec.degree);
  const T h = bspline_grid<T>(spec).h;
  BSplineLanes<T> lanes;
  for (int64_t c0 = 0; c0 < attrs; c0 += kAttributeChunk) {
    const int64_t len = std::min(kAttributeChunk, attrs - c0);
    lanes.evaluate(spec, x + c0, len, d > 0);
    if (d == 0) {
      for (int64_t i = 0; i < len; ++i) dx[c0 + i] = lanes.undefined[i];
      continue;
    }
    const T* gc = g + c0 * K;
    for (int64_t i = 0; i < len; ++i) {
      T acc = T(0);
      if (lanes.interior(i, d, K)) {
        const T* gi = gc + i * K + lanes.first[i];
        acc = gi[d] * lanes.lower[d - 1][i] - gi[0] * lanes.lower[0][i];
        for (int r = 1; r < d; ++r) acc += gi[r] * (lanes.lower[r - 1][i] - lanes.lower[r][i]);
      } else if (!lanes.finite(i)) {
        acc = lanes.undefined[i];
      } else {
        for (int r = 0; r <= d; ++r) {
          const int64_t j = lanes.first[i] + r;
          if (j < 0 || j >= K) continue;
          const T left = r >= 1 ? lanes.lower[r - 1][i] : T(0);
          const T right = r < d ? lanes.lower[r][i] : T(0);
          acc += gc[i * K + j] * (left - right);
        }
      }
      dx[c0 + i] = acc / h;
    }
  }
}

// κ of an elementwise basis for a (rows × attrs) block of x into out (interleaved, K per attribute).
template <typename T>
void expand_block(const BasisSpec& spec, const T* x, int64_t x_stride, int64_t rows, int64_t attrs, T* out,
                  int64_t out_stride) {
  const int64_t K = spec.features;
  const auto coeff = coefficient_table<T>(spec);
  at::parallel_for(0, rows, grain_rows(attrs * K), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* xr = x + r * x_stride;
      T* o = out + r * out_stride;
      if (is_polynomial(spec.basis)) {
        polynomial_row<T>(spec, coeff.data(), xr, attrs, o);
      } else if (is_rbf(spec.basis)) {
        rbf_row<T>(spec, xr, attrs, o);
      } else if (spec.basis == Basis::BSpline) {
        bspline_row<T>(spec, xr, attrs, o);
      } else {
        for (int64_t i = 0; i < attrs; ++i) {
          T* dst = o + i * K;
          for_each_feature<T, false>(spec, xr[i], [&](int64_t k, T v, T) { dst[k] = v; });
        }
      }
    }
  });
}

// dx of a (rows × attrs) block from the gradient g of its expansion: Σ_k g[i*K + k]·P'_k(x_i).
// RBFs read their features from `features` (same layout as g) when given.
template <typename T>
void contract_block(const BasisSpec& spec, const T* g, int64_t g_stride, const T* x, int64_t x_stride, int64_t rows,
                    int64_t attrs, T* dx, int64_t dx_stride, const T* features = nullptr) {
  const int64_t K = spec.features;
  const auto coeff = coefficient_table<T>(spec);
  at::parallel_for(0, rows, grain_rows(attrs * K), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      if (is_polynomial(spec.basis)) {
        polynomial_row_backward<T>(spec, coeff.data(), g + r * g_stride, x + r * x_stride, attrs, dx + r * dx_stride);
        continue;
      }
      if (spec.basis == Basis::BSpline) {
        bspline_row_backward<T>(spec, g + r * g_stride, x + r * x_stride, attrs, dx + r * dx_stride);
        continue;
      }
      if (features != nullptr && is_rbf(spec.basis)) {
        rbf_row_backward<T>(spec, g + r * g_stride, features + r * g_stride, x + r * x_stride, attrs,
                            dx + r * dx_stride);
        continue;
      }
      for (int64_t i = 0; i < attrs; ++i) {
        const T* gi = g + r * g_stride + i * K;
        T acc = T(0);
        for_each_feature<T, true>(spec, x[r * x_stride + i], [&](int64_t k, T, T d) { acc += gi[k] * d; });
        dx[r * dx_stride + i] = acc;
      }
    }
  });
}

// Taylor rows: block k = block k-1 ⊗ x, the earlier factor the more significant digit.
template <typename T>
void expand_taylor_row(int64_t degree, const T* xr, int64_t m, T* o) {
  std::copy(xr, xr + m, o);
  int64_t prev_off = 0, prev_len = m;
  for (int64_t k = 2; k <= degree; ++k) {
    const int64_t off = prev_off + prev_len;
    for (int64_t p = 0; p < prev_len; ++p) {
      const T v = o[prev_off + p];
      T* dst = o + off + p * m;
      for (int64_t a = 0; a < m; ++a) dst[a] = v * xr[a];
    }
    prev_off = off;
    prev_len *= m;
  }
}

// κ of rows [0, rows) of x (row stride m) into out (row stride D), any basis.
template <typename T>
void expand_rows(const BasisSpec& spec, const T* x, int64_t rows, int64_t m, T* out, int64_t D) {
  if (spec.basis != Basis::Taylor) return expand_block<T>(spec, x, m, rows, m, out, D);
  at::parallel_for(0, rows, grain_rows(D), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) expand_taylor_row<T>(spec.degree, x + r * m, m, out + r * D);
  });
}

// dx of rows [0, rows) from the gradient g (row stride D) of their expansion, any basis.
template <typename T>
void expand_rows_backward(const BasisSpec& spec, const T* g, const T* x, int64_t rows, int64_t m, int64_t D, T* dx) {
  if (spec.basis != Basis::Taylor) return contract_block<T>(spec, g, D, x, m, rows, m, dx, m);
  at::parallel_for(0, rows, grain_rows(D), [&](int64_t begin, int64_t end) {
    std::vector<T> blocks(D), grads(D);
    std::vector<int64_t> offsets(1, 0), lengths(1, m);
    for (int64_t k = 2; k <= spec.degree; ++k) {
      offsets.push_back(offsets.back() + lengths.back());
      lengths.push_back(lengths.back() * m);
    }
    for (int64_t r = begin; r < end; ++r) {
      const T* xr = x + r * m;
      expand_taylor_row<T>(spec.degree, xr, m, blocks.data());
      std::copy(g + r * D, g + (r + 1) * D, grads.begin());
      T* dxr = dx + r * m;
      std::fill(dxr, dxr + m, T(0));
      // reverse through block k = block k-1 ⊗ x: the gradient flows to both factors
      for (int64_t k = spec.degree; k >= 2; --k) {
        const int64_t off = offsets[k - 1], prev_off = offsets[k - 2], prev_len = lengths[k - 2];
        for (int64_t p = 0; p < prev_len; ++p) {
          const T* gk = grads.data() + off + p * m;
          const T prev = blocks[prev_off + p];
          T acc = T(0);
          for (int64_t a = 0; a < m; ++a) {
            acc += gk[a] * xr[a];
            dxr[a] += gk[a] * prev;
          }
          grads[prev_off + p] += acc;
        }
      }
      for (int64_t a = 0; a < m; ++a) dxr[a] += grads[a];
    }
  });
}

bool use_taylor2_identity(const BasisSpec& spec, int64_t m) {
  return spec.basis == Basis::Taylor && spec.degree == 2 && m >= kTaylor2FusedMinM;
}

// Taylor-2 outputs run in chunks: the per-output GEMMs are small ((B, m)·(m, m)), so chunks run in
// parallel with single-threaded GEMMs, which scales where a multithreaded BLAS call of that size
// does not. The chunking depends on the shapes only (never on the thread count), so the
// fixed-order sum of the per-chunk dx partials is bitwise reproducible; the partials (B·m each)
// are held to kTaylor2PartialBytes, so a large batch gets fewer, larger chunks.
constexpr int64_t kTaylor2MaxChunks = 16;
constexpr int64_t kTaylor2PartialBytes = int64_t(64) << 20;

int64_t taylor2_chunk_count(int64_t n, int64_t per_chunk) { return (n + per_chunk - 1) / per_chunk; }

int64_t taylor2_outputs_per_chunk(int64_t n, int64_t partial_bytes) {
  const int64_t affordable = kTaylor2PartialBytes / std::max<int64_t>(1, partial_bytes);
  const int64_t chunks = std::max<int64_t>(1, std::min(kTaylor2MaxChunks, affordable));
  return (n + chunks - 1) / chunks;
}

// W[j, m:] viewed as the (m, m) matrix W2_j with W2_j[a, c] = W[j, m + a·m + c], no copy.
// One GEMM per output on these views: a batched matmul over a stack of them would copy the
// strided stack (W itself) first.
at::Tensor taylor2_block(const at::Tensor& weight, int64_t j, int64_t m) {
  return weight.select(0, j).narrow(0, m, m * m).view({m, m});
}

// out = W2 + W2ᵀ in 64×64 tiles, so the transposed reads come from L1 instead of striding across
// the whole block (measured 1.5× faster than an at::add with a transposed operand).
template <typename T>
void symmetrise(const T* w, int64_t m, T* out) {
  constexpr int64_t kTile = 64;
  for (int64_t a0 = 0; a0 < m; a0 += kTile) {
    const int64_t a1 = std::min(m, a0 + kTile);
    for (int64_t c0 = 0; c0 < m; c0 += kTile) {
      const int64_t c1 = std::min(m, c0 + kTile);
      for (int64_t a = a0; a < a1; ++a) {
        for (int64_t c = c0; c < c1; ++c) out[a * m + c] = w[a * m + c] + w[c * m + a];
      }
    }
  }
}

// Runs body(chunk, first, last) for the fixed chunks of outputs [first, last), in parallel, each
// chunk on one thread below autograd (worker threads do not inherit the calling op's dispatch
// state, and out= GEMMs refuse tensors that require grad).
template <typename F>
void for_output_chunks(int64_t n, int64_t per_chunk, const F& body) {
  const int64_t chunks = taylor2_chunk_count(n, per_chunk);
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    for (int64_t c = begin; c < end; ++c) body(c, c * per_chunk, std::min(n, (c + 1) * per_chunk));
  });
}

// y = X·W1ᵀ + b + [xᵀ W2_j x]_j: one (B, m)·(m, m) GEMM per output, never x⊗x.
at::Tensor taylor2_forward(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias) {
  const int64_t B = x.size(0), m = x.size(1), n = weight.size(0);
  at::Tensor y = at::mm(x, weight.narrow(1, 0, m).t());
  if (bias.has_value() && bias->defined()) y.add_(*bias);
  at::Tensor quadratic = at::empty({B, n}, x.options());
  for_output_chunks(n, taylor2_outputs_per_chunk(n, 0), [&](int64_t, int64_t first, int64_t last) {
    at::Tensor through = workspace(B * m, x.options()).view({B, m});
    for (int64_t j = first; j < last; ++j) {
      at::mm_out(through, x, taylor2_block(weight, j, m).t());
      at::Tensor column = quadratic.select(1, j);
      at::sum_out(column, through.mul_(x), {1});
    }
  });
  return y.add_(quadratic);
}

// dx = G·W1 + Σ_j (g_j ⊙ X)·(W2_j + W2_jᵀ);  dW1 = GᵀX;  dW2_j = (g_j ⊙ X)ᵀ X.
std::tuple<at::Tensor, at::Tensor> taylor2_backward(const at::Tensor& grad, const at::Tensor& x,
                                                    const at::Tensor& weight) {
  const int64_t B = x.size(0), m = x.size(1), n = weight.size(0);
  at::Tensor grad_weight = cpu::empty_output_like(weight);
  at::Tensor dw1 = grad_weight.narrow(1, 0, m);
  at::mm_out(dw1, grad.t(), x);
  at::Tensor grad_x = at::mm(grad, weight.narrow(1, 0, m));
  const int64_t per_chunk = taylor2_outputs_per_chunk(n, B * m * x.element_size());
  const int64_t chunks = taylor2_chunk_count(n, per_chunk);
  at::Tensor partials = workspace(chunks * B * m, x.options(), 1).view({chunks, B, m});
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rpn2kernels_taylor2_backward", [&] {
    for_output_chunks(n, per_chunk, [&](int64_t chunk, int64_t first, int64_t last) {
      at::Tensor scratch = workspace(m * m + B * m, x.options());
      at::Tensor symmetric = scratch.narrow(0, 0, m * m).view({m, m});
      at::Tensor scaled = scratch.narrow(0, m * m, B * m).view({B, m});
      at::Tensor partial = partials.select(0, chunk).zero_();
      for (int64_t j = first; j < last; ++j) {
        at::mul_out(scaled, x, grad.narrow(1, j, 1));
        symmetrise<scalar_t>(taylor2_block(weight, j, m).data_ptr<scalar_t>(), m, symmetric.data_ptr<scalar_t>());
        partial.addmm_(scaled, symmetric);  // (g_j ⊙ X)·(W2_j + W2_jᵀ), symmetric so no transpose
        at::Tensor dw2 = taylor2_block(grad_weight, j, m);
        at::mm_out(dw2, scaled.t(), x);  // written in place into dW's strided block
      }
    });
  });
  return {grad_x.add_(partials.sum(0)), grad_weight};
}

at::Tensor expand_cpu(const at::Tensor& x_in, c10::string_view basis, int64_t degree, at::ArrayRef<double> params) {
  const BasisSpec spec = make_basis_spec(basis, degree, params);
  check_input(x_in);
  check_cpu_backend(x_in, "x");
  const at::Tensor x = x_in.contiguous();
  const int64_t B = x.size(0), m = x.size(1), D = expansion_width(spec, m);
  at::Tensor out = cpu::empty_output({B, D}, x.options());
  if (B == 0 || D == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rpn2kernels_expand_cpu", [&] {
    expand_rows<scalar_t>(spec, x.data_ptr<scalar_t>(), B, m, out.data_ptr<scalar_t>(), D);
  });
  return out;
}

at::Tensor expand_backward_cpu(const at::Tensor& grad_in, const at::Tensor& x_in, c10::string_view basis,
                               int64_t degree, at::ArrayRef<double> params) {
  const BasisSpec spec = make_basis_spec(basis, degree, params);
  check_cpu_backend(x_in, "x");
  const int64_t B = x_in.size(0), m = x_in.size(1), D = check_backward_inputs(grad_in, x_in, spec);
  const at::Tensor x = x_in.contiguous(), grad = grad_in.contiguous();
  at::Tensor dx = cpu::empty_output({B, m}, x.options()).zero_();
  if (B == 0 || D == 0) return dx;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rpn2kernels_expand_backward_cpu", [&] {
    expand_rows_backward<scalar_t>(spec, grad.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), B, m, D,
                                   dx.data_ptr<scalar_t>());
  });
  return dx;
}

at::Tensor expand_linear_cpu(const at::Tensor& x_in, const at::Tensor& weight_in, const c10::optional<at::Tensor>& bias,
                             c10::string_view basis, int64_t degree, at::ArrayRef<double> params) {
  const BasisSpec spec = make_basis_spec(basis, degree, params);
  check_cpu_backend(x_in, "x");
  const int64_t D = check_linear_inputs(x_in, weight_in, bias, spec);
  const at::Tensor x = x_in.contiguous(), weight = weight_in.contiguous();
  const int64_t B = x.size(0), m = x.size(1), n = weight.size(0);
  const bool has_bias = bias.has_value() && bias->defined();
  if (B == 0 || n == 0 || D == 0) {
    at::Tensor y = at::zeros({B, n}, x.options());
    if (has_bias) y.add_(*bias);
    return y;
  }
  if (use_taylor2_identity(spec, m)) return taylor2_forward(x, weight, bias);

  at::Tensor y = cpu::empty_output({B, n}, x.options());
  const int64_t tile = tile_rows(B, D, x.element_size());
  at::Tensor features = workspace(tile * D, x.options()).view({tile, D});
  const at::Tensor weight_t = weight.t();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rpn2kernels_expand_linear_cpu", [&] {
    for (int64_t r0 = 0; r0 < B; r0 += tile) {
      const int64_t rows = std::min(tile, B - r0);
      at::Tensor k_tile = features.narrow(0, 0, rows);
      expand_rows<scalar_t>(spec, x.data_ptr<scalar_t>() + r0 * m, rows, m, k_tile.data_ptr<scalar_t>(), D);
      at::Tensor y_tile = y.narrow(0, r0, rows);
      if (has_bias) {
        at::addmm_out(y_tile, *bias, k_tile, weight_t);
      } else {
        at::mm_out(y_tile, k_tile, weight_t);
      }
    }
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor> expand_linear_backward_cpu(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                              const at::Tensor& weight_in, c10::string_view basis,
                                                              int64_t degree, at::ArrayRef<double> params) {
  const BasisSpec spec = make_basis_spec(basis, degree, params);
  check_cpu_backend(x_in, "x");
  const int64_t D = check_linear_backward_inputs(grad_in, x_in, weight_in, spec);
  const int64_t B = x_in.size(0), m = x_in.size(1), n = weight_in.size(0);
  const at::Tensor x = x_in.contiguous(), weight = weight_in.contiguous(), grad = grad_in.contiguous();
  if (B == 0 || n == 0 || D == 0) return {at::zeros_like(x), at::zeros_like(weight)};
  if (use_taylor2_identity(spec, m)) return taylor2_backward(grad, x, weight);

  at::Tensor grad_x = cpu::empty_output_like(x);
  at::Tensor grad_weight = cpu::empty_output_like(weight);
  if (spec.basis == Basis::Taylor) {
    // Taylor features mix attributes: tile over rows, accumulating dW.
    grad_weight.zero_();
    const int64_t tile = tile_rows(B, D, x.element_size());
    at::Tensor buffer = workspace(tile * D, x.options()).view({tile, D});
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rpn2kernels_expand_linear_backward_cpu", [&] {
      for (int64_t r0 = 0; r0 < B; r0 += tile) {
        const int64_t rows = std::min(tile, B - r0);
        const scalar_t* x_tile = x.data_ptr<scalar_t>() + r0 * m;
        const at::Tensor g_tile = grad.narrow(0, r0, rows);
        at::Tensor tile_buf = buffer.narrow(0, 0, rows);
        expand_rows<scalar_t>(spec, x_tile, rows, m, tile_buf.data_ptr<scalar_t>(), D);
        grad_weight.addmm_(g_tile.t(), tile_buf);
        at::mm_out(tile_buf, g_tile, weight);
        expand_rows_backward<scalar_t>(spec, tile_buf.data_ptr<scalar_t>(), x_tile, rows, m, D,
                                       grad_x.data_ptr<scalar_t>() + r0 * m);
      }
    });
    return {grad_x, grad_weight};
  }
  // Elementwise bases: the columns of attribute block [i0, i1) depend on x[:, i0:i1] only, so
  // backward walks attribute blocks. Each dW column block is then one GEMM over all B rows
  // (no repeated rank-tile updates of dW), and dK = G·W[:, block] feeds dx of the same block.
  const int64_t K = spec.features;
  const int64_t block_attrs = attribute_block(m, K, B, x.element_size());
  const int64_t rows_per_chunk = tile_rows(B, block_attrs * K, x.element_size());
  at::Tensor buffer = workspace(rows_per_chunk * block_attrs * K, x.options());
  // RBFs keep their features for the derivative, so dK goes to a second buffer.
  at::Tensor grad_buffer = is_rbf(spec.basis) ? workspace(rows_per_chunk * block_attrs * K, x.options(), 1) : buffer;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rpn2kernels_expand_linear_backward_cpu", [&] {
    for (int64_t i0 = 0; i0 < m; i0 += block_attrs) {
      const int64_t attrs = std::min(block_attrs, m - i0), cols = attrs * K;
      at::Tensor dw_block = grad_weight.narrow(1, i0 * K, cols);
      const at::Tensor w_block = weight.narrow(1, i0 * K, cols);
      for (int64_t r0 = 0; r0 < B; r0 += rows_per_chunk) {
        const int64_t rows = std::min(rows_per_chunk, B - r0);
        at::Tensor chunk = buffer.narrow(0, 0, rows * cols).view({rows, cols});
        const scalar_t* x_chunk = x.data_ptr<scalar_t>() + r0 * m + i0;
        const at::Tensor g_chunk = grad.narrow(0, r0, rows);
        expand_block<scalar_t>(spec, x_chunk, m, rows, attrs, chunk.data_ptr<scalar_t>(), cols);
        if (r0 == 0) {
          at::mm_out(dw_block, g_chunk.t(), chunk);  // BLAS writes the strided column block in place
        } else {
          dw_block.addmm_(g_chunk.t(), chunk);
        }
        at::Tensor grad_chunk = grad_buffer.narrow(0, 0, rows * cols).view({rows, cols});
        at::mm_out(grad_chunk, g_chunk, w_block);
        contract_block<scalar_t>(spec, grad_chunk.data_ptr<scalar_t>(), cols, x_chunk, m, rows, attrs,
                                 grad_x.data_ptr<scalar_t>() + r0 * m + i0, m,
                                 is_rbf(spec.basis) ? chunk.data_ptr<scalar_t>() : nullptr);
      }
    }
  });
  return {grad_x, grad_weight};
}

}  // namespace

TORCH_LIBRARY_IMPL(rpn2kernels, CPU, m) {
  m.impl("expand", &expand_cpu);
  m.impl("expand_backward", &expand_backward_cpu);
  m.impl("expand_linear", &expand_linear_cpu);
  m.impl("expand_linear_backward", &expand_linear_backward_cpu);
}

}  // namespace expansion
}  // namespace rpn2kernels
