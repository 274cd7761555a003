// CPU kernels of the propagation family (functions.md §5.4, §5.5, §5.11), registered for the CPU
// dispatch key. Per-element conventions (attention masking, empty rows, the banded-filter index
// map) come from csrc/include/rpn2kernels/propagation_math.h, shared with the CUDA kernels.
//
// Design:
// - Every kernel is row-parallel over the CSR rows (targets) or chain rows, and each output
//   element is summed by one thread in CSR / tap order: results are bitwise reproducible for any
//   thread count, with no atomics. Backward passes that would scatter (the transpose of a SpMM)
//   are expressed by the caller as a SpMM over the cached transposed CSR instead.
// - The inner loops run over a contiguous feature row (an axpy or a dot product), which the
//   compiler vectorises; the gathers x[col[e]] are whole rows, so each edge costs one random
//   access and then streams F values.
// - Column indices are bounds-checked as they are read (they are touched anyway); a bad index
//   raises after the parallel region instead of reading out of bounds.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "allocation.h"
#include "isa.h"
#include "rpn2kernels/propagation_host.h"
#include "rpn2kernels/propagation_math.h"

namespace rpn2kernels {
namespace propagation {
namespace {

// Rows per parallel task: enough work per task (≈ 32k multiply-adds) to amortise the scheduling.
int64_t grain_rows(int64_t nnz, int64_t rows, int64_t width) {
  const int64_t per_row = std::max<int64_t>(1, (rows > 0 ? nnz / rows : 0) * std::max<int64_t>(width, 1));
  return std::max<int64_t>(1, 32768 / per_row);
}

// Records the first out-of-range column index seen by any thread.
struct IndexGuard {
  std::atomic<int64_t> bad{-1};
  int64_t limit;
  explicit IndexGuard(int64_t limit_) : limit(limit_) {}
  inline bool ok(int64_t c) {
    if (c >= 0 && c < limit) return true;
    int64_t expected = -1;
    bad.compare_exchange_strong(expected, c);
    return false;
  }
  void raise_if_bad(const char* what) const {
    const int64_t c = bad.load();
    TORCH_CHECK(c < 0, "rpn2kernels: col holds index ", c, " out of range [0, ", limit, ") of ", what);
  }
};

void check_rowptr_ends(const at::Tensor& rowptr, int64_t E) {
  const int64_t* p = rowptr.data_ptr<int64_t>();
  const int64_t R = rowptr.numel() - 1;
  TORCH_CHECK(p[0] == 0 && p[R] == E, "rpn2kernels: rowptr must start at 0 and end at E=", E, ", got ", p[0],
              " and ", p[R]);
}

// The gathers x[col[e]] hit random rows: without help each costs a full memory latency (and a
// TLB walk). Prefetching the row kPrefetchDistance edges ahead keeps several misses in flight.
constexpr int64_t kPrefetchDistance = 8;

template <typename scalar_t>
inline void prefetch_row(const scalar_t* x, const int64_t* col, int64_t e, int64_t num_edges, int64_t F) {
  if (e >= num_edges) return;
  const int64_t c = col[e];
  const char* row = reinterpret_cast<const char*>(x + c * F);
  const int64_t bytes = F * static_cast<int64_t>(sizeof(scalar_t));
  for (int64_t offset = 0; offset < bytes; offset += 64) __builtin_prefetch(row + offset);
}

// Reads rowptr[i], rowptr[i+1] and rejects a decreasing pair (a corrupt CSR would otherwise
// make the loops run wild).
inline bool row_range(const int64_t* rowptr, int64_t i, int64_t& begin, int64_t& end) {
  begin = rowptr[i];
  end = rowptr[i + 1];
  return begin <= end;
}

namespace generic_isa {
// Features per register block (a row's accumulators for one block stay in registers across
// all of its edges or taps; the row's other blocks re-read the same x rows, by then in L1).
template <typename scalar_t>
constexpr int64_t kFeatureBlock = 16;  // 4 (float) or 8 (double) xmm accumulators
constexpr int64_t kVectorBytes = 16;
#include "propagation_loops.inc"
}  // namespace generic_isa

#if RPN2K_HAVE_AVX2_COPY
RPN2K_BEGIN_AVX2_COPY
template <typename scalar_t>
constexpr int64_t kFeatureBlock = 256 / sizeof(scalar_t);  // 8 ymm accumulators
constexpr int64_t kVectorBytes = 32;
#include "propagation_loops.inc"
RPN2K_END_AVX2_COPY
#endif

template <typename scalar_t>
void spmm_kernel(const at::Tensor& rowptr, const at::Tensor& col, const scalar_t* value, const at::Tensor& x,
                 const scalar_t* base, scalar_t alpha, scalar_t beta, at::Tensor& out) {
  const int64_t R = out.size(0), F = out.size(1);
  const int64_t* rp = rowptr.data_ptr<int64_t>();
  const int64_t* cp = col.data_ptr<int64_t>();
  const scalar_t* xp = x.data_ptr<scalar_t>();
  scalar_t* op = out.data_ptr<scalar_t>();
  IndexGuard guard(x.size(0));
  std::atomic<bool> bad_rowptr{false};
  const int64_t end_all = col.numel();
#if RPN2K_HAVE_AVX2_COPY
  const bool avx2 = cpu::active_isa() == cpu::Isa::avx2;
#endif
  at::parallel_for(0, R, grain_rows(col.numel(), R, F), [&](int64_t lo, int64_t hi) {
#if RPN2K_HAVE_AVX2_COPY
    if (avx2) return avx2_isa::spmm_rows<scalar_t>(rp, cp, value, xp, F, base, alpha, beta, op, end_all, guard,
                                                    bad_rowptr, lo, hi);
#endif
    generic_isa::spmm_rows<scalar_t>(rp, cp, value, xp, F, base, alpha, beta, op, end_all, guard, bad_rowptr, lo, hi);
  });
  TORCH_CHECK(!bad_rowptr, "rpn2kernels: rowptr must be non-decreasing");
  guard.raise_if_bad("x's rows");
}

at::Tensor spmm_cpu(const at::Tensor& rowptr, const at::Tensor& col, const c10::optional<at::Tensor>& value,
                    const at::Tensor& x, const c10::optional<at::Tensor>& base, double alpha, double beta) {
  const int64_t R = check_spmm(rowptr, col, value, x, base);
  check_cpu_backend(x, "x");
  check_rowptr_ends(rowptr, col.numel());
  const at::Tensor xc = x.contiguous(), rpc = rowptr.contiguous(), cc = col.contiguous();
  const bool has_value = value.has_value() && value->defined();
  const bool has_base = base.has_value() && base->defined();
  const at::Tensor vc = has_value ? value->contiguous() : at::Tensor();
  const at::Tensor bc = has_base ? base->contiguous() : at::Tensor();
  at::Tensor out = cpu::empty_output({R, x.size(1)}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rpn2kernels_spmm_cpu", [&] {
    spmm_kernel<scalar_t>(rpc, cc, has_value ? vc.data_ptr<scalar_t>() : nullptr, xc,
                          has_base ? bc.data_ptr<scalar_t>() : nullptr, static_cast<scalar_t>(alpha),
                          static_cast<scalar_t>(beta), out);
  });
  return out;
}

at::Tensor pagerank_iterate_cpu(const at::Tensor& rowptr, const at::Tensor& col,
                                const c10::optional<at::Tensor>& value, const at::Tensor& x, double c,
                                int64_t iterations) {
  check_pagerank_iterate(rowptr, col, value, x, c, iterations);
  check_cpu_backend(x, "x");
  check_rowptr_ends(rowptr, col.numel());
  const at::Tensor xc = x.contiguous(), rpc = rowptr.contiguous(), cc = col.contiguous();
  const bool has_value = value.has_value() && value->defined();
  const at::Tensor vc = has_value ? value->contiguous() : at::Tensor();
  at::Tensor z = cpu::empty_output_like(xc);
  at::mul_out(z, xc, c);
  if (iterations == 0) return z;
  at::Tensor next = cpu::empty_output_like(z);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rpn2kernels_pagerank_iterate_cpu", [&] {
    for (int64_t t = 0; t < iterations; ++t) {
      spmm_kernel<scalar_t>(rpc, cc, has_value ? vc.data_ptr<scalar_t>() : nullptr, z, xc.data_ptr<scalar_t>(),
                            static_cast<scalar_t>(1.0 - c), static_cast<scalar_t>(c), next);
      std::swap(z, next);
    }
  });
  return z;
}

