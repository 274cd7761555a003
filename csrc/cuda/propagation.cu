// CUDA kernels of the propagation family (functions.md §5.4, §5.5, §5.11), registered for the CUDA
// dispatch key. Per-element conventions (attention masking, the empty-row log-sum-exp, the
// banded-filter index map) come from csrc/include/rpn2kernels/propagation_math.h, shared with the
// CPU kernels, so the two backends cannot drift apart.
//
// Design:
// - CSR kernels (spmm, sddmm, edge attention and its backward) run one warp per CSR row. Lanes
//   own features (f = lane + 32·i) and walk the row's edges in CSR order, so every output element
//   is summed by one thread in a fixed order: no atomics, bitwise reproducible run to run. The
//   edge indices (and values) of 32 edges are loaded by the 32 lanes at once (coalesced) and
//   broadcast one edge at a time with shuffles.
// - Dot products over features are per-lane partial sums reduced by an xor butterfly. Float
//   addition is commutative, so the butterfly leaves the bit-identical total in every lane: a
//   logit, its mask and its softmax weight are therefore warp-uniform, and branches on them never
//   diverge (shuffles with the full mask stay legal).
// - A warp keeps kPerLane accumulators per lane, i.e. a tile of kTileF = 128 features. Wider
//   outputs are walked in tiles; the attention kernels then recompute the row's logits per tile
//   (cheaper than spilling accumulators and exactly reproducible, since it is the same code).
// - Index values (in range, sorted rowptr) are trusted, as documented in docs/propagation.md:
//   they were validated when the rpn2kernels.Graph was built and checking them here would need a
//   device→host sync.
//
// Only c10/cuda headers are used (not ATen/cuda/CUDAContext.h) so that this file compile-checks
// against a CPU build of torch (tools/check_cuda_compile.py).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>
#include <utility>

#include "rpn2kernels/propagation_host.h"
#include "rpn2kernels/propagation_math.h"

namespace rpn2kernels {
namespace propagation {
namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = kThreads / kWarp;
constexpr unsigned kFullMask = 0xffffffffu;
// Feature accumulators per lane: 128 features per warp pass covers the usual head/feature widths
// in one pass while keeping float64 at 8 registers of accumulators.
constexpr int kPerLane = 4;
constexpr int64_t kTileF = int64_t(kWarp) * kPerLane;
// spmm: rows of x in flight per lane before the first multiply (see accumulate_edges).
constexpr int kEdgeUnroll = 8;
// Grid-stride loops cover whatever a capped 1-D grid does not.
constexpr int64_t kMaxBlocks1D = int64_t(1) << 20;
// chain_filter passes up to this many taps by value (kernel parameter space, no host→device copy);
// longer filters go through a device tensor.
constexpr int kMaxInlineTaps = 32;
// chain_scan: below this many (b, m) columns one thread per column leaves the GPU mostly idle, so
// long chains are cut into segments scanned in three passes.
constexpr int64_t kScanWideColumns = int64_t(1) << 14;
constexpr int64_t kScanMinSegmentedLength = 4096;

__host__ __device__ constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

__device__ __forceinline__ int64_t global_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t global_stride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }
// Warp-per-row kernels: the row index is warp-uniform by construction.
__device__ __forceinline__ int64_t global_warp() {
  return static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
}
__device__ __forceinline__ int64_t warp_stride() { return static_cast<int64_t>(gridDim.x) * kWarpsPerBlock; }
__device__ __forceinline__ int lane_id() { return static_cast<int>(threadIdx.x % kWarp); }

dim3 grid_threads(int64_t items) {
  return dim3(static_cast<unsigned>(std::min(ceil_div(items, kThreads), kMaxBlocks1D)));
}
dim3 grid_warps(int64_t rows) {
  return dim3(static_cast<unsigned>(std::min(ceil_div(rows, kWarpsPerBlock), kMaxBlocks1D)));
}

// Butterfly sum: every lane ends with the same bits (see the file comment).
template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t s) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) s += __shfl_xor_sync(kFullMask, s, offset);
  return s;
}

