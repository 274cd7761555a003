// CUDA kernels of the expansion family κ (functions.md §2.4–2.7, §2.14), registered for the CUDA
// dispatch key. The per-element math (recurrences, RBFs, B-splines and their derivatives) comes
// from csrc/include/rpn2kernels/expansion_math.h, shared with the CPU kernels, so the two backends
// cannot drift apart.
//
// Design (the same as the Triton kernels):
// - expand_linear never materialises κ(x): the A tile of its GEMM is generated from x in the
//   prologue, so κ(x) exists only as a 64×32 tile in shared memory.
// - The backward regenerates κ (or its derivative) tile by tile instead of saving it, and reduces
//   dW and dx without float atomics: every output element is owned by exactly one thread that
//   sums in a fixed order, so results are bitwise reproducible run to run.
// - Taylor is not elementwise (its columns mix attributes); it goes through cuBLAS (at::mm/bmm) in
//   row chunks, degree 2 through the bilinear identity of §2.4 so that x⊗x is never stored.
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
#include <cstdint>
#include <tuple>

#include "rpn2kernels/expansion_host.h"
#include "rpn2kernels/expansion_math.h"

namespace rpn2kernels {
namespace expansion {
namespace {

// GEMM blocking: 256 threads as a 16×16 grid, each owning a 4×4 micro-tile of a 64×64 block tile.
// The micro-tile is strided (rows ty + 16 i, columns tx + 16 j) rather than contiguous so that
// the shared-memory reads of the inner loop are bank-conflict free without padding tricks.
constexpr int kThreads = 256;
constexpr int kTile = 64;
constexpr int kGrid = 16;
constexpr int kMicro = kTile / kGrid;
// Reduction depth per step: the forward reduces over D (32 feature columns per step, enough to
// amortise the feature generation across whole attributes for small K); the backward GEMMs reduce
// over n or B in steps of 16 to keep the shared-memory footprint of float64 under 48 KiB.
constexpr int kForwardDepth = 32;
constexpr int kBackwardDepth = 16;
// Grids stay within the 65535 limit of gridDim.y/z; kernels loop over the remaining tiles.
constexpr int64_t kMaxGridYZ = 65535;
constexpr int64_t kMaxBlocks1D = int64_t(1) << 20;
// Elements per Taylor intermediate (a row chunk of κ, or the (n, rows, m) tensors of the degree-2
// identity): bounds the extra memory of the Taylor paths independently of B.
constexpr int64_t kChunkElements = int64_t(1) << 24;
// Splitting the dW reduction over B is only worth a second pass when each split keeps this many
// rows; below that the partial-sum traffic exceeds the GEMM work.
constexpr int64_t kMinRowsPerSplit = 256;

__host__ __device__ constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

__device__ __forceinline__ int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
__device__ __forceinline__ int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

__device__ __forceinline__ int64_t global_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t global_stride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

dim3 grid_1d(int64_t total) { return dim3(static_cast<unsigned>(std::min(ceil_div(total, kThreads), kMaxBlocks1D))); }

// ---------------------------------------------------------------------------------------------
// Elementwise bases (interleaved layout, column = i*K + k)
// ---------------------------------------------------------------------------------------------

// One thread per (row, attribute): the recurrence of one scalar yields all its K features, and
// (row*m + i)*K + k = row*D + i*K + k because D = m*K.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    expand_kernel(BasisSpec spec, const scalar_t* __restrict__ x, scalar_t* __restrict__ out, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t K = spec.features;
  for (int64_t e = global_thread(); e < total; e += global_stride()) {
    scalar_t* dst = out + e * K;
    for_each_feature<acc_t, false>(spec, static_cast<acc_t>(x[e]),
                                   [&](int64_t k, acc_t v, acc_t) { dst[k] = static_cast<scalar_t>(v); });
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    expand_backward_kernel(BasisSpec spec, const scalar_t* __restrict__ grad, const scalar_t* __restrict__ x,
                           scalar_t* __restrict__ dx, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t K = spec.features;
  for (int64_t e = global_thread(); e < total; e += global_stride()) {
    const scalar_t* g = grad + e * K;
    acc_t sum = acc_t(0);
    for_each_feature<acc_t, true>(spec, static_cast<acc_t>(x[e]),
                                  [&](int64_t k, acc_t, acc_t d) { sum += static_cast<acc_t>(g[k]) * d; });
    dx[e] = static_cast<scalar_t>(sum);
  }
}

// Writes tile(r, c) = κ(x)[row0 + r, col0 + c] for r < rows, c < cols into shared memory at
// tile[r*row_stride + c*col_stride], with 0 wherever row >= row_end or the column is past D.
// Work is split by (row, attribute) pairs rather than by tile element because one recurrence
// produces all K features of an attribute; attributes straddling the tile edge are evaluated
// fully and clipped. Consecutive threads take consecutive attributes of a row so x is read
// coalesced.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void generate_feature_tile(const BasisSpec& spec, const scalar_t* __restrict__ x,
                                                      int64_t row_end, int64_t m, int64_t row0, int rows,
                                                      int64_t col0, int cols, acc_t* tile, int row_stride,
                                                      int col_stride) {
  const int64_t K = spec.features;
  const int64_t a_first = col0 / K;
  const int na = static_cast<int>((col0 + cols - 1) / K - a_first + 1);
  for (int p = threadIdx.x; p < rows * na; p += blockDim.x) {
    const int r = p / na;
    const int64_t a = a_first + p % na;
    const int64_t row = row0 + r;
    const int64_t base = a * K - col0;  // tile column of feature 0 of attribute a (may be < 0)
    acc_t* dst = tile + r * row_stride;
    if (row < row_end && a < m) {
      for_each_feature<acc_t, false>(spec, static_cast<acc_t>(x[row * m + a]), [&](int64_t k, acc_t v, acc_t) {
        const int64_t c = base + k;
        if (c >= 0 && c < cols) dst[c * col_stride] = v;
      });
    } else {
      for (int64_t c = imax(base, 0); c < imin(base + K, cols); ++c) dst[c * col_stride] = acc_t(0);
    }
  }
}

// y = κ(x)·Wᵀ + b. Block: 64 rows × 64 outputs; the reduction over D walks 32 feature columns at a
// time, generating the κ tile from x and loading the W tile, both converted to the accumulation
// type once so the inner loop is pure opmath FMAs.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    expand_linear_forward_kernel(BasisSpec spec, const scalar_t* __restrict__ x, const scalar_t* __restrict__ w,
                                 const scalar_t* __restrict__ bias, scalar_t* __restrict__ y, int64_t B, int64_t m,
                                 int64_t n, int64_t D) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t a_tile[kForwardDepth][kTile];      // [feature column][row]
  __shared__ acc_t w_tile[kForwardDepth][kTile + 1];  // [feature column][output]; +1 spreads the
                                                      // column-major stores over the banks
  const int tx = threadIdx.x % kGrid, ty = threadIdx.x / kGrid;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int64_t n_tiles = ceil_div(n, kTile);
  for (int64_t jt = blockIdx.y; jt < n_tiles; jt += gridDim.y) {
    const int64_t j0 = jt * kTile;
    acc_t acc[kMicro][kMicro];
#pragma unroll
    for (int i = 0; i < kMicro; ++i)
#pragma unroll
      for (int j = 0; j < kMicro; ++j) acc[i][j] = acc_t(0);

    for (int64_t c0 = 0; c0 < D; c0 += kForwardDepth) {
      generate_feature_tile<scalar_t, acc_t>(spec, x, B, m, row0, kTile, c0, kForwardDepth, &a_tile[0][0], 1, kTile);
      // Consecutive threads read consecutive columns of one W row: coalesced.
      for (int e = threadIdx.x; e < kForwardDepth * kTile; e += kThreads) {
        const int c = e % kForwardDepth, j = e / kForwardDepth;
        const int64_t col = c0 + c, out = j0 + j;
        w_tile[c][j] = (col < D && out < n) ? static_cast<acc_t>(w[out * D + col]) : acc_t(0);
      }
      __syncthreads();
#pragma unroll 8
      for (int c = 0; c < kForwardDepth; ++c) {
        acc_t av[kMicro], bv[kMicro];
#pragma unroll
        for (int i = 0; i < kMicro; ++i) {
          av[i] = a_tile[c][ty + i * kGrid];
          bv[i] = w_tile[c][tx + i * kGrid];
        }
#pragma unroll
        for (int i = 0; i < kMicro; ++i)
#pragma unroll
          for (int j = 0; j < kMicro; ++j) acc[i][j] += av[i] * bv[j];
      }
      __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < kMicro; ++i) {
      const int64_t row = row0 + ty + i * kGrid;
      if (row >= B) continue;
#pragma unroll
      for (int j = 0; j < kMicro; ++j) {
        const int64_t out = j0 + tx + j * kGrid;
        if (out >= n) continue;
        acc_t v = acc[i][j];
        if (bias != nullptr) v += static_cast<acc_t>(bias[out]);
        y[row * n + out] = static_cast<scalar_t>(v);
      }
    }
  }
}

// dx of expand_linear: dK = G·W is computed tile by tile and contracted with the derivative
// recurrence in the epilogue, dx[r, i] = Σ_k dK[r, i*K + k]·P'_k(x[r, i]). A block owns 64 rows
// and a group of whole attributes (64/K of them, or one attribute of K > 64 columns walked in
// 64-column sub-tiles), so every dx element is finished by one thread: no atomics, no dK in
// global memory.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    expand_linear_input_grad_kernel(BasisSpec spec, const scalar_t* __restrict__ g, const scalar_t* __restrict__ x,
                                    const scalar_t* __restrict__ w, scalar_t* __restrict__ dx, int64_t B, int64_t m,
                                    int64_t n, int64_t D, int64_t attrs_per_block) {
  using acc_t = at::opmath_type<scalar_t>;
  // The dK tile is only needed after the operand tiles are dead, so they share storage; this keeps
  // float64 within the 48 KiB static shared-memory limit.
  struct Operands {
    acc_t g[kBackwardDepth][kTile];  // [output][row]
    acc_t w[kBackwardDepth][kTile];  // [output][feature column]
  };
  union Shared {
    Operands op;
    acc_t dk[kTile][kTile + 1];  // [row][feature column]; +1: the epilogue reads along rows
  };
  __shared__ Shared smem;
  __shared__ acc_t dx_part[kTile];  // running dx of a row when one attribute spans sub-tiles

  const int tx = threadIdx.x % kGrid, ty = threadIdx.x / kGrid;
  const int64_t K = spec.features;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int64_t groups = ceil_div(m, attrs_per_block);
  for (int64_t grp = blockIdx.y; grp < groups; grp += gridDim.y) {
    const int64_t a_begin = grp * attrs_per_block;
    const int64_t a_end = imin(m, a_begin + attrs_per_block);
    const int64_t span_end = a_end * K;
    // Only possible with one attribute per block (K > kTile): then p below equals the row, so
    // thread r alone touches dx_part[r] and needs no barrier around it.
    const bool split_attribute = span_end - a_begin * K > kTile;
    if (threadIdx.x < kTile) dx_part[threadIdx.x] = acc_t(0);

    for (int64_t s0 = a_begin * K; s0 < span_end; s0 += kTile) {
      acc_t acc[kMicro][kMicro];
#pragma unroll
      for (int i = 0; i < kMicro; ++i)
#pragma unroll
        for (int j = 0; j < kMicro; ++j) acc[i][j] = acc_t(0);

      for (int64_t n0 = 0; n0 < n; n0 += kBackwardDepth) {
        for (int e = threadIdx.x; e < kBackwardDepth * kTile; e += kThreads) {
          const int kk = e % kBackwardDepth, r = e / kBackwardDepth;
          const int64_t row = row0 + r, out = n0 + kk;
          smem.op.g[kk][r] = (row < B && out < n) ? static_cast<acc_t>(g[row * n + out]) : acc_t(0);
        }
        for (int e = threadIdx.x; e < kBackwardDepth * kTile; e += kThreads) {
          const int c = e % kTile, kk = e / kTile;
          const int64_t col = s0 + c, out = n0 + kk;
          smem.op.w[kk][c] = (col < span_end && out < n) ? static_cast<acc_t>(w[out * D + col]) : acc_t(0);
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kBackwardDepth; ++kk) {
          acc_t av[kMicro], bv[kMicro];
#pragma unroll
          for (int i = 0; i < kMicro; ++i) {
            av[i] = smem.op.g[kk][ty + i * kGrid];
            bv[i] = smem.op.w[kk][tx + i * kGrid];
          }
#pragma unroll
          for (int i = 0; i < kMicro; ++i)
#pragma unroll
            for (int j = 0; j < kMicro; ++j) acc[i][j] += av[i] * bv[j];
        }
        __syncthreads();
      }

#pragma unroll
      for (int i = 0; i < kMicro; ++i)
#pragma unroll
        for (int j = 0; j < kMicro; ++j) smem.dk[ty + i * kGrid][tx + j * kGrid] = acc[i][j];
      __syncthreads();

      const int64_t a_first = s0 / K;
      const int64_t a_last = imin(a_end, ceil_div(imin(s0 + kTile, span_end), K));  // exclusive
      const int na = static_cast<int>(a_last - a_first);
      for (int p = threadIdx.x; p < kTile * na; p += kThreads) {
        const int r = p / na;
        const int64_t a = a_first + p % na;
        const int64_t row = row0 + r;
        if (row >= B) continue;
        const int64_t base = a * K - s0;
        acc_t sum = acc_t(0);
        for_each_feature<acc_t, true>(spec, static_cast<acc_t>(x[row * m + a]), [&](int64_t k, acc_t, acc_t d) {
          const int64_t c = base + k;
          if (c >= 0 && c < kTile) sum += smem.dk[r][c] * d;
        });
        if (split_attribute) {
          dx_part[r] += sum;
        } else {
          dx[row * m + a] = static_cast<scalar_t>(sum);
        }
      }
      __syncthreads();  // the next sub-tile or group overwrites smem
    }
    if (split_attribute && threadIdx.x < kTile && row0 + threadIdx.x < B) {
      dx[(row0 + threadIdx.x) * m + a_begin] = static_cast<scalar_t>(dx_part[threadIdx.x]);
    }
  }
}

