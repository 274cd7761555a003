#pragma once
// Host-side argument checks shared by every op family. Every failure names the argument, the
// expected and the actual value.
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

namespace rpn2kernels {

inline void check_floating(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble || t.scalar_type() == at::kHalf ||
                  t.scalar_type() == at::kBFloat16,
              "rpn2kernels: ", name, " must be a floating-point tensor, got dtype ", t.scalar_type());
}

inline void check_same(const at::Tensor& t, const at::Tensor& ref, const char* name, const char* ref_name) {
  TORCH_CHECK(t.device() == ref.device(), "rpn2kernels: ", name, " must be on ", ref_name, "'s device ", ref.device(),
              ", got ", t.device());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), "rpn2kernels: ", name, " must have ", ref_name, "'s dtype ",
              ref.scalar_type(), ", got ", t.scalar_type());
}

// The compiled CPU kernels compute in float32 and float64; half types run on CUDA/Triton.
inline void check_cpu_backend(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), "rpn2kernels: ", name, " must be a CPU tensor for the cpu backend, got ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble,
              "rpn2kernels: the cpu backend supports float32 and float64 ", name, ", got ", t.scalar_type(), " (", name,
              " must be float32 or float64; use the triton or cuda backend for half precision)");
}

}  // namespace rpn2kernels