// <a, b> over F contiguous features, identical in all lanes. Must be called by the whole warp.
template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
__device__ __forceinline__ acc_t warp_dot(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b, int64_t F,
                                          int lane) {
  acc_t s = acc_t(0);
  for (int64_t f = lane; f < F; f += kWarp) s += static_cast<acc_t>(a[f]) * static_cast<acc_t>(b[f]);
  return warp_sum(s);
}

// One batch of up to 32 consecutive edges of a row: lane j holds edge e0 + j's column and value
// (value 1 for an unweighted graph); broadcast(j) hands edge j to the whole warp.
template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
struct EdgeBatch {
  int64_t col;
  acc_t value;
  int count;  // warp-uniform

  __device__ __forceinline__ EdgeBatch(const int64_t* __restrict__ cols, const scalar_t* __restrict__ values,
                                       int64_t e0, int64_t end, int lane) {
    count = static_cast<int>(end - e0 < kWarp ? end - e0 : kWarp);
    col = 0;
    value = acc_t(1);
    if (lane < count) {
      col = cols[e0 + lane];
      if (values != nullptr) value = static_cast<acc_t>(values[e0 + lane]);
    }
  }
  __device__ __forceinline__ int64_t col_of(int j) const { return __shfl_sync(kFullMask, col, j); }
  __device__ __forceinline__ acc_t value_of(int j) const { return __shfl_sync(kFullMask, value, j); }
};

// ---------------------------------------------------------------------------------------------
// spmm / sddmm
// ---------------------------------------------------------------------------------------------

// acc += Σ_{u<U} value_{j+u}·x[col_{j+u}, f0 + lane + 32·i]: all U rows of x are loaded before the
// first multiply. One warp walks a whole row, so on a hub row (hundreds of edges) one load at a time
// leaves the time set by latency, not bandwidth (measured on an H100: PageRank on a 10k-node
// power-law graph took 118 µs per step, most of it its 401-edge row). The multiplies stay in edge
// order, so the sums are bitwise those of the one-edge loop.
template <int U, typename scalar_t, typename acc_t>
__device__ __forceinline__ void accumulate_edges(const EdgeBatch<scalar_t>& batch, int j, const scalar_t* __restrict__ x,
                                                 int64_t F, int64_t f0, int lane, acc_t (&acc)[kPerLane]) {
  acc_t w[U];
  scalar_t xv[U][kPerLane];
#pragma unroll
  for (int u = 0; u < U; ++u) {
    w[u] = batch.value_of(j + u);
    const scalar_t* xr = x + batch.col_of(j + u) * F + f0;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int64_t f = lane + kWarp * i;
      xv[u][i] = f0 + f < F ? xr[f] : scalar_t(0);
    }
  }
#pragma unroll
  for (int u = 0; u < U; ++u) {
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) acc[i] += w[u] * static_cast<acc_t>(xv[u][i]);
  }
}

// out[i] = alpha·Σ_e value_e·x[col_e] + beta·base[i]; warp per row, 128-feature tiles.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    spmm_kernel(const int64_t* __restrict__ rowptr, const int64_t* __restrict__ col,
                const scalar_t* __restrict__ value, const scalar_t* __restrict__ x, const scalar_t* __restrict__ base,
                scalar_t* __restrict__ out, int64_t R, int64_t F, at::opmath_type<scalar_t> alpha,
                at::opmath_type<scalar_t> beta) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = lane_id();
  for (int64_t row = global_warp(); row < R; row += warp_stride()) {
    const int64_t begin = rowptr[row], end = rowptr[row + 1];
    for (int64_t f0 = 0; f0 < F; f0 += kTileF) {
      acc_t acc[kPerLane];
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) acc[i] = acc_t(0);
      for (int64_t e0 = begin; e0 < end; e0 += kWarp) {
        const EdgeBatch<scalar_t> batch(col, value, e0, end, lane);
        int j = 0;
        for (; j + kEdgeUnroll <= batch.count; j += kEdgeUnroll)
          accumulate_edges<kEdgeUnroll>(batch, j, x, F, f0, lane, acc);
        for (; j < batch.count; ++j) accumulate_edges<1>(batch, j, x, F, f0, lane, acc);
      }
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) {
        const int64_t f = f0 + lane + kWarp * i;
        if (f >= F) continue;
        acc_t r = alpha * acc[i];
        if (base != nullptr) r += beta * static_cast<acc_t>(base[row * F + f]);
        out[row * F + f] = static_cast<scalar_t>(r);
      }
    }
  }
}