at::Tensor sddmm_cpu(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& a, const at::Tensor& b) {
  const int64_t R = check_sddmm(rowptr, col, a, b);
  check_cpu_backend(a, "a");
  check_rowptr_ends(rowptr, col.numel());
  const at::Tensor ac = a.contiguous(), bc = b.contiguous(), rpc = rowptr.contiguous(), cc = col.contiguous();
  at::Tensor out = cpu::empty_output({col.numel()}, a.options());
  const int64_t F = a.size(1);
  IndexGuard guard(b.size(0));
  std::atomic<bool> bad_rowptr{false};
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "rpn2kernels_sddmm_cpu", [&] {
    const int64_t* rp = rpc.data_ptr<int64_t>();
    const int64_t* cp = cc.data_ptr<int64_t>();
    const scalar_t* ap = ac.data_ptr<scalar_t>();
    const scalar_t* bp = bc.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, R, grain_rows(col.numel(), R, F), [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        int64_t begin, end;
        if (!row_range(rp, i, begin, end)) {
          bad_rowptr = true;
          continue;
        }
        const scalar_t* arow = ap + i * F;
        for (int64_t e = begin; e < end; ++e) {
          const int64_t c = cp[e];
          scalar_t dot = 0;
          if (guard.ok(c)) {
            const scalar_t* brow = bp + c * F;
            for (int64_t f = 0; f < F; ++f) dot += arow[f] * brow[f];
          }
          op[e] = dot;
        }
      }
    });
  });
  TORCH_CHECK(!bad_rowptr, "rpn2kernels: rowptr must be non-decreasing");
  guard.raise_if_bad("b's rows");
  return out;
}