// dW = Gᵀ·κ(x). A block owns a 64×64 tile of dW (outputs × feature columns) and reduces over its
// slice of rows [z*rows_per_split, …) in a loop, regenerating κ for 16 rows at a time. With one
// split it writes dW directly; with several, each split writes its own partial tile (out_t =
// opmath type) and sum_splits_kernel adds them in split order, so the result is deterministic.
template <typename scalar_t, typename out_t>
__global__ void __launch_bounds__(kThreads)
    expand_linear_weight_grad_kernel(BasisSpec spec, const scalar_t* __restrict__ g, const scalar_t* __restrict__ x,
                                     out_t* __restrict__ dw, int64_t B, int64_t m, int64_t n, int64_t D,
                                     int64_t rows_per_split) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t g_tile[kBackwardDepth][kTile];  // [row][output]
  __shared__ acc_t k_tile[kBackwardDepth][kTile];  // [row][feature column]
  const int tx = threadIdx.x % kGrid, ty = threadIdx.x / kGrid;
  const int64_t c0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int64_t row_begin = static_cast<int64_t>(blockIdx.z) * rows_per_split;
  const int64_t row_end = imin(B, row_begin + rows_per_split);
  out_t* out = dw + static_cast<int64_t>(blockIdx.z) * n * D;
  const int64_t n_tiles = ceil_div(n, kTile);
  for (int64_t jt = blockIdx.y; jt < n_tiles; jt += gridDim.y) {
    const int64_t j0 = jt * kTile;
    acc_t acc[kMicro][kMicro];
#pragma unroll
    for (int i = 0; i < kMicro; ++i)
#pragma unroll
      for (int j = 0; j < kMicro; ++j) acc[i][j] = acc_t(0);

    for (int64_t r0 = row_begin; r0 < row_end; r0 += kBackwardDepth) {
      generate_feature_tile<scalar_t, acc_t>(spec, x, row_end, m, r0, kBackwardDepth, c0, kTile, &k_tile[0][0],
                                             kTile, 1);
      for (int e = threadIdx.x; e < kBackwardDepth * kTile; e += kThreads) {
        const int j = e % kTile, r = e / kTile;
        const int64_t row = r0 + r, o = j0 + j;
        g_tile[r][j] = (row < row_end && o < n) ? static_cast<acc_t>(g[row * n + o]) : acc_t(0);
      }
      __syncthreads();
#pragma unroll
      for (int r = 0; r < kBackwardDepth; ++r) {
        acc_t av[kMicro], bv[kMicro];
#pragma unroll
        for (int i = 0; i < kMicro; ++i) {
          av[i] = g_tile[r][ty + i * kGrid];
          bv[i] = k_tile[r][tx + i * kGrid];
        }
#pragma unroll
        for (int i = 0; i < kMicro; ++i)
#pragma unroll
          for (int j = 0; j < kMicro; ++j) acc[i][j] += av[i] * bv[j];
      }
      __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < kMicro; ++i) {
      const int64_t o = j0 + ty + i * kGrid;
      if (o >= n) continue;
#pragma unroll
      for (int j = 0; j < kMicro; ++j) {
        const int64_t col = c0 + tx + j * kGrid;
        if (col < D) out[o * D + col] = static_cast<out_t>(acc[i][j]);
      }
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    sum_splits_kernel(const acc_t* __restrict__ parts, scalar_t* __restrict__ out, int64_t count, int64_t splits) {
  for (int64_t e = global_thread(); e < count; e += global_stride()) {
    acc_t s = acc_t(0);
    for (int64_t sp = 0; sp < splits; ++sp) s += parts[sp * count + e];
    out[e] = static_cast<scalar_t>(s);
  }
}

// ---------------------------------------------------------------------------------------------
// Taylor (block layout of ordered monomials, §2.4)
// ---------------------------------------------------------------------------------------------

// One thread per output element. The product is formed from the most significant digit a_1 down
// so that float32/float64 results match the reference's ((x_a1·x_a2)·x_a3)… bit for bit.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    taylor_expand_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ out, int64_t rows, int64_t m,
                         int64_t D) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t e = global_thread(); e < rows * D; e += global_stride()) {
    const int64_t row = e / D;
    int64_t col = e - row * D;
    int64_t size = m;  // m^k, the width of the degree-k block
    int64_t k = 1;
    while (col >= size) {
      col -= size;
      size *= m;
      ++k;
    }
    const scalar_t* xr = x + row * m;
    acc_t v = acc_t(1);
    for (int64_t place = size / m, j = 0; j < k; ++j, place /= m) {
      const int64_t digit = col / place;
      col -= digit * place;
      v *= static_cast<acc_t>(xr[digit]);
    }
    out[e] = static_cast<scalar_t>(v);
  }
}

