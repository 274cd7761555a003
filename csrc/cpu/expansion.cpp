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
#include <vector>

#include "rpn2kernels/expansion_host.h"
#include "rpn2kernels/expansion_math.h"

namespace rpn2kernels {
namespace expansion {
namespace {

// Bytes of the per-call expansion tile: large enough for an efficient GEMM, small enough to stay
// in the last-level cache.
constexpr int64_t kTileBytes = int64_t(2) << 20;
constexpr int64_t kMinTileRows = 64;
// Below this m the Taylor-2 identity loses to tile materialisation (n tiny GEMMs).
constexpr int64_t kTaylor2FusedMinM = 64;

void check_cpu(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), "rpn2kernels: ", name, " must be a CPU tensor for the cpu backend, got ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble,
              "rpn2kernels: the cpu backend supports float32 and float64 ", name, ", got ", t.scalar_type(),
              " (use the triton or cuda backend for half precision)");
}

int64_t tile_rows(int64_t B, int64_t D, int64_t element_size) {
  const int64_t by_budget = kTileBytes / std::max<int64_t>(1, D * element_size);
  return std::max<int64_t>(1, std::min<int64_t>(B, std::max(kMinTileRows, by_budget)));
}

int64_t grain_rows(int64_t work_per_row) { return std::max<int64_t>(1, 4096 / std::max<int64_t>(1, work_per_row)); }

// κ of rows [0, rows) of x (row stride m) into out (row stride D).
template <typename T>
void expand_rows(const BasisSpec& spec, const T* x, int64_t rows, int64_t m, T* out, int64_t D) {
  if (spec.basis == Basis::Taylor) {
    at::parallel_for(0, rows, grain_rows(D), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const T* xr = x + r * m;
        T* o = out + r * D;
        std::copy(xr, xr + m, o);
        // block k = block k-1 ⊗ x, with the earlier factor the more significant digit
        int64_t prev_off = 0, prev_len = m;
        for (int64_t k = 2; k <= spec.degree; ++k) {
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
    });
    return;
  }
  const int64_t K = spec.features;
  at::parallel_for(0, rows, grain_rows(D), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t i = 0; i < m; ++i) {
        T* dst = out + r * D + i * K;
        for_each_feature<T, false>(spec, x[r * m + i], [&](int64_t k, T v, T) { dst[k] = v; });
      }
    }
  });
}

// dx of rows [0, rows) from the gradient g (row stride D) of their expansion.
template <typename T>
void expand_rows_backward(const BasisSpec& spec, const T* g, const T* x, int64_t rows, int64_t m, int64_t D, T* dx) {
  if (spec.basis == Basis::Taylor) {
    at::parallel_for(0, rows, grain_rows(D), [&](int64_t begin, int64_t end) {
      std::vector<T> blocks(D), grads(D);
      for (int64_t r = begin; r < end; ++r) {
        const T* xr = x + r * m;
        expand_rows<T>(spec, xr, 1, m, blocks.data(), D);
        std::copy(g + r * D, g + (r + 1) * D, grads.begin());
        T* dxr = dx + r * m;
        std::fill(dxr, dxr + m, T(0));
        std::vector<int64_t> offsets(1, 0), lengths(1, m);
        for (int64_t k = 2; k <= spec.degree; ++k) {
          offsets.push_back(offsets.back() + lengths.back());
          lengths.push_back(lengths.back() * m);
        }
        // reverse through block k = block k-1 ⊗ x: gradient flows to both factors
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
    return;
  }
  const int64_t K = spec.features;
  at::parallel_for(0, rows, grain_rows(D), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t i = 0; i < m; ++i) {
        const T* gi = g + r * D + i * K;
        T acc = T(0);
        for_each_feature<T, true>(spec, x[r * m + i], [&](int64_t k, T, T d) { acc += gi[k] * d; });
        dx[r * m + i] = acc;
      }
    }
  });
}

bool use_taylor2_identity(const BasisSpec& spec, int64_t m) {
  return spec.basis == Basis::Taylor && spec.degree == 2 && m >= kTaylor2FusedMinM;
}

// W[j, m:] viewed as the (m, m) matrix W2_j with W2_j[a, c] = W[j, m + a·m + c].
at::Tensor taylor2_block(const at::Tensor& weight, int64_t j, int64_t m) {
  return weight.select(0, j).narrow(0, m, m * m).view({m, m});
}

// y = X·W1ᵀ + b + [Σ_a x_a (W2_j x)_a]_j: one (B, m)·(m, m) GEMM per output, never x⊗x.
at::Tensor taylor2_forward(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias) {
  const int64_t m = x.size(1), n = weight.size(0);
  at::Tensor y = at::mm(x, weight.narrow(1, 0, m).t());
  if (bias.has_value() && bias->defined()) y.add_(*bias);
  at::Tensor quad = at::empty({x.size(0), m}, x.options());
  for (int64_t j = 0; j < n; ++j) {
    at::mm_out(quad, x, taylor2_block(weight, j, m).t());
    y.select(1, j).add_(quad.mul_(x).sum(1));
  }
  return y;
}