// out[e] = <a[row(e)], b[col_e]>; warp per row, one butterfly per edge. Lane j keeps edge j's
// result so the batch's 32 outputs are stored with one coalesced write.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    sddmm_kernel(const int64_t* __restrict__ rowptr, const int64_t* __restrict__ col, const scalar_t* __restrict__ a,
                 const scalar_t* __restrict__ b, scalar_t* __restrict__ out, int64_t R, int64_t F) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = lane_id();
  for (int64_t row = global_warp(); row < R; row += warp_stride()) {
    const int64_t begin = rowptr[row], end = rowptr[row + 1];
    const scalar_t* ar = a + row * F;
    for (int64_t e0 = begin; e0 < end; e0 += kWarp) {
      const EdgeBatch<scalar_t> batch(col, static_cast<const scalar_t*>(nullptr), e0, end, lane);
      acc_t mine = acc_t(0);
      for (int j = 0; j < batch.count; ++j) {
        const acc_t d = warp_dot(ar, b + batch.col_of(j) * F, F, lane);
        if (lane == j) mine = d;
      }
      if (lane < batch.count) out[e0 + lane] = static_cast<scalar_t>(mine);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Edge attention
// ---------------------------------------------------------------------------------------------

// Warp per target row, single pass with an online softmax. Fv wider than a tile is walked in
// 128-feature tiles, each recomputing the row's logits (same code → same bits, so lse agrees
// between tiles; tile 0 writes it). Fv == 0 still runs one tile to produce lse.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    edge_attention_kernel(const int64_t* __restrict__ rowptr, const int64_t* __restrict__ col,
                          const scalar_t* __restrict__ value, const scalar_t* __restrict__ q,
                          const scalar_t* __restrict__ k, const scalar_t* __restrict__ v, scalar_t* __restrict__ out,
                          at::opmath_type<scalar_t>* __restrict__ lse, int64_t R, int64_t Fq, int64_t Fv,
                          at::opmath_type<scalar_t> scale) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = lane_id();
  const int64_t tiles = Fv > 0 ? ceil_div(Fv, kTileF) : 1;
  for (int64_t row = global_warp(); row < R; row += warp_stride()) {
    const int64_t begin = rowptr[row], end = rowptr[row + 1];
    const scalar_t* qr = q + row * Fq;
    for (int64_t tile = 0; tile < tiles; ++tile) {
      const int64_t f0 = tile * kTileF;
      acc_t running_max = -std::numeric_limits<acc_t>::infinity();
      acc_t running_sum = acc_t(0);
      bool any = false;  // an unmasked edge was seen (warp-uniform)
      acc_t acc[kPerLane];
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) acc[i] = acc_t(0);
      for (int64_t e0 = begin; e0 < end; e0 += kWarp) {
        const EdgeBatch<scalar_t> batch(col, value, e0, end, lane);
        for (int j = 0; j < batch.count; ++j) {
          const int64_t c = batch.col_of(j);
          const acc_t w = batch.value_of(j);
          const acc_t s = attention_logit(scale, w, warp_dot(qr, k + c * Fq, Fq, lane));
          if (attention_masked(s)) continue;
          any = true;
          acc_t weight;
          const acc_t rescale = online_softmax_step(s, running_max, running_sum, weight);
          const scalar_t* vr = v + c * Fv + f0;
#pragma unroll
          for (int i = 0; i < kPerLane; ++i) {
            const int64_t f = lane + kWarp * i;
            const acc_t vf = f0 + f < Fv ? static_cast<acc_t>(vr[f]) : acc_t(0);
            acc[i] = acc[i] * rescale + weight * vf;
          }
        }
      }
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) {
        const int64_t f = f0 + lane + kWarp * i;
        if (f < Fv) out[row * Fv + f] = static_cast<scalar_t>(any ? acc[i] / running_sum : acc_t(0));
      }
      if (tile == 0 && lane == 0) lse[row] = any ? running_max + std::log(running_sum) : empty_row_lse<acc_t>();
    }
  }
}