// dx[r, a] = Σ_col g[r, col]·∂κ_col/∂x_a. For the degree-k block, the monomials containing x_a at
// position j are enumerated by the other k-1 digits t; their derivative is the product of those
// digits' x (a tuple with a at several positions is visited once per position, which is exactly
// the product rule).
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    taylor_backward_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ x,
                           scalar_t* __restrict__ dx, int64_t rows, int64_t m, int64_t D, int64_t degree) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t e = global_thread(); e < rows * m; e += global_stride()) {
    const int64_t row = e / m, a = e - row * m;
    const scalar_t* xr = x + row * m;
    const scalar_t* gr = grad + row * D;
    acc_t sum = static_cast<acc_t>(gr[a]);
    int64_t offset = m;  // first column of the degree-k block
    int64_t inner = 1;   // m^(k-1): the number of tuples of the other k-1 digits
    for (int64_t k = 2; k <= degree; ++k) {
      inner *= m;
      // place = m^(k-1-j), the place value of position j (j = 0 is the most significant digit)
      for (int64_t j = 0, place = inner; j < k; ++j, place /= m) {
        for (int64_t t = 0; t < inner; ++t) {
          const int64_t prefix = t / place, suffix = t - prefix * place;
          const int64_t col = offset + (prefix * m + a) * place + suffix;
          acc_t prod = acc_t(1);
          for (int64_t u = t, q = 1; q < k; ++q, u /= m) prod *= static_cast<acc_t>(xr[u % m]);
          sum += static_cast<acc_t>(gr[col]) * prod;
        }
      }
      offset += inner * m;
    }
    dx[e] = static_cast<scalar_t>(sum);
  }
}

