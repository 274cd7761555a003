#pragma once
// Host-side argument checks and BasisSpec construction shared by the CPU and CUDA kernels of the
// expansion family. Every failure names the argument, the expected and the actual value.
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <string>
#include <vector>

#include "rpn2kernels/checks.h"
#include "rpn2kernels/expansion_math.h"

namespace rpn2kernels {
namespace expansion {

struct BasisInfo {
  const char* name;
  Basis basis;
  size_t num_params;
};

inline const std::vector<BasisInfo>& basis_table() {
  static const std::vector<BasisInfo> table = {
      {"chebyshev", Basis::Chebyshev, 0},     {"legendre", Basis::Legendre, 0},
      {"jacobi", Basis::Jacobi, 2},           {"gegenbauer", Basis::Gegenbauer, 1},
      {"hermite", Basis::Hermite, 0},         {"laguerre", Basis::Laguerre, 1},
      {"bessel", Basis::Bessel, 0},           {"reverse_bessel", Basis::ReverseBessel, 0},
      {"fibonacci", Basis::Fibonacci, 0},     {"lucas", Basis::Lucas, 0},
      {"gaussian_rbf", Basis::GaussianRBF, 3}, {"inverse_quadratic_rbf", Basis::InverseQuadraticRBF, 3},
      {"bspline", Basis::BSpline, 3},         {"taylor", Basis::Taylor, 0},
  };
  return table;
}

inline BasisSpec make_basis_spec(c10::string_view name, int64_t degree, at::ArrayRef<double> params) {
  const BasisInfo* info = nullptr;
  std::string known;
  for (const auto& entry : basis_table()) {
    if (name == entry.name) info = &entry;
    known += std::string(known.empty() ? "" : ", ") + entry.name;
  }
  TORCH_CHECK(info != nullptr, "rpn2kernels: basis must be one of [", known, "], got '", std::string(name), "'");
  TORCH_CHECK(degree >= 1, "rpn2kernels: degree must be >= 1, got ", degree);
  TORCH_CHECK(params.size() == info->num_params, "rpn2kernels: basis '", info->name, "' takes ", info->num_params,
              " params, got ", params.size());
  BasisSpec spec{info->basis, degree, degree, 0.0, 0.0, 0.0};
  if (params.size() > 0) spec.p0 = params[0];
  if (params.size() > 1) spec.p1 = params[1];
  if (params.size() > 2) spec.p2 = params[2];
  if (spec.basis == Basis::BSpline) {
    TORCH_CHECK(degree <= kMaxBSplineDegree, "rpn2kernels: bspline degree must be <= ", kMaxBSplineDegree, ", got ",
                degree);
    TORCH_CHECK(spec.p2 >= 1 && spec.p2 == static_cast<double>(static_cast<int64_t>(spec.p2)),
                "rpn2kernels: bspline intervals must be a positive integer, got ", spec.p2);
    TORCH_CHECK(spec.p1 > spec.p0, "rpn2kernels: bspline range must satisfy lo < hi, got lo=", spec.p0, ", hi=", spec.p1);
    spec.features = static_cast<int64_t>(spec.p2) + degree;
  }
  return spec;
}

// D, the width of κ(x) for m attributes.
inline int64_t expansion_width(const BasisSpec& spec, int64_t m) {
  if (spec.basis != Basis::Taylor) return m * spec.features;
  int64_t width = 0, power = 1;
  for (int64_t k = 1; k <= spec.degree; ++k) {
    TORCH_CHECK(m == 0 || power <= (int64_t(1) << 40) / m, "rpn2kernels: taylor expansion width m^", k,
                " overflows for m=", m);
    power *= m;
    width += power;
  }
  return width;
}

using rpn2kernels::check_floating;
using rpn2kernels::check_same;

// A (B, cols) gradient argument, e.g. check_rows_cols(grad_out, "grad_out", B, "n", n).
inline void check_rows_cols(const at::Tensor& t, const char* name, int64_t B, const char* cols_name, int64_t cols) {
  TORCH_CHECK(t.dim() == 2 && t.size(0) == B && t.size(1) == cols, "rpn2kernels: ", name, " must have shape (B=", B,
              ", ", cols_name, "=", cols, "), got ", t.sizes());
}

inline void check_input(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 2, "rpn2kernels: x must have 2 dims (B, m), got ", x.dim(), " dims with shape ", x.sizes());
  check_floating(x, "x");
}

// Checks (x, weight, bias) of expand_linear and returns D.
inline int64_t check_linear_inputs(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                                   const BasisSpec& spec) {
  check_input(x);
  check_same(weight, x, "weight", "x");
  const int64_t D = expansion_width(spec, x.size(1));
  TORCH_CHECK(weight.dim() == 2 && weight.size(1) == D, "rpn2kernels: weight must have shape (n, D=", D,
              ") for m=", x.size(1), ", got ", weight.sizes());
  if (bias.has_value() && bias->defined()) {
    check_same(*bias, x, "bias", "x");
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == weight.size(0), "rpn2kernels: bias must have shape (n=",
                weight.size(0), "), got ", bias->sizes());
  }
  return D;
}

// Checks (grad_features, x) of expand_backward and returns D.
inline int64_t check_backward_inputs(const at::Tensor& grad, const at::Tensor& x, const BasisSpec& spec) {
  check_input(x);
  check_same(grad, x, "grad_features", "x");
  const int64_t D = expansion_width(spec, x.size(1));
  check_rows_cols(grad, "grad_features", x.size(0), "D", D);
  return D;
}

// Checks (grad_out, x, weight) of expand_linear_backward and returns D.
inline int64_t check_linear_backward_inputs(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight,
                                            const BasisSpec& spec) {
  const int64_t D = check_linear_inputs(x, weight, c10::nullopt, spec);
  check_same(grad, x, "grad_out", "x");
  check_rows_cols(grad, "grad_out", x.size(0), "n", weight.size(0));
  return D;
}

}  // namespace expansion
}  // namespace rpn2kernels