// Per-row backward: prob_e, grad_logit_e = prob_e·(<g_i, v_col> − <g_i, out_i>) and
// grad_q_i = Σ_e grad_logit_e·scale·value_e·k_col. Warp per row; grad_q is accumulated in
// registers per 128-feature tile of Fq, recomputing the per-edge values for every tile (tile 0
// writes prob and grad_logit). Skips exactly what the CPU kernel skips (rows with lse = -inf,
// edges with prob == 0), so both backends produce the same zeros.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    edge_attention_backward_kernel(const int64_t* __restrict__ rowptr, const int64_t* __restrict__ col,
                                   const scalar_t* __restrict__ value, const scalar_t* __restrict__ q,
                                   const scalar_t* __restrict__ k, const scalar_t* __restrict__ v,
                                   const scalar_t* __restrict__ out, const at::opmath_type<scalar_t>* __restrict__ lse,
                                   const scalar_t* __restrict__ grad_out, scalar_t* __restrict__ grad_q,
                                   scalar_t* __restrict__ grad_logit, scalar_t* __restrict__ prob, int64_t R,
                                   int64_t Fq, int64_t Fv, at::opmath_type<scalar_t> scale) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = lane_id();
  const int64_t tiles = Fq > 0 ? ceil_div(Fq, kTileF) : 1;
  for (int64_t row = global_warp(); row < R; row += warp_stride()) {
    const int64_t begin = rowptr[row], end = rowptr[row + 1];
    const scalar_t* qr = q + row * Fq;
    const scalar_t* gr = grad_out + row * Fv;
    const acc_t row_lse = lse[row];
    const bool empty = row_lse == empty_row_lse<acc_t>();
    const acc_t delta = empty ? acc_t(0) : warp_dot(gr, out + row * Fv, Fv, lane);
    for (int64_t tile = 0; tile < tiles; ++tile) {
      const int64_t f0 = tile * kTileF;
      acc_t acc[kPerLane];
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) acc[i] = acc_t(0);
      for (int64_t e0 = begin; e0 < end; e0 += kWarp) {
        const EdgeBatch<scalar_t> batch(col, value, e0, end, lane);
        acc_t my_prob = acc_t(0), my_grad = acc_t(0);  // lane j: edge e0 + j
        const int live = empty ? 0 : batch.count;       // an empty row only writes zeros
        for (int j = 0; j < live; ++j) {
          const int64_t c = batch.col_of(j);
          const acc_t w = batch.value_of(j);
          const scalar_t* kr = k + c * Fq;
          const acc_t s = attention_logit(scale, w, warp_dot(qr, kr, Fq, lane));
          const acc_t p = attention_probability(s, row_lse);
          if (p == acc_t(0)) continue;  // masked (or underflowed): no gradient, as on the CPU
          const acc_t g = p * (warp_dot(gr, v + c * Fv, Fv, lane) - delta);
          if (lane == j) {
            my_prob = p;
            my_grad = g;
          }
          const acc_t coef = g * scale * w;
#pragma unroll
          for (int i = 0; i < kPerLane; ++i) {
            const int64_t f = f0 + lane + kWarp * i;
            if (f < Fq) acc[i] += coef * static_cast<acc_t>(kr[f]);
          }
        }
        if (tile == 0 && lane < batch.count) {
          prob[e0 + lane] = static_cast<scalar_t>(my_prob);
          grad_logit[e0 + lane] = static_cast<scalar_t>(my_grad);
        }
      }
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) {
        const int64_t f = f0 + lane + kWarp * i;
        if (f < Fq) grad_q[row * Fq + f] = static_cast<scalar_t>(acc[i]);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Chain operators, x (b, L, m) contiguous
// ---------------------------------------------------------------------------------------------

template <typename acc_t>
struct InlineTaps {
  acc_t value[kMaxInlineTaps];
};

// One thread per output element; consecutive threads take consecutive m (then t), so every tap's
// reads are coalesced. Taps are summed in index order and zero taps skipped, as in the reference.
// The inline path is fully unrolled so the by-value taps are read with constant offsets (a
// dynamic index into kernel parameters would force a local-memory copy).
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    chain_filter_kernel(const scalar_t* __restrict__ x, InlineTaps<at::opmath_type<scalar_t>> inline_taps,
                        const at::opmath_type<scalar_t>* __restrict__ device_taps, int64_t num_taps,
                        int64_t first_offset, const scalar_t* __restrict__ base, at::opmath_type<scalar_t> beta,
                        bool odd_reflect, scalar_t* __restrict__ out, int64_t total, int64_t L, int64_t m) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t idx = global_thread(); idx < total; idx += global_stride()) {
    const int64_t bt = idx / m;
    const int64_t t = bt % L;
    const scalar_t* xc = x + (bt - t) * m + (idx - bt * m);  // x[b, 0, feature]
    acc_t s = acc_t(0);
    auto add = [&](acc_t tap, int64_t j) {
      if (tap == acc_t(0)) return;
      int64_t u = source_position(t, first_offset, j);
      if (u < 0 || u >= L) {  // zero, or the odd reflection's signed image (propagation_math.h)
        if (!odd_reflect) return;
        const int sign = odd_reflection_source(u, L, &u);
        if (sign == 0) return;
        if (sign < 0) tap = -tap;
      }
      s += tap * static_cast<acc_t>(xc[u * m]);
    };
    if (device_taps == nullptr) {
#pragma unroll
      for (int j = 0; j < kMaxInlineTaps; ++j)
        if (j < num_taps) add(inline_taps.value[j], j);
    } else {
      for (int64_t j = 0; j < num_taps; ++j) add(device_taps[j], j);
    }
    if (base != nullptr) s += beta * static_cast<acc_t>(base[idx]);
    out[idx] = static_cast<scalar_t>(s);
  }
}

