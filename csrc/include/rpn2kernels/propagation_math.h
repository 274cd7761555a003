#pragma once
// Per-element math of the propagation family (functions.md §5.4, §5.5, §5.11), shared by the CPU
// kernels (csrc/cpu/propagation.cpp) and the CUDA kernels (csrc/cuda/propagation.cu) so the two
// backends agree on masking, the empty-row convention and the banded-filter index map.
#include <cmath>
#include <cstdint>
#include <limits>

#include "rpn2kernels/macros.h"

namespace rpn2kernels {
namespace propagation {

// Edge attention logit of edge e of target row i: scale · value_e · <q_i, k_col(e)>
// (value_e = 1 for an unweighted graph). tinyBIG masks the softmax with [E ≠ 0], so an edge whose
// logit is exactly zero takes no part in it (functions.md §5.9, §5.11).
template <typename acc_t>
RPN2K_INLINE acc_t attention_logit(acc_t scale, acc_t value, acc_t dot) { return scale * value * dot; }

template <typename acc_t>
RPN2K_INLINE bool attention_masked(acc_t logit) { return logit == acc_t(0); }

// Log-sum-exp stored for a row without any unmasked edge: its output and gradients are zero.
template <typename acc_t>
RPN2K_INLINE acc_t empty_row_lse() { return -std::numeric_limits<acc_t>::infinity(); }

// Softmax probability of an unmasked edge, given its row's log-sum-exp.
template <typename acc_t>
RPN2K_INLINE acc_t attention_probability(acc_t logit, acc_t lse) {
  return attention_masked(logit) ? acc_t(0) : std::exp(logit - lse);
}

// Online-softmax update of (running max, running sum) by one logit; returns the factor the
// running weighted sum must be multiplied by.
template <typename acc_t>
RPN2K_INLINE acc_t online_softmax_step(acc_t logit, acc_t& running_max, acc_t& running_sum, acc_t& weight) {
  const acc_t new_max = logit > running_max ? logit : running_max;
  const acc_t rescale = running_max == -std::numeric_limits<acc_t>::infinity() ? acc_t(0)
                                                                                 : std::exp(running_max - new_max);
  weight = std::exp(logit - new_max);
  running_sum = running_sum * rescale + weight;
  running_max = new_max;
  return rescale;
}

// Banded Toeplitz filter along the chain: out_t = Σ_j taps[j] · x_{t − (first_offset + j)}, with
// x_u = 0 outside 0 … L−1. source_position returns t − (first_offset + j); callers skip it when it
// falls outside [0, L).
RPN2K_INLINE int64_t source_position(int64_t t, int64_t first_offset, int64_t j) { return t - (first_offset + j); }

// With odd_reflect the chain is continued outside 0 … L−1 by its odd, 2(L+1)-periodic reflection
// instead of zeros: y_{−1} = y_L = 0, y_{−2−u} = y_{2L−u} = −x_u (method of images; then a centred
// symmetric filter equals f(S_sym) on the path exactly, chain.py). Maps a source position u to
// x's index and returns the sign (0 on the images of the two virtual end nodes, index then 0).
RPN2K_INLINE int odd_reflection_source(int64_t u, int64_t L, int64_t* index) {
  const int64_t period = 2 * (L + 1);
  int64_t s = u % period;
  if (s < 0) s += period;
  if (s < L) {
    *index = s;
    return 1;
  }
  if (s > L && s < 2 * L + 1) {
    *index = 2 * L - s;
    return -1;
  }
  *index = 0;
  return 0;
}

// The filter's adjoint is the same filter with reversed taps and this first offset.
RPN2K_INLINE int64_t adjoint_first_offset(int64_t first_offset, int64_t num_taps) {
  return -(first_offset + num_taps - 1);
}

}  // namespace propagation
}  // namespace rpn2kernels
