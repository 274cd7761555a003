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

  // ---- propagation family (functions.md §5.4, §5.5, §5.11; docs/propagation.md) ----
  // CSR × dense: out[i] = alpha · Σ_{e ∈ row i} value[e] · x[col[e]] + beta · base[i] (value = 1 and
  // no base term when omitted). rowptr (R+1,), col (E,) int64; x (C, F); base (R, F) -> (R, F).
  // Edges are summed in CSR order by one owner per output element: deterministic.
  m.def(
      "spmm(Tensor rowptr, Tensor col, Tensor? value, Tensor x, Tensor? base, float alpha, float beta) "
      "-> Tensor");
  // PageRank power series on a square CSR: Z_0 = c·x, Z_{t+1} = c·x + (1−c)·P·Z_t, returns Z_T
  // (T = iterations ≥ 0, 0 < c ≤ 1). The spmm above run T times without leaving C++: two
  // ping-pong buffers, no per-step dispatch or allocation; bitwise the result of T spmm calls.
  m.def("pagerank_iterate(Tensor rowptr, Tensor col, Tensor? value, Tensor x, float c, int iterations) -> Tensor");
  // Sampled dense-dense product on the CSR pattern: out[e] = <a[row(e)], b[col[e]]>; a (R, F), b (C, F) -> (E,).
  m.def("sddmm(Tensor rowptr, Tensor col, Tensor a, Tensor b) -> Tensor");
  // Edge attention per target row i (rows of the CSR are targets, columns their sources):
  // s_e = scale · value_e · <q_i, k_col(e)>, edges with s_e == 0 masked, softmax over the row's
  // unmasked edges, out_i = Σ_e p_e · v_col(e). Returns (out (R, Fv), lse (R,)); rows without an
  // unmasked edge give out_i = 0 and lse_i = -inf. Never forms an R × C matrix.
  m.def(
      "edge_attention(Tensor rowptr, Tensor col, Tensor? value, Tensor q, Tensor k, Tensor v, float scale) "
      "-> (Tensor, Tensor)");
  // Per-row part of edge_attention's backward: (grad_q (R, Fq), grad_logit (E,), prob (E,)) with
  // prob_e = softmax weight and grad_logit_e = ∂L/∂s_e. grad_k and grad_v are transposed SpMMs of
  // these per-edge values (no scatter, no atomics).
  m.def(
      "edge_attention_backward(Tensor rowptr, Tensor col, Tensor? value, Tensor q, Tensor k, Tensor v, "
      "Tensor out, Tensor lse, Tensor grad_out, float scale) -> (Tensor, Tensor, Tensor)");
  // Banded Toeplitz filter along dim 1 of x (b, L, m): out[:, t] = Σ_j taps[j] · x[:, t − (first_offset + j)]
  // (zero outside 0 … L−1) + beta · base[:, t].
  m.def("chain_filter(Tensor x, float[] taps, int first_offset, Tensor? base, float beta) -> Tensor");
  // Inclusive prefix sum along dim 1 of x (b, L, m); reverse=True gives the suffix sum (its adjoint).
  m.def("chain_scan(Tensor x, bool reverse) -> Tensor");
}