// ---------------------------------------------------------------------------------------------
// Host side
// ---------------------------------------------------------------------------------------------

void check_cuda(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda(), "rpn2kernels: ", name, " must be a CUDA tensor for the cuda backend, got device ",
              t.device());
}

bool is_reduced(at::ScalarType t) { return t == at::kHalf || t == at::kBFloat16; }

// Accumulating dW over row chunks in half precision would round once per chunk; reduced types
// therefore accumulate into a float32 buffer, the others in place.
void accumulate_mm(const at::Tensor& acc, const at::Tensor& a, const at::Tensor& b) {
  if (acc.scalar_type() == a.scalar_type()) {
    acc.addmm_(a, b);
  } else {
    acc.add_(at::mm(a, b));
  }
}

void accumulate_bmm(const at::Tensor& acc, const at::Tensor& a, const at::Tensor& b) {
  if (acc.scalar_type() == a.scalar_type()) {
    acc.baddbmm_(a, b);
  } else {
    acc.add_(at::bmm(a, b));
  }
}

int64_t rows_per_chunk(int64_t B, int64_t elements_per_row) {
  return std::max<int64_t>(1, std::min<int64_t>(B, kChunkElements / std::max<int64_t>(1, elements_per_row)));
}

// κ of rows x (rows, m) into out (rows, D), both contiguous.
void launch_taylor_expand(const at::Tensor& x, const at::Tensor& out) {
  const int64_t rows = x.size(0), m = x.size(1), D = out.size(1);
  if (rows * D == 0) return;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "rpn2kernels_taylor_expand", [&] {
    taylor_expand_kernel<scalar_t><<<grid_1d(rows * D), kThreads, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), rows, m, D);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