template <typename scalar_t>
inline scalar_t dot_row(const scalar_t* a, const scalar_t* b, int64_t n) {
  scalar_t s = 0;
  for (int64_t f = 0; f < n; ++f) s += a[f] * b[f];
  return s;
}

std::tuple<at::Tensor, at::Tensor> edge_attention_cpu(const at::Tensor& rowptr, const at::Tensor& col,
                                                      const c10::optional<at::Tensor>& value, const at::Tensor& q,
                                                      const at::Tensor& k, const at::Tensor& v, double scale) {
  const int64_t R = check_attention(rowptr, col, value, q, k, v);
  check_cpu_backend(q, "q");
  check_rowptr_ends(rowptr, col.numel());
  const bool has_value = value.has_value() && value->defined();
  const at::Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous(), rpc = rowptr.contiguous(),
                   cc = col.contiguous();
  const at::Tensor valc = has_value ? value->contiguous() : at::Tensor();
  const int64_t Fq = q.size(1), Fv = v.size(1);
  at::Tensor out = cpu::empty_output({R, Fv}, q.options());
  at::Tensor lse = at::empty({R}, q.options().dtype(lse_dtype(q.scalar_type())));
  IndexGuard guard(k.size(0));
  std::atomic<bool> bad_rowptr{false};
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "rpn2kernels_edge_attention_cpu", [&] {
    const int64_t* rp = rpc.data_ptr<int64_t>();
    const int64_t* cp = cc.data_ptr<int64_t>();
    const scalar_t* qp = qc.data_ptr<scalar_t>();
    const scalar_t* kp = kc.data_ptr<scalar_t>();
    const scalar_t* vp = vc.data_ptr<scalar_t>();
    const scalar_t* valp = has_value ? valc.data_ptr<scalar_t>() : nullptr;
    scalar_t* op = out.data_ptr<scalar_t>();
    scalar_t* lp = lse.data_ptr<scalar_t>();
    const scalar_t sc = static_cast<scalar_t>(scale);
    at::parallel_for(0, R, grain_rows(col.numel(), R, Fq + Fv), [&](int64_t lo, int64_t hi) {
      std::vector<scalar_t> logits;
      for (int64_t i = lo; i < hi; ++i) {
        scalar_t* orow = op + i * Fv;
        std::fill(orow, orow + Fv, scalar_t(0));
        lp[i] = empty_row_lse<scalar_t>();
        int64_t begin, end;
        if (!row_range(rp, i, begin, end)) {
          bad_rowptr = true;
          continue;
        }
        // Two passes over the row's edges: logits and their max, then the weighted sum. The
        // logits are kept (one value per edge of this row) so the dot products run once.
        logits.resize(end - begin);
        scalar_t row_max = -std::numeric_limits<scalar_t>::infinity();
        const scalar_t* qrow = qp + i * Fq;
        for (int64_t e = begin; e < end; ++e) {
          const int64_t c = cp[e];
          scalar_t s = 0;
          if (guard.ok(c)) s = attention_logit(sc, valp ? valp[e] : scalar_t(1), dot_row(qrow, kp + c * Fq, Fq));
          logits[e - begin] = s;
          if (!attention_masked(s)) row_max = std::max(row_max, s);
        }
        if (row_max == -std::numeric_limits<scalar_t>::infinity()) continue;  // no unmasked edge
        scalar_t denom = 0;
        for (int64_t e = begin; e < end; ++e) {
          const scalar_t s = logits[e - begin];
          if (attention_masked(s)) continue;
          const scalar_t w = std::exp(s - row_max);
          denom += w;
          const scalar_t* vrow = vp + cp[e] * Fv;
          for (int64_t f = 0; f < Fv; ++f) orow[f] += w * vrow[f];
        }
        const scalar_t inv = scalar_t(1) / denom;
        for (int64_t f = 0; f < Fv; ++f) orow[f] *= inv;
        lp[i] = row_max + std::log(denom);
      }
    });
  });
  TORCH_CHECK(!bad_rowptr, "rpn2kernels: rowptr must be non-decreasing");
  guard.raise_if_bad("k's rows");
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> edge_attention_backward_cpu(
    const at::Tensor& rowptr, const at::Tensor& col, const c10::optional<at::Tensor>& value, const at::Tensor& q,
    const at::Tensor& k, const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse,
    const at::Tensor& grad_out, double scale) {
  check_attention_backward(rowptr, col, value, q, k, v, out, lse, grad_out);
  check_cpu_backend(q, "q");
  TORCH_CHECK(lse.scalar_type() == q.scalar_type(), "rpn2kernels: lse must have dtype ", q.scalar_type(), ", got ",
              lse.scalar_type());
  check_rowptr_ends(rowptr, col.numel());
  const int64_t R = q.size(0), Fq = q.size(1), Fv = v.size(1);
  const bool has_value = value.has_value() && value->defined();
  const at::Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous(), oc = out.contiguous(),
                   lc = lse.contiguous(), gc = grad_out.contiguous(), rpc = rowptr.contiguous(), cc = col.contiguous();
  const at::Tensor valc = has_value ? value->contiguous() : at::Tensor();
  at::Tensor grad_q = cpu::empty_output({R, Fq}, q.options()).zero_();
  at::Tensor grad_logit = cpu::empty_output({col.numel()}, q.options());
  at::Tensor prob = cpu::empty_output({col.numel()}, q.options());
  IndexGuard guard(k.size(0));
  std::atomic<bool> bad_rowptr{false};
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "rpn2kernels_edge_attention_backward_cpu", [&] {
    const int64_t* rp = rpc.data_ptr<int64_t>();
    const int64_t* cp = cc.data_ptr<int64_t>();
    const scalar_t* qp = qc.data_ptr<scalar_t>();
    const scalar_t* kp = kc.data_ptr<scalar_t>();
    const scalar_t* vp = vc.data_ptr<scalar_t>();
    const scalar_t* opp = oc.data_ptr<scalar_t>();
    const scalar_t* lp = lc.data_ptr<scalar_t>();
    const scalar_t* gp = gc.data_ptr<scalar_t>();
    const scalar_t* valp = has_value ? valc.data_ptr<scalar_t>() : nullptr;
    scalar_t* gqp = grad_q.data_ptr<scalar_t>();
    scalar_t* glp = grad_logit.data_ptr<scalar_t>();
    scalar_t* pp = prob.data_ptr<scalar_t>();
    const scalar_t sc = static_cast<scalar_t>(scale);
    at::parallel_for(0, R, grain_rows(col.numel(), R, Fq + Fv), [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        int64_t begin, end;
        if (!row_range(rp, i, begin, end)) {
          bad_rowptr = true;
          continue;
        }
        const scalar_t* qrow = qp + i * Fq;
        const scalar_t* grow = gp + i * Fv;
        const scalar_t delta = dot_row(grow, opp + i * Fv, Fv);
        const scalar_t row_lse = lp[i];
        scalar_t* gqrow = gqp + i * Fq;
        for (int64_t e = begin; e < end; ++e) {
          const int64_t c = cp[e];
          pp[e] = glp[e] = 0;
          if (!guard.ok(c) || row_lse == empty_row_lse<scalar_t>()) continue;
          const scalar_t w = valp ? valp[e] : scalar_t(1);
          const scalar_t* krow = kp + c * Fq;
          const scalar_t s = attention_logit(sc, w, dot_row(qrow, krow, Fq));
          const scalar_t p = attention_probability(s, row_lse);
          if (p == scalar_t(0)) continue;
          const scalar_t g = p * (dot_row(grow, vp + c * Fv, Fv) - delta);
          pp[e] = p;
          glp[e] = g;
          const scalar_t coef = g * sc * w;
          for (int64_t f = 0; f < Fq; ++f) gqrow[f] += coef * krow[f];
        }
      }
    });
  });
  TORCH_CHECK(!bad_rowptr, "rpn2kernels: rowptr must be non-decreasing");
  guard.raise_if_bad("k's rows");
  return {grad_q, grad_logit, prob};
}