// Scans segments of a (b, L, m) array along L. Thread (b, segment, feature), flattened in that
// order, walks rows [segment·seg_len, min(L, (segment+1)·seg_len)) — backwards when reverse —
// starting from carry[thread] (0 without carry), writes the inclusive (or exclusive) running sum
// to out when out is given, and its segment total to totals when given. Reads happen before the
// write of the same element, so in == out (in-place) is allowed: no __restrict__ on them.
template <typename in_t, typename out_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    scan_segments_kernel(const in_t* in, out_t* out, const acc_t* __restrict__ carry, acc_t* __restrict__ totals,
                         int64_t b, int64_t L, int64_t m, int64_t seg_len, int64_t num_segments, bool reverse,
                         bool exclusive) {
  const int64_t threads = b * num_segments * m;
  for (int64_t idx = global_thread(); idx < threads; idx += global_stride()) {
    const int64_t feature = idx % m;
    const int64_t bs = idx / m;
    const int64_t segment = bs % num_segments;
    const int64_t lo = segment * seg_len;
    const int64_t hi = lo + seg_len < L ? lo + seg_len : L;
    const int64_t column = (bs / num_segments) * L * m + feature;
    acc_t s = carry != nullptr ? carry[idx] : acc_t(0);
    for (int64_t step = 0; step < hi - lo; ++step) {
      const int64_t p = column + (reverse ? hi - 1 - step : lo + step) * m;
      const acc_t value = static_cast<acc_t>(in[p]);
      if (exclusive) {
        if (out != nullptr) out[p] = static_cast<out_t>(s);
        s += value;
      } else {
        s += value;
        if (out != nullptr) out[p] = static_cast<out_t>(s);
      }
    }
    if (totals != nullptr) totals[idx] = s;
  }
}

// ---------------------------------------------------------------------------------------------
// Host side
// ---------------------------------------------------------------------------------------------

void check_cuda(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda(), "rpn2kernels: ", name, " must be a CUDA tensor for the cuda backend, got device ",
              t.device());
}

bool present(const c10::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

at::Tensor contiguous_or_undefined(const c10::optional<at::Tensor>& t) {
  return present(t) ? t->contiguous() : at::Tensor();
}

template <typename scalar_t>
const scalar_t* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<scalar_t>() : nullptr;
}