// dx (rows, m) from the gradient of κ grad (rows, D), all contiguous.
void launch_taylor_backward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& dx, int64_t degree) {
  const int64_t rows = x.size(0), m = x.size(1), D = grad.size(1);
  if (rows * m == 0) return;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "rpn2kernels_taylor_backward", [&] {
    taylor_backward_kernel<scalar_t><<<grid_1d(rows * m), kThreads, 0, stream>>>(
        grad.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), dx.mutable_data_ptr<scalar_t>(), rows, m, D,
        degree);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

// Taylor y = κ(x)·Wᵀ + b. Degree 2 uses the bilinear identity with W2[j,a,c] = W[j, m + a*m + c]:
// U[j,r,a] = Σ_c W2[j,a,c]·x_c (a batched GEMM against the strided view of W, broadcasting the
// chunk of x with a zero batch stride, so neither W2 nor x is copied) and y2[r,j] = Σ_a U[j,r,a]·x_a;
// the intermediate is (n, rows, m) instead of (rows, m²). Other degrees materialise κ one row
// chunk at a time.
at::Tensor taylor_linear_forward(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias,
                                 int64_t degree, int64_t D) {
  const int64_t B = x.size(0), m = x.size(1), n = w.size(0);
  const bool has_bias = bias.has_value() && bias->defined();
  at::Tensor y = at::empty({B, n}, x.options());
  auto linear_into = [&](at::Tensor out, const at::Tensor& features, const at::Tensor& weight) {
    if (has_bias) {
      at::addmm_out(out, *bias, features, weight.t());
    } else {
      at::mm_out(out, features, weight.t());
    }
  };
  if (degree == 2) {
    const at::Tensor w1 = w.narrow(1, 0, m);
    const at::Tensor w2t = w.narrow(1, m, m * m).view({n, m, m}).transpose(1, 2);  // [j][c][a]
    const int64_t chunk = rows_per_chunk(B, n * m);
    for (int64_t r0 = 0; r0 < B; r0 += chunk) {
      const int64_t rows = std::min(chunk, B - r0);
      const at::Tensor xc = x.narrow(0, r0, rows);
      const at::Tensor u = at::bmm(xc.unsqueeze(0).expand({n, rows, m}), w2t);
      const at::Tensor y2 = at::bmm(u.permute({1, 0, 2}), xc.unsqueeze(2)).squeeze(2);
      at::Tensor yc = y.narrow(0, r0, rows);
      linear_into(yc, xc, w1);
      yc.add_(y2);
    }
    return y;
  }
  const int64_t chunk = rows_per_chunk(B, D);
  at::Tensor features = at::empty({chunk, D}, x.options());
  for (int64_t r0 = 0; r0 < B; r0 += chunk) {
    const int64_t rows = std::min(chunk, B - r0);
    const at::Tensor xc = x.narrow(0, r0, rows);
    const at::Tensor kc = features.narrow(0, 0, rows);
    launch_taylor_expand(xc, kc);
    linear_into(y.narrow(0, r0, rows), kc, w);
  }
  return y;
}

// Taylor (dx, dW). Degree 2 (§2.4): dx = G·W1 + Σ_j g_j·(W2_j + W2_jᵀ)·x, formed as the two batched
// GEMMs V = x·W2_jᵀ + x·W2_j then a per-row contraction with G; dW1 = Gᵀ·X; dW2_j = (X ⊙ g_j)ᵀ·X as
// one batched GEMM per chunk. Other degrees: κ and dK = G·W per row chunk, dx by the Taylor
// backward kernel.
std::tuple<at::Tensor, at::Tensor> taylor_linear_backward(const at::Tensor& g, const at::Tensor& x,
                                                          const at::Tensor& w, int64_t degree, int64_t D) {
  const int64_t B = x.size(0), m = x.size(1), n = w.size(0);
  const at::ScalarType acc_type = is_reduced(x.scalar_type()) ? at::kFloat : x.scalar_type();
  at::Tensor acc = at::zeros({n, D}, x.options().dtype(acc_type));
  at::Tensor dx = at::empty({B, m}, x.options());
  if (degree == 2) {
    const at::Tensor w1 = w.narrow(1, 0, m);
    const at::Tensor w2 = w.narrow(1, m, m * m).view({n, m, m});  // [j][a][c]
    const at::Tensor acc2 = acc.narrow(1, m, m * m).view({n, m, m});
    at::mm_out(dx, g, w1);
    accumulate_mm(acc.narrow(1, 0, m), g.t(), x);
    const int64_t chunk = rows_per_chunk(B, n * m);
    for (int64_t r0 = 0; r0 < B; r0 += chunk) {
      const int64_t rows = std::min(chunk, B - r0);
      const at::Tensor xc = x.narrow(0, r0, rows);
      const at::Tensor gc = g.narrow(0, r0, rows);
      const at::Tensor xe = xc.unsqueeze(0).expand({n, rows, m});
      at::Tensor v = at::bmm(xe, w2.transpose(1, 2));  // Σ_c W2[j,a,c]·x_c
      v.baddbmm_(xe, w2);                               // + Σ_c W2[j,c,a]·x_c
      dx.narrow(0, r0, rows).add_(at::bmm(gc.unsqueeze(1), v.permute({1, 0, 2})).squeeze(1));
      at::Tensor z = at::empty({n, rows, m}, x.options());  // z[j,r,a] = g[r,j]·x[r,a]
      at::mul_out(z, gc.t().unsqueeze(2), xc.unsqueeze(0));
      accumulate_bmm(acc2, z.transpose(1, 2), xe);
    }
  } else {
    const int64_t chunk = rows_per_chunk(B, D);
    at::Tensor features = at::empty({chunk, D}, x.options());
    at::Tensor dfeatures = at::empty({chunk, D}, x.options());
    for (int64_t r0 = 0; r0 < B; r0 += chunk) {
      const int64_t rows = std::min(chunk, B - r0);
      const at::Tensor xc = x.narrow(0, r0, rows);
      const at::Tensor gc = g.narrow(0, r0, rows);
      const at::Tensor kc = features.narrow(0, 0, rows);
      at::Tensor dkc = dfeatures.narrow(0, 0, rows);
      launch_taylor_expand(xc, kc);
      accumulate_mm(acc, gc.t(), kc);
      at::mm_out(dkc, gc, w);
      launch_taylor_backward(dkc, xc, dx.narrow(0, r0, rows), degree);
    }
  }
  return {dx, acc.scalar_type() == x.scalar_type() ? acc : acc.to(x.scalar_type())};
}

int sm_count(const at::Tensor& t) {
  int count = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, t.get_device()));
  return std::max(count, 1);
}