at::Tensor chain_filter_cpu(const at::Tensor& x, at::ArrayRef<double> taps, int64_t first_offset,
                            const c10::optional<at::Tensor>& base, double beta, bool odd_reflect) {
  check_chain_filter(x, taps, first_offset, base, odd_reflect);
  check_cpu_backend(x, "x");
  const bool has_base = base.has_value() && base->defined();
  const at::Tensor xc = x.contiguous();
  const at::Tensor bc = has_base ? base->contiguous() : at::Tensor();
  at::Tensor out = cpu::empty_output_like(xc);
  const int64_t B = x.size(0), L = x.size(1), M = x.size(2);
  const int64_t T = static_cast<int64_t>(taps.size());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rpn2kernels_chain_filter_cpu", [&] {
    const scalar_t* xp = xc.data_ptr<scalar_t>();
    const scalar_t* bp = has_base ? bc.data_ptr<scalar_t>() : nullptr;
    scalar_t* op = out.data_ptr<scalar_t>();
    std::vector<scalar_t> tap(taps.begin(), taps.end());
    const scalar_t b = static_cast<scalar_t>(beta);
#if RPN2K_HAVE_AVX2_COPY
    const bool avx2 = cpu::active_isa() == cpu::Isa::avx2;
#endif
    at::parallel_for(0, B * L, std::max<int64_t>(1, 32768 / std::max<int64_t>(1, M * T)), [&](int64_t lo, int64_t hi) {
#if RPN2K_HAVE_AVX2_COPY
      if (avx2) return avx2_isa::chain_filter_rows<scalar_t>(xp, L, M, first_offset, tap.data(), T, bp, b, odd_reflect, op, lo,
                                                          hi);
#endif
      generic_isa::chain_filter_rows<scalar_t>(xp, L, M, first_offset, tap.data(), T, bp, b, odd_reflect, op, lo, hi);
    });
  });
  return out;
}

