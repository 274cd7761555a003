// CUDA registration of rpn2kernels::narrow_linear (y = x·Wᵀ + b). The CPU kernel exists because
// the CPU BLAS runs narrow shapes far below the machine's rate; cuBLAS does not (the G1 GCN layer's
// three GEMMs took 0.3 ms on the H100, bench/results/h100-20261123-propagation.json), so on CUDA the
// op calls it. The registration keeps CUDA tensors on the op, with its checks and autograd, instead
// of a silent detour through another code path.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "rpn2kernels/linear_host.h"

namespace rpn2kernels {
namespace {

at::Tensor narrow_linear_cuda(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias) {
  check_narrow_linear(x, weight, bias);
  TORCH_CHECK(x.is_cuda(), "rpn2kernels: x must be a CUDA tensor for the cuda backend, got ", x.device());
  const c10::cuda::CUDAGuard guard(x.device());
  if (bias.has_value() && bias->defined()) return at::addmm(*bias, x, weight.t());
  return at::mm(x, weight.t());
}

}  // namespace

TORCH_LIBRARY_IMPL(rpn2kernels, CUDA, m) { m.impl("narrow_linear", &narrow_linear_cuda); }

}  // namespace rpn2kernels
