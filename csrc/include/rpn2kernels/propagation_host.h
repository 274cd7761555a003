#pragma once
// Host-side argument checks of the propagation ops, shared by the CPU and CUDA kernels. Index
// *values* (in range, sorted rowptr) are validated once when a rpn2kernels.Graph is built; the
// CPU kernels re-check column bounds while they run (free, they touch every index anyway); the
// CUDA kernels trust them, as documented in docs/propagation.md.
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "rpn2kernels/checks.h"

namespace rpn2kernels {
namespace propagation {

// Checks a CSR pattern (rowptr (R+1,), col (E,), both int64 on device_of's device) and returns R.
inline int64_t check_csr(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& device_of) {
  TORCH_CHECK(rowptr.scalar_type() == at::kLong, "rpn2kernels: rowptr must have dtype int64, got ",
              rowptr.scalar_type());
  TORCH_CHECK(col.scalar_type() == at::kLong, "rpn2kernels: col must have dtype int64, got ", col.scalar_type());
  TORCH_CHECK(rowptr.dim() == 1 && rowptr.numel() >= 1, "rpn2kernels: rowptr must have shape (R+1,), got ",
              rowptr.sizes());
  TORCH_CHECK(col.dim() == 1, "rpn2kernels: col must have 1 dim (E,), got shape ", col.sizes());
  TORCH_CHECK(rowptr.device() == device_of.device() && col.device() == device_of.device(),
              "rpn2kernels: rowptr and col must be on the features' device ", device_of.device(), ", got ",
              rowptr.device(), " and ", col.device());
  return rowptr.numel() - 1;
}

// An optional per-edge value vector: (E,), the features' dtype and device.
inline void check_edge_values(const c10::optional<at::Tensor>& value, const at::Tensor& col, const at::Tensor& like,
                              const char* name) {
  if (!value.has_value() || !value->defined()) return;
  check_same(*value, like, name, "the features");
  TORCH_CHECK(value->dim() == 1 && value->size(0) == col.size(0), "rpn2kernels: ", name, " must have shape (E=",
              col.size(0), ",), got ", value->sizes());
}

inline void check_matrix(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 2, "rpn2kernels: ", name, " must have 2 dims, got shape ", t.sizes());
  check_floating(t, name);
}

inline void check_shape(const at::Tensor& t, const char* name, at::IntArrayRef expected) {
  TORCH_CHECK(t.sizes() == expected, "rpn2kernels: ", name, " must have shape ", expected, ", got ", t.sizes());
}

// Checks the arguments of spmm; returns R.
inline int64_t check_spmm(const at::Tensor& rowptr, const at::Tensor& col, const c10::optional<at::Tensor>& value,
                          const at::Tensor& x, const c10::optional<at::Tensor>& base) {
  check_matrix(x, "x");
  const int64_t R = check_csr(rowptr, col, x);
  check_edge_values(value, col, x, "value");
  if (base.has_value() && base->defined()) {
    check_same(*base, x, "base", "x");
    check_shape(*base, "base", {R, x.size(1)});
  }
  return R;
}

// Checks the arguments of pagerank_iterate (spmm's, with base = x, so the graph must be square); returns R.
inline int64_t check_pagerank_iterate(const at::Tensor& rowptr, const at::Tensor& col,
                                      const c10::optional<at::Tensor>& value, const at::Tensor& x, double c,
                                      int64_t iterations) {
  check_matrix(x, "x");
  const int64_t R = check_csr(rowptr, col, x);
  TORCH_CHECK(R == x.size(0), "rpn2kernels: pagerank_iterate needs a square graph: rowptr has R=", R,
              " rows, x has ", x.size(0));
  check_edge_values(value, col, x, "value");
  TORCH_CHECK(c > 0.0 && c <= 1.0, "rpn2kernels: c must be in (0, 1], got ", c);
  TORCH_CHECK(iterations >= 0, "rpn2kernels: iterations must be >= 0, got ", iterations);
  return R;
}

inline int64_t check_sddmm(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& a, const at::Tensor& b) {
  check_matrix(a, "a");
  check_matrix(b, "b");
  check_same(b, a, "b", "a");
  const int64_t R = check_csr(rowptr, col, a);
  TORCH_CHECK(a.size(0) == R, "rpn2kernels: a must have R=", R, " rows (one per CSR row), got ", a.size(0));
  TORCH_CHECK(b.size(1) == a.size(1), "rpn2kernels: b must have a's width ", a.size(1), ", got ", b.size(1));
  return R;
}

// Checks (rowptr, col, value, q, k, v) of edge attention; returns R.
inline int64_t check_attention(const at::Tensor& rowptr, const at::Tensor& col, const c10::optional<at::Tensor>& value,
                               const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  check_matrix(q, "q");
  check_matrix(k, "k");
  check_matrix(v, "v");
  check_same(k, q, "k", "q");
  check_same(v, q, "v", "q");
  const int64_t R = check_csr(rowptr, col, q);
  check_edge_values(value, col, q, "value");
  TORCH_CHECK(q.size(0) == R, "rpn2kernels: q must have R=", R, " rows (one per target), got ", q.size(0));
  TORCH_CHECK(k.size(1) == q.size(1), "rpn2kernels: k must have q's width ", q.size(1), ", got ", k.size(1));
  TORCH_CHECK(v.size(0) == k.size(0), "rpn2kernels: v must have k's ", k.size(0), " rows (one per source), got ",
              v.size(0));
  return R;
}

inline void check_attention_backward(const at::Tensor& rowptr, const at::Tensor& col,
                                     const c10::optional<at::Tensor>& value, const at::Tensor& q, const at::Tensor& k,
                                     const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse,
                                     const at::Tensor& grad_out) {
  const int64_t R = check_attention(rowptr, col, value, q, k, v);
  check_same(out, q, "out", "q");
  check_same(grad_out, q, "grad_out", "q");
  check_shape(out, "out", {R, v.size(1)});
  check_shape(grad_out, "grad_out", {R, v.size(1)});
  TORCH_CHECK(lse.device() == q.device(), "rpn2kernels: lse must be on q's device ", q.device(), ", got ",
              lse.device());
  check_shape(lse, "lse", {R});
}

inline void check_chain_input(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 3, "rpn2kernels: x must have 3 dims (b, L, m), got shape ", x.sizes());
  check_floating(x, "x");
}

