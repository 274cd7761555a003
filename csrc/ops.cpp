// Schemas of every rpn2kernels op. Kernels are registered per dispatch key in csrc/cpu/*.cpp and
// csrc/cuda/*.cu; fake kernels and autograd are registered from Python (rpn2kernels/ops/).
#include <Python.h>
#include <torch/library.h>

extern "C" {
// Importing rpn2kernels._C runs the static TORCH_LIBRARY initialisers below; the module itself
// is empty.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(rpn2kernels, m) {
  // κ(x) materialised: x (B, m) -> (B, D).
  m.def("expand(Tensor x, str basis, int degree, float[] params) -> Tensor");
  // dx from the gradient of the materialised expansion, through the derivative recurrence.
  m.def("expand_backward(Tensor grad_features, Tensor x, str basis, int degree, float[] params) -> Tensor");
  // y = κ(x)·Wᵀ + b without materialising κ(x): x (B, m), weight (n, D), bias (n,) -> (B, n).
  m.def("expand_linear(Tensor x, Tensor weight, Tensor? bias, str basis, int degree, float[] params) -> Tensor");
  // (dx, dW) of expand_linear; κ(x) is recomputed tile by tile, never stored.
  m.def(
      "expand_linear_backward(Tensor grad_out, Tensor x, Tensor weight, str basis, int degree, float[] params) "
      "-> (Tensor, Tensor)");
}
