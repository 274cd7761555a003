// Schemas of every rpn2kernels op. Kernels are registered per dispatch key in csrc/cpu/*.cpp and
// csrc/cuda/*.cu; fake kernels and autograd are registered from Python (rpn2kernels/ops/).
#include <Python.h>
#include <torch/library.h>

#include <cstdio>

#include "cpu/allocation.h"
#include "cpu/isa.h"
#include "cpu/peak.h"

namespace {

// rpn2kernels._C.cpu_isa(name=None) -> str: the instruction set the CPU kernels with hand-vectorised
// copies use now; with a name ("generic", "avx2" or "auto") it first selects that copy and raises
// ValueError if this CPU or build cannot run it.
PyObject* cpu_isa(PyObject*, PyObject* args) {
  const char* name = nullptr;
  if (!PyArg_ParseTuple(args, "|z", &name)) return nullptr;
  if (name != nullptr && !rpn2kernels::cpu::set_active_isa(name)) {
    PyErr_Format(PyExc_ValueError,
                 "rpn2kernels: cpu_isa must be 'auto', 'generic' or a supported ISA ('avx2' needs an x86-64 CPU "
                 "with AVX2 and FMA), got '%s'",
                 name);
    return nullptr;
  }
  return PyUnicode_FromString(rpn2kernels::cpu::isa_name(rpn2kernels::cpu::active_isa()));
}

// rpn2kernels._C.cpu_multiply_add_peak(seconds=0.2) -> float: GFLOP/s of float32 multiply-add chains on
// every torch thread in the active ISA's copy (the benchmark reports SGEMM against it).
PyObject* cpu_multiply_add_peak(PyObject*, PyObject* args) {
  double seconds = 0.2;
  if (!PyArg_ParseTuple(args, "|d", &seconds)) return nullptr;
  if (!(seconds > 0.0 && seconds <= 60.0)) {
    char message[96];
    std::snprintf(message, sizeof(message), "rpn2kernels: seconds must be in (0, 60], got %g", seconds);
    PyErr_SetString(PyExc_ValueError, message);
    return nullptr;
  }
  double gflops = 0.0;
  Py_BEGIN_ALLOW_THREADS
  gflops = rpn2kernels::cpu::multiply_add_peak_gflops(seconds);
  Py_END_ALLOW_THREADS
  return PyFloat_FromDouble(gflops);
}

// rpn2kernels._C.output_cache_info() -> (free_blocks, free_bytes, hits, misses) of the CPU
// kernels' output cache (cpu/allocation.h).
PyObject* output_cache_info(PyObject*, PyObject*) {
  const rpn2kernels::cpu::OutputCacheInfo info = rpn2kernels::cpu::output_cache_info();
  return Py_BuildValue("(LLLL)", static_cast<long long>(info.free_blocks), static_cast<long long>(info.free_bytes),
                       static_cast<long long>(info.hits), static_cast<long long>(info.misses));
}

// rpn2kernels._C.empty_output_cache(): returns every held output block to the system.
PyObject* empty_output_cache(PyObject*, PyObject*) {
  rpn2kernels::cpu::empty_output_cache();
  Py_RETURN_NONE;
}

PyMethodDef methods[] = {{"cpu_isa", cpu_isa, METH_VARARGS, "The CPU kernels' instruction set (and select one)."},
                         {"cpu_multiply_add_peak", cpu_multiply_add_peak, METH_VARARGS,
                          "GFLOP/s of float32 multiply-add chains on every torch thread (active ISA)."},
                         {"output_cache_info", output_cache_info, METH_NOARGS,
                          "(free_blocks, free_bytes, hits, misses) of the CPU kernels' output cache."},
                         {"empty_output_cache", empty_output_cache, METH_NOARGS,
                          "Return every block held by the CPU kernels' output cache to the system."},
                         {nullptr, nullptr, 0, nullptr}};

}  // namespace

extern "C" {
// Importing rpn2kernels._C runs the static TORCH_LIBRARY initialisers below; the module itself
// only carries cpu_isa and cpu_multiply_add_peak.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods};
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
  // (zero outside 0 … L−1) + beta · base[:, t]. odd_reflect: x continued outside 0 … L−1 by its odd
  // 2(L+1)-periodic reflection instead of zeros, for centred symmetric taps (then f(S_sym)·x on
  // the path, self-adjoint; the bi-directional chains).
  m.def(
      "chain_filter(Tensor x, float[] taps, int first_offset, Tensor? base, float beta, bool odd_reflect=False) "
      "-> Tensor");
  // Inclusive prefix sum along dim 1 of x (b, L, m); reverse=True gives the suffix sum (its adjoint).
  m.def("chain_scan(Tensor x, bool reverse) -> Tensor");

  // ---- dense transforms (functions.md §3) ----
  // y = x·Wᵀ + b: x (B, m), weight (n, m), bias (n,) -> (B, n). Any strides. Register-tiled for a
  // small dimension (GCN-style narrow layers); its backward calls it for G·W and Gᵀ·x.
  m.def("narrow_linear(Tensor x, Tensor weight, Tensor? bias) -> Tensor");
}