at::Tensor chain_scan_cpu(const at::Tensor& x, bool reverse) {
  check_chain_input(x);
  check_cpu_backend(x, "x");
  const at::Tensor xc = x.contiguous();
  at::Tensor out = cpu::empty_output_like(xc);
  const int64_t B = x.size(0), L = x.size(1), M = x.size(2);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rpn2kernels_chain_scan_cpu", [&] {
    const scalar_t* xp = xc.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    // Tasks are (sequence, block of kScanBlock features): a single long sequence still splits over
    // threads. Within a task the running sum walks L in registers; each output is summed in
    // position order whatever the split, so results are thread-count independent. Small inputs
    // stay on one thread.
    constexpr int64_t kScanBlock = 64;
    const int64_t blocks = (M + kScanBlock - 1) / kScanBlock;
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, L * std::min(M, kScanBlock)));
#if RPN2K_HAVE_AVX2_COPY
    const bool avx2 = cpu::active_isa() == cpu::Isa::avx2;
#endif
    at::parallel_for(0, B * blocks, grain, [&](int64_t lo, int64_t hi) {
      for (int64_t task = lo; task < hi; ++task) {
        const int64_t n = task / blocks, f0 = (task % blocks) * kScanBlock;
        const int64_t f1 = std::min(M, f0 + kScanBlock);
        const scalar_t* x_seq = xp + n * L * M;
        scalar_t* out_seq = op + n * L * M;
#if RPN2K_HAVE_AVX2_COPY
        if (avx2) {
          avx2_isa::chain_scan_features<scalar_t>(x_seq, out_seq, L, M, reverse, f0, f1);
          continue;
        }
#endif
        generic_isa::chain_scan_features<scalar_t>(x_seq, out_seq, L, M, reverse, f0, f1);
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(rpn2kernels, CPU, m) {
  m.impl("spmm", &spmm_cpu);
  m.impl("pagerank_iterate", &pagerank_iterate_cpu);
  m.impl("sddmm", &sddmm_cpu);
  m.impl("edge_attention", &edge_attention_cpu);
  m.impl("edge_attention_backward", &edge_attention_backward_cpu);
  m.impl("chain_filter", &chain_filter_cpu);
  m.impl("chain_scan", &chain_scan_cpu);
}

}  // namespace propagation
}  // namespace rpn2kernels
