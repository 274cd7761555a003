#pragma once
// The CPU's multiply-add throughput, measured: the ceiling beside which the benchmark's SGEMM limit
// (the platform BLAS) is reported, so a "fraction of SGEMM" can be read against the hardware.

namespace rpn2kernels {
namespace cpu {

// GFLOP/s of independent float32 multiply-add chains on every at::parallel_for thread, in the
// active ISA's copy (FMA on AVX2; a multiply and an add per lane on the SSE2 baseline), run for
// about `seconds`.
double multiply_add_peak_gflops(double seconds);

}  // namespace cpu
}  // namespace rpn2kernels