inline void check_chain_filter(const at::Tensor& x, at::ArrayRef<double> taps, int64_t first_offset,
                               const c10::optional<at::Tensor>& base, bool odd_reflect) {
  check_chain_input(x);
  TORCH_CHECK(!taps.empty(), "rpn2kernels: taps must hold at least one value, got 0");
  if (odd_reflect) {
    // the reflected filter is self-adjoint (its autograd) only for centred symmetric taps
    const int64_t T = static_cast<int64_t>(taps.size());
    bool symmetric = T % 2 == 1;
    for (int64_t j = 0; symmetric && j < T; ++j) symmetric = taps[j] == taps[T - 1 - j];
    TORCH_CHECK(symmetric, "rpn2kernels: odd_reflect needs an odd number of symmetric taps (g(-d) = g(d)), got ",
                taps);
    TORCH_CHECK(first_offset == -(T / 2), "rpn2kernels: odd_reflect needs centred taps, first_offset=", -(T / 2),
                ", got ", first_offset);
  }
  if (base.has_value() && base->defined()) {
    check_same(*base, x, "base", "x");
    check_shape(*base, "base", x.sizes());
  }
}

// The attention's log-sum-exp is kept in the accumulation type (float for half inputs).
inline at::ScalarType lse_dtype(at::ScalarType features) {
  return features == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace propagation
}  // namespace rpn2kernels