// out = alpha·P·x + beta·base on the current stream; inputs contiguous, out (R, F) allocated, R·F > 0.
template <typename scalar_t>
void launch_spmm(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& value, const at::Tensor& x,
                 const scalar_t* base, at::Tensor& out, double alpha, double beta) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t R = out.size(0), F = out.size(1);
  spmm_kernel<scalar_t><<<grid_warps(R), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      rowptr.const_data_ptr<int64_t>(), col.const_data_ptr<int64_t>(), ptr_or_null<scalar_t>(value),
      x.const_data_ptr<scalar_t>(), base, out.mutable_data_ptr<scalar_t>(), R, F, static_cast<acc_t>(alpha),
      static_cast<acc_t>(beta));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor spmm_cuda(const at::Tensor& rowptr_in, const at::Tensor& col_in, const c10::optional<at::Tensor>& value_in,
                     const at::Tensor& x_in, const c10::optional<at::Tensor>& base_in, double alpha, double beta) {
  const int64_t R = check_spmm(rowptr_in, col_in, value_in, x_in, base_in);
  check_cuda(x_in, "x");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const int64_t F = x_in.size(1);
  at::Tensor out = at::empty({R, F}, x_in.options());
  if (R == 0 || F == 0) return out;
  const at::Tensor rowptr = rowptr_in.contiguous(), col = col_in.contiguous(), x = x_in.contiguous();
  const at::Tensor value = contiguous_or_undefined(value_in), base = contiguous_or_undefined(base_in);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "rpn2kernels_spmm_cuda", [&] {
    launch_spmm<scalar_t>(rowptr, col, value, x, ptr_or_null<scalar_t>(base), out, alpha, beta);
  });
  return out;
}

at::Tensor pagerank_iterate_cuda(const at::Tensor& rowptr_in, const at::Tensor& col_in,
                                 const c10::optional<at::Tensor>& value_in, const at::Tensor& x_in, double c,
                                 int64_t iterations) {
  check_pagerank_iterate(rowptr_in, col_in, value_in, x_in, c, iterations);
  check_cuda(x_in, "x");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor rowptr = rowptr_in.contiguous(), col = col_in.contiguous(), x = x_in.contiguous();
  const at::Tensor value = contiguous_or_undefined(value_in);
  at::Tensor z = x * c;
  if (iterations == 0 || x.numel() == 0) return z;
  at::Tensor next = at::empty_like(z);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "rpn2kernels_pagerank_iterate_cuda", [&] {
    for (int64_t t = 0; t < iterations; ++t) {
      launch_spmm<scalar_t>(rowptr, col, value, z, x.const_data_ptr<scalar_t>(), next, 1.0 - c, c);
      std::swap(z, next);
    }
  });
  return z;
}