// dx = G·W1 + Σ_j g_j ⊙ X·(W2_j + W2_jᵀ)ᵀ;  dW1 = GᵀX;  dW2_j = (g_j ⊙ X)ᵀ X.
std::tuple<at::Tensor, at::Tensor> taylor2_backward(const at::Tensor& grad, const at::Tensor& x,
                                                    const at::Tensor& weight) {
  const int64_t m = x.size(1), n = weight.size(0);
  at::Tensor grad_weight = at::empty_like(weight);
  grad_weight.narrow(1, 0, m).copy_(at::mm(grad.t(), x));
  at::Tensor grad_x = at::mm(grad, weight.narrow(1, 0, m));
  at::Tensor symmetric = at::empty({m, m}, x.options());
  at::Tensor through = at::empty_like(x);
  at::Tensor scaled = at::empty_like(x);
  for (int64_t j = 0; j < n; ++j) {
    const at::Tensor w2 = taylor2_block(weight, j, m);
    const at::Tensor g = grad.narrow(1, j, 1);
    at::add_out(symmetric, w2, w2.t());
    at::mm_out(through, x, symmetric.t());
    grad_x.addcmul_(through, g);
    at::mul_out(scaled, x, g);
    at::Tensor dw2 = taylor2_block(grad_weight, j, m);
    at::mm_out(dw2, scaled.t(), x);
  }
  return {grad_x, grad_weight};
}

at::Tensor expand_cpu(const at::Tensor& x_in, c10::string_view basis, int64_t degree, at::ArrayRef<double> params) {
  const BasisSpec spec = make_basis_spec(basis, degree, params);
  check_input(x_in);
  check_cpu(x_in, "x");
  const at::Tensor x = x_in.contiguous();
  const int64_t B = x.size(0), m = x.size(1), D = expansion_width(spec, m);
  at::Tensor out = at::empty({B, D}, x.options());
  if (B == 0 || D == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rpn2kernels_expand_cpu", [&] {
    expand_rows<scalar_t>(spec, x.data_ptr<scalar_t>(), B, m, out.data_ptr<scalar_t>(), D);
  });
  return out;
}

at::Tensor expand_backward_cpu(const at::Tensor& grad_in, const at::Tensor& x_in, c10::string_view basis,
                               int64_t degree, at::ArrayRef<double> params) {
  const BasisSpec spec = make_basis_spec(basis, degree, params);
  check_input(x_in);
  check_cpu(x_in, "x");
  check_same(grad_in, x_in, "grad_features", "x");
  const int64_t B = x_in.size(0), m = x_in.size(1), D = expansion_width(spec, m);
  TORCH_CHECK(grad_in.dim() == 2 && grad_in.size(0) == B && grad_in.size(1) == D,
              "rpn2kernels: grad_features must have shape (B=", B, ", D=", D, "), got ", grad_in.sizes());
  const at::Tensor x = x_in.contiguous(), grad = grad_in.contiguous();
  at::Tensor dx = at::zeros({B, m}, x.options());
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
  check_cpu(x_in, "x");
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

  at::Tensor y = at::empty({B, n}, x.options());
  const int64_t tile = tile_rows(B, D, x.element_size());
  at::Tensor features = at::empty({tile, D}, x.options());
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
  check_cpu(x_in, "x");
  const int64_t D = check_linear_inputs(x_in, weight_in, c10::nullopt, spec);
  check_same(grad_in, x_in, "grad_out", "x");
  const int64_t B = x_in.size(0), m = x_in.size(1), n = weight_in.size(0);
  TORCH_CHECK(grad_in.dim() == 2 && grad_in.size(0) == B && grad_in.size(1) == n,
              "rpn2kernels: grad_out must have shape (B=", B, ", n=", n, "), got ", grad_in.sizes());
  const at::Tensor x = x_in.contiguous(), weight = weight_in.contiguous(), grad = grad_in.contiguous();
  if (B == 0 || n == 0 || D == 0) return {at::zeros_like(x), at::zeros_like(weight)};
  if (use_taylor2_identity(spec, m)) return taylor2_backward(grad, x, weight);

  at::Tensor grad_x = at::empty_like(x);
  at::Tensor grad_weight = at::zeros_like(weight);
  const int64_t tile = tile_rows(B, D, x.element_size());
  at::Tensor buffer = at::empty({tile, D}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rpn2kernels_expand_linear_backward_cpu", [&] {
    for (int64_t r0 = 0; r0 < B; r0 += tile) {
      const int64_t rows = std::min(tile, B - r0);
      const scalar_t* x_tile = x.data_ptr<scalar_t>() + r0 * m;
      const at::Tensor g_tile = grad.narrow(0, r0, rows);
      at::Tensor tile_buf = buffer.narrow(0, 0, rows);
      // the tile's expansion, recomputed, gives its share of dW = Gᵀ·κ(X) ...
      expand_rows<scalar_t>(spec, x_tile, rows, m, tile_buf.data_ptr<scalar_t>(), D);
      grad_weight.addmm_(g_tile.t(), tile_buf);
      // ... then the same buffer holds dK = G·W, contracted with P'_k(x) into dx
      at::mm_out(tile_buf, g_tile, weight);
      expand_rows_backward<scalar_t>(spec, tile_buf.data_ptr<scalar_t>(), x_tile, rows, m, D,
                                     grad_x.data_ptr<scalar_t>() + r0 * m);
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
