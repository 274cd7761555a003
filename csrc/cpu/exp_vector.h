#pragma once
// Constants of e^x on whole vectors (exp_vector.inc, included once per instruction set by the
// kernels that use it): no calls, no branches, no float→integer conversion (the power of two is
// built from the bits of the rounding sum). torch's exp_ took 1.4 ns per float element on one core
// of this machine (AVX2); the AVX2 copy of this one 0.7 ns.
//
// Cody–Waite reduction x = n·ln2 + r, |r| ≤ ln2/2, then e^r by Cephes' degree-5 minimax polynomial
// (float, ≤ 2 ulp measured against float64) or its degree-12 Taylor polynomial (double, truncation
// ≤ 3e−17 relative), scaled by 2·2^(n−1) so that n up to the largest finite power stays a normal
// number. NaN propagates, x above ln(max) gives +inf, and results below 2^−125 (float, 2.4e−38) or
// 2^−1020 (double) are flushed to zero (true values below 2·FLT_MIN or 4·DBL_MIN; no denormal is
// produced).
#include <cstdint>
#include <cstring>
#include <limits>

namespace rpn2kernels {
namespace cpu {

template <typename T>
struct ExpConstants;

template <>
struct ExpConstants<float> {
  using Bits = int32_t;
  static constexpr float kLog2e = 1.44269504088896341f;
  static constexpr float kLn2Hi = 0.693359375f;        // ln2 = kLn2Hi + kLn2Lo, kLn2Hi exact in 8 bits
  static constexpr float kLn2Lo = -2.12194440e-4f;
  static constexpr float kMax = 88.7228391f;           // ln(FLT_MAX)
  static constexpr float kFlush = -86.6433640f;        // −125·ln2
  static constexpr float kShifter = 12582912.0f;       // 1.5·2^23: x + kShifter rounds x to an integer
  static constexpr Bits kShifterBits = 0x4B400000;
  static constexpr int kMantissaBits = 23;
  static constexpr Bits kHalfBias = 126;               // exponent bias − 1: bits of 2^(n−1)
  // e^r ≈ 1 + r + r²·P(r), Horner from the highest coefficient.
  static constexpr int kPolyTerms = 6;
  static constexpr float kPoly[kPolyTerms] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                                              4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
};

template <>
struct ExpConstants<double> {
  using Bits = int64_t;
  static constexpr double kLog2e = 1.4426950408889634074;
  static constexpr double kLn2Hi = 6.93145751953125e-1;
  static constexpr double kLn2Lo = 1.42860682030941723212e-6;
  static constexpr double kMax = 709.782712893383973;  // ln(DBL_MAX)
  static constexpr double kFlush = -707.0303127;       // −1020·ln2
  static constexpr double kShifter = 6755399441055744.0;  // 1.5·2^52
  static constexpr Bits kShifterBits = 0x4338000000000000LL;
  static constexpr int kMantissaBits = 52;
  static constexpr Bits kHalfBias = 1022;
  // 1/12!, 1/11!, …, 1/2!
  static constexpr int kPolyTerms = 11;
  static constexpr double kPoly[kPolyTerms] = {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0,
                                               1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0,
                                               1.0 / 24.0, 1.0 / 6.0, 0.5};
};

}  // namespace cpu
}  // namespace rpn2kernels