at::Tensor sddmm_cuda(const at::Tensor& rowptr_in, const at::Tensor& col_in, const at::Tensor& a_in,
                      const at::Tensor& b_in) {
  const int64_t R = check_sddmm(rowptr_in, col_in, a_in, b_in);
  check_cuda(a_in, "a");
  const c10::cuda::CUDAGuard guard(a_in.device());
  const int64_t E = col_in.numel(), F = a_in.size(1);
  if (F == 0) return at::zeros({E}, a_in.options());  // empty dot products
  at::Tensor out = at::empty({E}, a_in.options());
  if (R == 0 || E == 0) return out;
  const at::Tensor rowptr = rowptr_in.contiguous(), col = col_in.contiguous(), a = a_in.contiguous(),
                   b = b_in.contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "rpn2kernels_sddmm_cuda", [&] {
    sddmm_kernel<scalar_t><<<grid_warps(R), kThreads, 0, stream>>>(
        rowptr.const_data_ptr<int64_t>(), col.const_data_ptr<int64_t>(), a.const_data_ptr<scalar_t>(),
        b.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), R, F);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> edge_attention_cuda(const at::Tensor& rowptr_in, const at::Tensor& col_in,
                                                       const c10::optional<at::Tensor>& value_in,
                                                       const at::Tensor& q_in, const at::Tensor& k_in,
                                                       const at::Tensor& v_in, double scale) {
  const int64_t R = check_attention(rowptr_in, col_in, value_in, q_in, k_in, v_in);
  check_cuda(q_in, "q");
  const c10::cuda::CUDAGuard guard(q_in.device());
  const int64_t Fq = q_in.size(1), Fv = v_in.size(1);
  at::Tensor out = at::empty({R, Fv}, q_in.options());
  at::Tensor lse = at::empty({R}, q_in.options().dtype(lse_dtype(q_in.scalar_type())));
  if (R == 0) return {out, lse};
  // Even with E == 0 or Fv == 0 the kernel runs: it writes the empty-row lse (and zero outputs).
  const at::Tensor rowptr = rowptr_in.contiguous(), col = col_in.contiguous(), q = q_in.contiguous(),
                   k = k_in.contiguous(), v = v_in.contiguous();
  const at::Tensor value = contiguous_or_undefined(value_in);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "rpn2kernels_edge_attention_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;  // == lse_dtype(scalar_t); mutable_data_ptr checks it
    edge_attention_kernel<scalar_t><<<grid_warps(R), kThreads, 0, stream>>>(
        rowptr.const_data_ptr<int64_t>(), col.const_data_ptr<int64_t>(), ptr_or_null<scalar_t>(value),
        q.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>(), v.const_data_ptr<scalar_t>(),
        out.mutable_data_ptr<scalar_t>(), lse.mutable_data_ptr<acc_t>(), R, Fq, Fv, static_cast<acc_t>(scale));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> edge_attention_backward_cuda(
    const at::Tensor& rowptr_in, const at::Tensor& col_in, const c10::optional<at::Tensor>& value_in,
    const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in, const at::Tensor& out_in,
    const at::Tensor& lse_in, const at::Tensor& grad_out_in, double scale) {
  check_attention_backward(rowptr_in, col_in, value_in, q_in, k_in, v_in, out_in, lse_in, grad_out_in);
  check_cuda(q_in, "q");
  const at::ScalarType lse_type = lse_dtype(q_in.scalar_type());
  TORCH_CHECK(lse_in.scalar_type() == lse_type, "rpn2kernels: lse must have dtype ", lse_type, ", got ",
              lse_in.scalar_type());
  const c10::cuda::CUDAGuard guard(q_in.device());
  const int64_t R = q_in.size(0), Fq = q_in.size(1), Fv = v_in.size(1), E = col_in.numel();
  at::Tensor grad_q = at::empty({R, Fq}, q_in.options());
  if (R == 0) return {grad_q, at::zeros({E}, q_in.options()), at::zeros({E}, q_in.options())};
  at::Tensor grad_logit = at::empty({E}, q_in.options());
  at::Tensor prob = at::empty({E}, q_in.options());
  const at::Tensor rowptr = rowptr_in.contiguous(), col = col_in.contiguous(), q = q_in.contiguous(),
                   k = k_in.contiguous(), v = v_in.contiguous(), out = out_in.contiguous(), lse = lse_in.contiguous(),
                   grad_out = grad_out_in.contiguous();
  const at::Tensor value = contiguous_or_undefined(value_in);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, q.scalar_type(), "rpn2kernels_edge_attention_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        edge_attention_backward_kernel<scalar_t><<<grid_warps(R), kThreads, 0, stream>>>(
            rowptr.const_data_ptr<int64_t>(), col.const_data_ptr<int64_t>(), ptr_or_null<scalar_t>(value),
            q.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>(), v.const_data_ptr<scalar_t>(),
            out.const_data_ptr<scalar_t>(), lse.const_data_ptr<acc_t>(), grad_out.const_data_ptr<scalar_t>(),
            grad_q.mutable_data_ptr<scalar_t>(), grad_logit.mutable_data_ptr<scalar_t>(),
            prob.mutable_data_ptr<scalar_t>(), R, Fq, Fv, static_cast<acc_t>(scale));
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return {grad_q, grad_logit, prob};
}

at::Tensor chain_filter_cuda(const at::Tensor& x_in, at::ArrayRef<double> taps, int64_t first_offset,
                             const c10::optional<at::Tensor>& base_in, double beta, bool odd_reflect) {
  check_chain_filter(x_in, taps, first_offset, base_in, odd_reflect);
  check_cuda(x_in, "x");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options());
  const int64_t total = x.numel(), L = x.size(1), m = x.size(2);
  if (total == 0) return out;
  const at::Tensor base = contiguous_or_undefined(base_in);
  const int64_t num_taps = static_cast<int64_t>(taps.size());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "rpn2kernels_chain_filter_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    InlineTaps<acc_t> inline_taps{};
    at::Tensor device_taps;  // kept alive past the launch; the caching allocator is stream-ordered
    if (num_taps <= kMaxInlineTaps) {
      for (int64_t j = 0; j < num_taps; ++j) inline_taps.value[j] = static_cast<acc_t>(taps[j]);
    } else {
      device_taps = at::tensor(taps, at::TensorOptions().dtype(at::kDouble))
                        .to(x.device(), c10::CppTypeToScalarType<acc_t>::value);
    }
    chain_filter_kernel<scalar_t><<<grid_threads(total), kThreads, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), inline_taps, ptr_or_null<acc_t>(device_taps), num_taps, first_offset,
        ptr_or_null<scalar_t>(base), static_cast<acc_t>(beta), odd_reflect, out.mutable_data_ptr<scalar_t>(), total,
        L, m);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

