#pragma once
// Host-side argument checks of narrow_linear, shared by the CPU kernel and the CUDA registration.
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "rpn2kernels/checks.h"

namespace rpn2kernels {

// x (B, m), weight (n, m), optional bias (n,), all of x's dtype and device.
inline void check_narrow_linear(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias) {
  TORCH_CHECK(x.dim() == 2, "rpn2kernels: x must have 2 dims (B, in_features), got shape ", x.sizes());
  TORCH_CHECK(weight.dim() == 2, "rpn2kernels: weight must have 2 dims (out_features, in_features), got shape ",
              weight.sizes());
  check_floating(x, "x");
  check_same(weight, x, "weight", "x");
  TORCH_CHECK(weight.size(1) == x.size(1), "rpn2kernels: weight must have shape (out_features, in_features=",
              x.size(1), "), got ", weight.sizes());
  if (bias.has_value() && bias->defined()) {
    check_same(*bias, x, "bias", "x");
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == weight.size(0), "rpn2kernels: bias must have shape (",
                weight.size(0), ",), got ", bias->sizes());
  }
}

}  // namespace rpn2kernels