// ---------------------------------------------------------------------------------------------
// Ops
// ---------------------------------------------------------------------------------------------

at::Tensor expand_cuda(const at::Tensor& x_in, c10::string_view basis, int64_t degree, at::ArrayRef<double> params) {
  const BasisSpec spec = make_basis_spec(basis, degree, params);
  check_input(x_in);
  check_cuda(x_in, "x");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const int64_t B = x.size(0), m = x.size(1), D = expansion_width(spec, m);
  at::Tensor out = at::empty({B, D}, x.options());
  if (B == 0 || D == 0) return out;
  if (spec.basis == Basis::Taylor) {
    launch_taylor_expand(x, out);
    return out;
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "rpn2kernels_expand", [&] {
    expand_kernel<scalar_t><<<grid_1d(B * m), kThreads, 0, stream>>>(spec, x.const_data_ptr<scalar_t>(),
                                                                      out.mutable_data_ptr<scalar_t>(), B * m);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor expand_backward_cuda(const at::Tensor& grad_in, const at::Tensor& x_in, c10::string_view basis,
                                int64_t degree, at::ArrayRef<double> params) {
  const BasisSpec spec = make_basis_spec(basis, degree, params);
  check_cuda(x_in, "x");
  const int64_t B = x_in.size(0), m = x_in.size(1), D = check_backward_inputs(grad_in, x_in, spec);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const at::Tensor grad = grad_in.contiguous();
  at::Tensor dx = at::empty({B, m}, x.options());
  if (B == 0 || m == 0) return dx;
  if (spec.basis == Basis::Taylor) {
    launch_taylor_backward(grad, x, dx, spec.degree);
    return dx;
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "rpn2kernels_expand_backward", [&] {
    expand_backward_kernel<scalar_t><<<grid_1d(B * m), kThreads, 0, stream>>>(
        spec, grad.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), dx.mutable_data_ptr<scalar_t>(), B * m);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return dx;
}

at::Tensor expand_linear_cuda(const at::Tensor& x_in, const at::Tensor& w_in, const c10::optional<at::Tensor>& bias_in,
                              c10::string_view basis, int64_t degree, at::ArrayRef<double> params) {
  const BasisSpec spec = make_basis_spec(basis, degree, params);
  const int64_t D = check_linear_inputs(x_in, w_in, bias_in, spec);
  check_cuda(x_in, "x");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const at::Tensor w = w_in.contiguous();
  const bool has_bias = bias_in.has_value() && bias_in->defined();
  const c10::optional<at::Tensor> bias = has_bias ? c10::optional<at::Tensor>(bias_in->contiguous()) : c10::nullopt;
  const int64_t B = x.size(0), m = x.size(1), n = w.size(0);
  if (B == 0 || n == 0) return at::empty({B, n}, x.options());
  if (D == 0) {
    at::Tensor y = at::zeros({B, n}, x.options());
    if (has_bias) y.add_(*bias);
    return y;
  }
  if (spec.basis == Basis::Taylor) return taylor_linear_forward(x, w, bias, spec.degree, D);

  at::Tensor y = at::empty({B, n}, x.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const dim3 grid(static_cast<unsigned>(ceil_div(B, kTile)),
                  static_cast<unsigned>(std::min(ceil_div(n, kTile), kMaxGridYZ)));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "rpn2kernels_expand_linear", [&] {
    expand_linear_forward_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(
        spec, x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
        has_bias ? bias->const_data_ptr<scalar_t>() : nullptr, y.mutable_data_ptr<scalar_t>(), B, m, n, D);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor> expand_linear_backward_cuda(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                               const at::Tensor& w_in, c10::string_view basis,
                                                               int64_t degree, at::ArrayRef<double> params) {
  const BasisSpec spec = make_basis_spec(basis, degree, params);
  const int64_t D = check_linear_backward_inputs(grad_in, x_in, w_in, spec);
  check_cuda(x_in, "x");
  const int64_t B = x_in.size(0), m = x_in.size(1), n = w_in.size(0);
  const c10::cuda::CUDAGuard guard(x_in.device());
  if (B == 0 || n == 0 || D == 0) {
    return {at::zeros({B, m}, x_in.options()), at::zeros({n, D}, x_in.options())};
  }
  const at::Tensor x = x_in.contiguous();
  const at::Tensor w = w_in.contiguous();
  const at::Tensor g = grad_in.contiguous();
  if (spec.basis == Basis::Taylor) return taylor_linear_backward(g, x, w, spec.degree, D);

  at::Tensor dx = at::empty({B, m}, x.options());
  at::Tensor dw = at::empty({n, D}, x.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t K = spec.features;

  const int64_t attrs_per_block = K <= kTile ? kTile / K : 1;
  const dim3 dx_grid(static_cast<unsigned>(ceil_div(B, kTile)),
                     static_cast<unsigned>(std::min(ceil_div(m, attrs_per_block), kMaxGridYZ)));

  // dW has only ceil(n/64)·ceil(D/64) tiles; when that leaves SMs idle, split the reduction over B
  // into fixed row ranges whose partial sums are added in a fixed order afterwards.
  const int64_t tiles = ceil_div(n, kTile) * ceil_div(D, kTile);
  const int64_t target_blocks = 2 * static_cast<int64_t>(sm_count(x));
  int64_t splits = 1;
  if (tiles < target_blocks) {
    splits = std::min({ceil_div(target_blocks, tiles), ceil_div(B, kMinRowsPerSplit), kMaxGridYZ});
    splits = std::max<int64_t>(splits, 1);
  }
  const int64_t rows_per_split = ceil_div(ceil_div(B, splits), kBackwardDepth) * kBackwardDepth;
  splits = ceil_div(B, rows_per_split);
  const dim3 dw_grid(static_cast<unsigned>(ceil_div(D, kTile)),
                     static_cast<unsigned>(std::min(ceil_div(n, kTile), kMaxGridYZ)), static_cast<unsigned>(splits));

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "rpn2kernels_expand_linear_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    expand_linear_input_grad_kernel<scalar_t><<<dx_grid, kThreads, 0, stream>>>(
        spec, g.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
        dx.mutable_data_ptr<scalar_t>(), B, m, n, D, attrs_per_block);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (splits == 1) {
      expand_linear_weight_grad_kernel<scalar_t, scalar_t><<<dw_grid, kThreads, 0, stream>>>(
          spec, g.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), dw.mutable_data_ptr<scalar_t>(), B, m, n,
          D, rows_per_split);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    } else {
      at::Tensor parts = at::empty({splits, n, D}, x.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
      expand_linear_weight_grad_kernel<scalar_t, acc_t><<<dw_grid, kThreads, 0, stream>>>(
          spec, g.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), parts.mutable_data_ptr<acc_t>(), B, m, n,
          D, rows_per_split);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      sum_splits_kernel<scalar_t, acc_t><<<grid_1d(n * D), kThreads, 0, stream>>>(
          parts.const_data_ptr<acc_t>(), dw.mutable_data_ptr<scalar_t>(), n * D, splits);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {dx, dw};
}

}  // namespace
}  // namespace expansion
}  // namespace rpn2kernels

TORCH_LIBRARY_IMPL(rpn2kernels, CUDA, m) {
  m.impl("expand", &rpn2kernels::expansion::expand_cuda);
  m.impl("expand_backward", &rpn2kernels::expansion::expand_backward_cuda);
  m.impl("expand_linear", &rpn2kernels::expansion::expand_linear_cuda);
  m.impl("expand_linear_backward", &rpn2kernels::expansion::expand_linear_backward_cuda);
}