// Sequential walk along L per (b, m) column. When there are too few columns to fill the GPU and
// the chain is long, L is cut into ~√L segments (a function of the shape only, so results do not
// depend on the device): (1) per-segment totals, (2) their exclusive scan per column, in place,
// (3) each segment rescanned from its carry. Every sum still has one owner: deterministic.
at::Tensor chain_scan_cuda(const at::Tensor& x_in, bool reverse) {
  check_chain_input(x_in);
  check_cuda(x_in, "x");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options());
  const int64_t b = x.size(0), L = x.size(1), m = x.size(2);
  if (x.numel() == 0) return out;
  const int64_t columns = b * m;
  int64_t segments = 1;
  if (columns < kScanWideColumns && L >= kScanMinSegmentedLength) {
    const int64_t root = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(L))));
    segments = std::min(root, ceil_div(kScanWideColumns, columns));
  }
  const int64_t seg_len = ceil_div(L, segments);
  segments = ceil_div(L, seg_len);  // no empty trailing segment
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "rpn2kernels_chain_scan_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    if (segments == 1) {
      scan_segments_kernel<scalar_t, scalar_t, acc_t><<<grid_threads(columns), kThreads, 0, stream>>>(
          xp, op, nullptr, nullptr, b, L, m, L, 1, reverse, false);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
    // carry has shape (b, segments, m): thread (b, s, f) of passes 1 and 3 indexes it directly,
    // and pass 2 scans it as a (b, L' = segments, m) chain in one segment.
    at::Tensor carry = at::empty({b, segments, m}, x.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    acc_t* cp = carry.mutable_data_ptr<acc_t>();
    scan_segments_kernel<scalar_t, scalar_t, acc_t><<<grid_threads(columns * segments), kThreads, 0, stream>>>(
        xp, static_cast<scalar_t*>(nullptr), nullptr, cp, b, L, m, seg_len, segments, reverse, false);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    scan_segments_kernel<acc_t, acc_t, acc_t><<<grid_threads(columns), kThreads, 0, stream>>>(
        cp, cp, nullptr, nullptr, b, segments, m, segments, 1, reverse, true);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    scan_segments_kernel<scalar_t, scalar_t, acc_t><<<grid_threads(columns * segments), kThreads, 0, stream>>>(
        xp, op, cp, nullptr, b, L, m, seg_len, segments, reverse, false);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace
}  // namespace propagation
}  // namespace rpn2kernels

TORCH_LIBRARY_IMPL(rpn2kernels, CUDA, m) {
  m.impl("spmm", &rpn2kernels::propagation::spmm_cuda);
  m.impl("pagerank_iterate", &rpn2kernels::propagation::pagerank_iterate_cuda);
  m.impl("sddmm", &rpn2kernels::propagation::sddmm_cuda);
  m.impl("edge_attention", &rpn2kernels::propagation::edge_attention_cuda);
  m.impl("edge_attention_backward", &rpn2kernels::propagation::edge_attention_backward_cuda);
  m.impl("chain_filter", &rpn2kernels::propagation::chain_filter_cuda);
  m.impl("chain_scan", &rpn2kernels::propagation::chain_scan_cuda);
}
