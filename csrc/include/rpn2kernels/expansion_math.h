#pragma once
// Per-element math of the expansion family κ (functions.md §2.5–2.7), shared by the CPU kernels
// (csrc/cpu/expansion.cpp) and the CUDA kernels (csrc/cuda/expansion.cu).
//
// Every elementwise basis produces K features per input attribute in the interleaved layout
// column = i*K + k. `for_each_feature` evaluates them for one scalar x and hands
// (k, value, derivative) to a callback, so kernels never need a K-sized array: forward kernels
// write or contract the values, backward kernels contract the derivatives with dK on the fly.
#include <cmath>
#include <cstdint>
#include "rpn2kernels/macros.h"

namespace rpn2kernels {
namespace expansion {

enum class Basis : int32_t {
  Chebyshev = 0,
  Legendre = 1,
  Jacobi = 2,
  Gegenbauer = 3,
  Hermite = 4,
  Laguerre = 5,
  Bessel = 6,
  ReverseBessel = 7,
  Fibonacci = 8,
  Lucas = 9,
  GaussianRBF = 10,
  InverseQuadraticRBF = 11,
  BSpline = 12,
  Taylor = 13,
};

// The B-spline degree is bounded so that its de Boor triangle fits in registers on the GPU.
constexpr int kMaxBSplineDegree = 15;

// Plain-old-data description of a basis; passed by value into CUDA kernels.
// p0, p1, p2 are: Jacobi (alpha, beta, -), Gegenbauer/Laguerre (alpha, -, -),
// RBFs (lo, hi, epsilon), B-spline (lo, hi, intervals); unused otherwise.
struct BasisSpec {
  Basis basis;
  int64_t degree;
  int64_t features;  // K: features per attribute (Taylor: unused, its layout is not interleaved)
  double p0, p1, p2;
};

RPN2K_INLINE bool is_polynomial(Basis b) { return static_cast<int32_t>(b) <= static_cast<int32_t>(Basis::Lucas); }

// Every polynomial family is the three-term recurrence
//   P_k = (a_k x + b_k) P_{k-1} + (c_k + e_k x^2) P_{k-2},   k >= 2,
// so one loop serves all ten and its derivative is
//   P'_k = a_k P_{k-1} + (a_k x + b_k) P'_{k-1} + 2 e_k x P_{k-2} + (c_k + e_k x^2) P'_{k-2}.
template <typename T>
struct RecurrenceCoefficients {
  T a, b, c, e;
};

template <typename T>
RPN2K_INLINE RecurrenceCoefficients<T> recurrence_coefficients(const BasisSpec& s, int64_t k) {
  const T kk = static_cast<T>(k);
  const T alpha = static_cast<T>(s.p0);
  switch (s.basis) {
    case Basis::Chebyshev: return {T(2), T(0), T(-1), T(0)};
    case Basis::Legendre: return {(2 * kk - 1) / kk, T(0), -(kk - 1) / kk, T(0)};
    case Basis::Jacobi: {
      const T beta = static_cast<T>(s.p1);
      const T sum = 2 * kk + alpha + beta;
      const T c1 = 2 * kk * (kk + alpha + beta) * (sum - 2);
      const T ak = (sum - 1) * sum * (sum - 2) / c1;
      const T bk = (sum - 1) * (alpha * alpha - beta * beta) / c1;
      const T ck = 2 * (kk + alpha - 1) * (kk + beta - 1) * sum / c1;
      return {ak, bk, -ck, T(0)};
    }
    case Basis::Gegenbauer: return {2 * (kk - 1 + alpha) / kk, T(0), -(kk - 2 + 2 * alpha) / kk, T(0)};
    case Basis::Hermite: return {T(1), T(0), -(kk - 1), T(0)};
    case Basis::Laguerre: return {T(-1) / kk, (2 * kk - 1 + alpha) / kk, -(kk - 1 + alpha) / kk, T(0)};
    case Basis::Bessel: return {2 * kk - 1, T(0), T(1), T(0)};
    case Basis::ReverseBessel: return {T(0), 2 * kk - 1, T(0), T(1)};
    case Basis::Fibonacci: return {T(1), T(0), T(1), T(0)};
    case Basis::Lucas: return {T(1), T(0), T(1), T(0)};
    default: return {T(0), T(0), T(0), T(0)};
  }
}

// P_0 (a constant) and P_1 = u·x + v (so P'_1 = u) of every family: x-independent, so kernels can
// hoist them out of their element loops.
template <typename T>
struct InitialTerms {
  T p0, u, v;
};

template <typename T>
RPN2K_INLINE InitialTerms<T> initial_terms(const BasisSpec& s) {
  const T alpha = static_cast<T>(s.p0);
  switch (s.basis) {
    case Basis::Jacobi: {
      const T beta = static_cast<T>(s.p1);
      return {T(1), (alpha + beta + 2) / 2, (alpha - beta) / 2};
    }
    case Basis::Gegenbauer: return {T(1), 2 * alpha, T(0)};
    case Basis::Laguerre: return {T(1), T(-1), 1 + alpha};  // tinyBIG's x + 1 + alpha is defect 7.1#21
    case Basis::Bessel:
    case Basis::ReverseBessel: return {T(1), T(1), T(1)};
    case Basis::Fibonacci: return {T(0), T(0), T(1)};
    case Basis::Lucas: return {T(2), T(1), T(0)};
    default: return {T(1), T(1), T(0)};  // Chebyshev, Legendre, Hermite
  }
}

template <typename T>
RPN2K_INLINE T exp_of(T v) {
#ifdef __CUDA_ARCH__
  return exp(v);
#else
  return std::exp(v);
#endif
}

template <typename T>
RPN2K_INLINE T floor_of(T v) {
#ifdef __CUDA_ARCH__
  return floor(v);
#else
  return std::floor(v);
#endif
}

// The d+1 uniform B-splines of degree d that are non-zero on the unit interval [s, s+1) holding u
// (s = floor(u)): n[r] = N_d(u - (s - d + r)), r = 0..d, by the Cox–de Boor triangle on half-open
// intervals (the tinyBIG convention, functions.md §2.6). With lower_degree set, also the degree d-1
// values the derivative needs: lower[r] = N_{d-1}(u - (s - d + 1 + r)), r = 0..d-1.
template <typename T>
RPN2K_INLINE void bspline_span(T t, int d, T* n, T* lower) {
  n[0] = T(1);
  for (int k = 1; k <= d; ++k) {
    if (k == d && lower != nullptr) {
      for (int r = 0; r < d; ++r) lower[r] = n[r];
    }
    const T inv_k = T(1) / T(k);
    // N_k[r] = ((t + k - r) N_{k-1}[r-1] + (r + 1 - t) N_{k-1}[r]) / k, updated from the top down
    n[k] = (t) * inv_k * n[k - 1];
    for (int r = k - 1; r >= 1; --r) n[r] = ((t + T(k - r)) * n[r - 1] + (T(r + 1) - t) * n[r]) * inv_k;
    n[0] = (T(1) - t) * inv_k * n[0];
  }
}

// The B-spline NaN policy, shared by every kernel: x − x is 0 for a finite x and NaN for NaN and
// ±inf, whose features and derivative are that NaN (as the reference's Cox–de Boor gives), not
// the zeros of "outside the support".
template <typename T>
RPN2K_INLINE T bspline_undefined(T x) {
  return x - x;
}

// RBF centres μ_k = lo + k·step (linspace(lo, hi, K)) and the shape ε², functions.md §2.7.
template <typename T>
struct RbfGrid {
  T lo, step, eps2;
  RPN2K_INLINE T centre(int64_t k) const { return lo + static_cast<T>(k) * step; }
};

template <typename T>
RPN2K_INLINE RbfGrid<T> rbf_grid(const BasisSpec& s) {
  const T lo = static_cast<T>(s.p0), eps = static_cast<T>(s.p2);
  const T step = s.features > 1 ? (static_cast<T>(s.p1) - lo) / static_cast<T>(s.features - 1) : T(0);
  return {lo, step, eps * eps};
}

// Uniform B-spline knots g_j = lo + (j − d)·h, h = (hi − lo)/intervals (functions.md §2.6), so
// B_{j,d}(x) = N_d(u − j) with u = position(x) = (x − g_0)/h.
template <typename T>
struct BSplineGrid {
  T origin, h;
  RPN2K_INLINE T position(T x) const { return (x - origin) / h; }
};

template <typename T>
RPN2K_INLINE BSplineGrid<T> bspline_grid(const BasisSpec& s) {
  const T lo = static_cast<T>(s.p0);
  const T h = (static_cast<T>(s.p1) - lo) / static_cast<T>(s.p2);
  return {lo - static_cast<T>(s.degree) * h, h};
}

// Calls fn(k, value, derivative) for k = 0 .. K-1 (derivative is 0 when !kWithDerivative).
template <typename T, bool kWithDerivative, typename Fn>
RPN2K_INLINE void for_each_feature(const BasisSpec& s, T x, Fn&& fn) {
  const int64_t K = s.features;
  if (is_polynomial(s.basis)) {
    if (K <= 0) return;
    const InitialTerms<T> init = initial_terms<T>(s);
    T p_prev = init.p0, p_cur = init.u * x + init.v;
    T d_prev = T(0), d_cur = init.u;
    fn(int64_t(0), p_cur, kWithDerivative ? d_cur : T(0));
    for (int64_t k = 2; k <= K; ++k) {
      const RecurrenceCoefficients<T> r = recurrence_coefficients<T>(s, k);
      const T lead = r.a * x + r.b;
      const T tail = r.c + r.e * x * x;
      const T p_next = lead * p_cur + tail * p_prev;
      if (kWithDerivative) {
        const T d_next = r.a * p_cur + lead * d_cur + 2 * r.e * x * p_prev + tail * d_prev;
        d_prev = d_cur;
        d_cur = d_next;
      }
      p_prev = p_cur;
      p_cur = p_next;
      fn(k - 1, p_cur, kWithDerivative ? d_cur : T(0));
    }
    return;
  }
  switch (s.basis) {
    case Basis::GaussianRBF:
    case Basis::InverseQuadraticRBF: {
      const RbfGrid<T> grid = rbf_grid<T>(s);
      const T eps2 = grid.eps2;
      for (int64_t k = 0; k < K; ++k) {
        const T diff = x - grid.centre(k);
        if (s.basis == Basis::GaussianRBF) {
          const T v = exp_of<T>(-eps2 * diff * diff);
          fn(k, v, kWithDerivative ? -2 * eps2 * diff * v : T(0));
        } else {
          const T v = T(1) / (T(1) + eps2 * diff * diff);
          fn(k, v, kWithDerivative ? -2 * eps2 * diff * v * v : T(0));
        }
      }
      return;
    }
    case Basis::BSpline: {
      const int d = static_cast<int>(s.degree);
      const BSplineGrid<T> grid = bspline_grid<T>(s);
      const T h = grid.h;
      const T u = grid.position(x);
      T n[kMaxBSplineDegree + 1], lower[kMaxBSplineDegree + 1];
      const T undefined = bspline_undefined(x);
      if (undefined != T(0)) {
        for (int64_t j = 0; j < K; ++j) fn(j, undefined, undefined);
        return;
      }
      int64_t first = K;  // features outside [first, first + d] are zero
      if (u >= T(0) && u < static_cast<T>(K + d)) {
        const T span = floor_of<T>(u);
        bspline_span<T>(u - span, d, n, kWithDerivative && d > 0 ? lower : nullptr);
        first = static_cast<int64_t>(span) - d;
      }
      for (int64_t j = 0; j < K; ++j) {
        const int64_t r = j - first;
        if (r < 0 || r > d) {
          fn(j, T(0), T(0));
          continue;
        }
        T dv = T(0);
        if (kWithDerivative && d > 0) {
          // B'_{j,d} = (B_{j,d-1} - B_{j+1,d-1}) / h, both from the degree d-1 triangle row
          const T left = r >= 1 ? lower[r - 1] : T(0);
          const T right = r < d ? lower[r] : T(0);
          dv = (left - right) / h;
        }
        fn(j, n[r], dv);
      }
      return;
    }
    default: return;
  }
}

}  // namespace expansion
}  // namespace rpn2kernels
